"""Real container engines for the runtimes tier: a Docker engine and rootful Podman, both living in
their own network namespace (``cntrace-engine``) so that nothing they do touches the root
namespace's links, routes or firewall, and both keeping their state in cntrace's own directories
(``/var/lib/cntrace-engine*``, ``/run/cntrace-engine*``), never in the user's real engines' data.
``scripts/reset-test-engines.sh`` removes exactly that state, so a run can start as a new machine
would.

Every helper here decides by exit status, never by whether a command printed something (the
Docker CLI prints ``[]`` for a missing image and exits 1).

Docker: dockerd runs inside ``cntrace-engine`` with its own data-root, exec-root and socket. It is
started only when it is not already running and stopped when the last test session using it ends,
if a test session started it (a marker file says so); sessions register in a users directory under
a lock, so two concurrent sessions never stop each other's engine.

Image: there is no registry here, so ``cntrace/busybox:1`` is made by ``docker import`` of a tarred
busybox-static root filesystem (applet symlinks, /etc/passwd, /etc/hosts, /etc/resolv.conf).

Podman: one configuration per network back end (netavark and CNI: both are in the field, and which
one a machine runs depends on what is installed and on what Podman first ran with). Each has its
own containers.conf and storage.conf (``CONTAINERS_CONF``/``CONTAINERS_STORAGE_CONF``) naming the
back end, storage, network config dir, tmp dir, default subnet and runtime, so the back ends never
share state and nothing depends on this machine's defaults. Every podman command runs under
``nsenter --net=/run/netns/cntrace-engine`` (the back end must clean up in the namespace it set up
in) with ``--rootfs`` on the same busybox tree and the ulimits this machine allows. cntrace itself
is pointed at a configuration through the same two variables, as a machine configured that way
would be.

Upstream: for egress tests the engine namespace can get a veth to ``cntrace-engine-up``, which
plays the internet with TEST-NET addresses (198.51.100.0/24); never the root namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENGINE_NETNS = "cntrace-engine"
ENGINE_NSPATH = f"/run/netns/{ENGINE_NETNS}"
DATA_ROOT = "/var/lib/cntrace-engine"
EXEC_ROOT = "/run/cntrace-engine"
SOCKET = f"{EXEC_ROOT}/docker.sock"
PIDFILE = "/run/cntrace-engine.pid"
LOCK = "/run/cntrace-engine.lock"
USERS = Path("/run/cntrace-engine.users")
STARTED_BY_TESTS = Path("/run/cntrace-engine.started-by-tests")
LOG = Path("/run/cntrace-engine.log")
IMAGE = "cntrace/busybox:1"
ROOTFS = Path("/var/lib/cntrace-engine-rootfs")
DOCKER = shutil.which("docker", path="/usr/local/bin:/usr/bin:/bin") or "docker"

UPSTREAM_NETNS = "cntrace-engine-up"
UPSTREAM_IP = "198.51.100.2"
ENGINE_UPLINK_IP = "198.51.100.1"

PODMAN_FLAGS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
PODMAN_BACKENDS = ("netavark", "cni")
# Each back end's default network gets its own subnet: their bridges meet in one namespace.
PODMAN_SUBNETS = {"netavark": "10.88.1.0/24", "cni": "10.88.2.0/24"}


class EngineUnavailable(RuntimeError):
    """The engine could not be started here; the message says why."""


def _run(*argv: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(argv), capture_output=True, text=True, check=False, **kw)
    if check and res.returncode != 0:
        raise EngineUnavailable(f"{' '.join(argv)}: {res.stderr.strip() or res.stdout.strip()}")
    return res


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    with open(LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_netns() -> None:
    """The engine namespace, with loopback up (created once, kept: it is cheap and shared)."""
    if not Path(ENGINE_NSPATH).exists():
        _run("ip", "netns", "add", ENGINE_NETNS)
    _run("ip", "-n", ENGINE_NETNS, "link", "set", "lo", "up")


def busybox_rootfs(dest: Path = ROOTFS) -> Path:
    """A busybox-static root filesystem (cntrace.lab.k8s.containerd makes it; shared here)."""
    from cntrace.errors import EnvironmentProblem
    from cntrace.lab.k8s.containerd import busybox_rootfs as make

    try:
        return make(dest)
    except EnvironmentProblem as e:
        raise EngineUnavailable(str(e)) from None


@dataclass
class DockerEngine:
    """A running dockerd in the engine namespace, and a client for it."""

    socket: str = SOCKET
    started: bool = False
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        res = subprocess.run(
            [DOCKER, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout.strip()

    def ok(self, *args: str, timeout: float = 120) -> bool:
        """Whether a docker command succeeds (its exit status, not its output)."""
        res = subprocess.run(
            [DOCKER, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        return res.returncode == 0

    def remove(self, *names: str) -> None:
        """Remove these containers where they exist; any other failure is an error."""
        present = set(self.docker("ps", "-a", "--format", "{{.Names}}").split())
        gone = [n for n in names if n in present]
        if gone:
            self.docker("rm", "-f", *gone)

    def remove_networks(self, *names: str) -> None:
        present = set(self.docker("network", "ls", "--format", "{{.Name}}").split())
        for n in names:
            if n in present:
                self.docker("network", "rm", n)

    def inspect(self, name: str) -> dict[str, Any]:
        doc: list[dict[str, Any]] = json.loads(self.docker("inspect", name))
        return doc[0]

    def network_inspect(self, name: str) -> dict[str, Any]:
        doc: list[dict[str, Any]] = json.loads(self.docker("network", "inspect", name))
        return doc[0]

    def pid(self, name: str) -> int:
        return int(self.inspect(name)["State"]["Pid"])


def _ping(sock: str) -> bool:
    """Whether an engine answers GET /_ping on the unix socket."""
    if not os.path.exists(sock):
        return False
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        try:
            s.connect(sock)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b"OK" in s.recv(4096)
        except OSError:
            return False


_DOCKERD: subprocess.Popen[bytes] | None = None  # the dockerd this process started, to reap it


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def start_docker(timeout: float = 120.0) -> DockerEngine:
    """Start dockerd in the engine namespace unless it already answers; register this session."""
    if shutil.which("dockerd") is None:
        raise EngineUnavailable("dockerd is not installed")
    with _locked():
        ensure_netns()
        USERS.mkdir(exist_ok=True)
        (USERS / str(os.getpid())).touch()
        if _ping(SOCKET):
            engine = DockerEngine(started=False)
        else:
            Path(EXEC_ROOT).mkdir(parents=True, exist_ok=True)
            log = LOG.open("ab")
            global _DOCKERD
            _DOCKERD = subprocess.Popen(
                [
                    "nsenter",
                    f"--net={ENGINE_NSPATH}",
                    "dockerd",
                    "--data-root",
                    DATA_ROOT,
                    "--exec-root",
                    EXEC_ROOT,
                    "--pidfile",
                    PIDFILE,
                    "-H",
                    f"unix://{SOCKET}",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            STARTED_BY_TESTS.touch()
            deadline = time.monotonic() + timeout
            while not _ping(SOCKET):
                if time.monotonic() > deadline:
                    tail = LOG.read_text(errors="replace").splitlines()[-5:]
                    raise EngineUnavailable("dockerd did not answer: " + " | ".join(tail))
                time.sleep(0.2)
            engine = DockerEngine(started=True)
    ensure_image(engine)
    return engine


def ensure_image(engine: DockerEngine) -> None:
    """cntrace/busybox:1, imported from the busybox rootfs when missing (by exit status: for a
    missing image ``docker image inspect`` prints ``[]`` and exits 1)."""
    if engine.ok("image", "inspect", IMAGE):
        return
    rootfs = busybox_rootfs()
    with tempfile.NamedTemporaryFile(suffix=".tar") as tar_file:
        with tarfile.open(tar_file.name, "w") as tar:
            tar.add(rootfs, arcname=".")
        engine.docker("import", "-c", 'CMD ["/bin/sh"]', tar_file.name, IMAGE, timeout=300)
    if not engine.ok("image", "inspect", IMAGE):
        raise EngineUnavailable(f"{IMAGE} is still missing after docker import")


def _live_users() -> list[Path]:
    return [p for p in USERS.glob("*") if p.name.isdigit() and _alive(int(p.name))]


def release_docker(engine: DockerEngine) -> None:
    """Unregister; stop the engine if a test session started it and no live session uses it,
    then remove the namespaces if nothing else needs them."""
    with _locked():
        with contextlib.suppress(FileNotFoundError):
            (USERS / str(os.getpid())).unlink()
        if _live_users() or not STARTED_BY_TESTS.exists():
            return
        stop_docker()
        _remove_namespaces()


def release_netns() -> None:
    """Remove the engine and upstream namespaces when no engine runs and no session uses them
    (a session that only used Podman ends here)."""
    with _locked():
        if _live_users() or _ping(SOCKET):
            return
        _remove_namespaces()


def _remove_namespaces() -> None:
    for ns in (UPSTREAM_NETNS, ENGINE_NETNS):
        if Path(f"/run/netns/{ns}").exists():
            _run("ip", "netns", "del", ns, check=False)


def stop_docker(timeout: float = 30.0) -> None:
    try:
        pid = int(Path(PIDFILE).read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    if _DOCKERD is not None and _DOCKERD.pid == pid:
        _DOCKERD.wait(timeout=10)  # no zombie left behind
    STARTED_BY_TESTS.unlink(missing_ok=True)


def ensure_upstream() -> str:
    """A TEST-NET "internet" namespace wired to the engine namespace (idempotent); its address."""
    with _locked():
        if not Path(f"/run/netns/{UPSTREAM_NETNS}").exists():
            _run("ip", "netns", "add", UPSTREAM_NETNS)
        if _run("ip", "-n", ENGINE_NETNS, "link", "show", "ceng-up", check=False).returncode:
            _run(
                "ip",
                "-n",
                ENGINE_NETNS,
                "link",
                "add",
                "ceng-up",
                "type",
                "veth",
                "peer",
                "name",
                "ceng-dn",
                "netns",
                UPSTREAM_NETNS,
            )
            _run(
                "ip", "-n", ENGINE_NETNS, "addr", "add", f"{ENGINE_UPLINK_IP}/24", "dev", "ceng-up"
            )
            _run("ip", "-n", ENGINE_NETNS, "link", "set", "ceng-up", "up")
            _run("ip", "-n", UPSTREAM_NETNS, "addr", "add", f"{UPSTREAM_IP}/24", "dev", "ceng-dn")
            _run("ip", "-n", UPSTREAM_NETNS, "link", "set", "ceng-dn", "up")
            _run("ip", "-n", UPSTREAM_NETNS, "link", "set", "lo", "up")
            _run("ip", "-n", ENGINE_NETNS, "route", "replace", "default", "via", UPSTREAM_IP)
    return UPSTREAM_IP


def restart_upstream_link() -> None:
    """Take the upstream veth down and up again, so that what follows runs right after a link
    event, as the first test after ``ensure_upstream`` does: carrier (LOWER_UP) is back at once,
    while the operational state is set later by the kernel's linkwatch work, which on a busy host
    can report DOWN for a second or more meanwhile."""
    with _locked():
        for state in ("down", "up"):
            _run("ip", "-n", UPSTREAM_NETNS, "link", "set", "ceng-dn", state)


def podman_dirs(backend: str) -> tuple[Path, Path]:
    """(persistent, runtime) directories of one back end's test configuration."""
    return Path(f"{DATA_ROOT}-podman-{backend}"), Path(f"{EXEC_ROOT}-podman-{backend}")


def podman_env(backend: str) -> dict[str, str]:
    """The variables that point podman (and cntrace) at one back end's test configuration."""
    lib, _ = podman_dirs(backend)
    return {
        "CONTAINERS_CONF": str(lib / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(lib / "storage.conf"),
    }


def write_podman_config(backend: str) -> dict[str, str]:
    """containers.conf and storage.conf for one back end (rewritten each time: cheap, and a stale
    file from an older test version never lingers); returns ``podman_env``."""
    lib, run = podman_dirs(backend)
    (lib / "networks").mkdir(parents=True, exist_ok=True)
    containers_conf = [
        "[network]",
        f'network_backend = "{backend}"',
        f'network_config_dir = "{lib}/networks"',
        f'default_subnet = "{PODMAN_SUBNETS[backend]}"',
        "[engine]",
        'runtime = "runc"',  # crun, where installed, cannot run on this hybrid cgroup layout
        f'tmp_dir = "{run}/libpod"',
        'lock_type = "file"',  # shm locks (/dev/shm/libpod_lock) would be shared by the stores
    ]
    storage_conf = [
        "[storage]",
        'driver = "overlay"',
        f'graphroot = "{lib}/storage"',
        f'runroot = "{run}/storage"',
    ]
    (lib / "containers.conf").write_text("\n".join(containers_conf) + "\n")
    (lib / "storage.conf").write_text("\n".join(storage_conf) + "\n")
    return podman_env(backend)


@dataclass
class Podman:
    """Rootful podman on one network back end, its containers' host side in the engine namespace."""

    backend: str = "netavark"
    rootfs: Path = ROOTFS
    created: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """What cntrace needs in its environment to see this configuration's containers."""
        return podman_env(self.backend)

    def podman(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        res = subprocess.run(
            ["nsenter", f"--net={ENGINE_NSPATH}", "podman", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **self.env},
        )
        if check and res.returncode != 0:
            raise AssertionError(f"podman[{self.backend}] {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout.strip()

    def run(
        self, name: str, *cmd: str, ports: tuple[str, ...] = (), extra: tuple[str, ...] = ()
    ) -> str:
        """Start a detached container from the busybox rootfs; removed by ``cleanup``."""
        args = ["run", "-d", "--name", name, *PODMAN_FLAGS]
        for p in ports:
            args += ["-p", p]
        args += [*extra, "--rootfs", str(self.rootfs), *cmd]
        self.created.append(name)
        return self.podman(*args)

    def inspect(self, name: str) -> dict[str, Any]:
        doc: list[dict[str, Any]] = json.loads(self.podman("inspect", name))
        return doc[0]

    def pid(self, name: str) -> int:
        return int(self.inspect(name)["State"]["Pid"])

    def ip(self, name: str) -> str:
        ((_, ep),) = self.inspect(name)["NetworkSettings"]["Networks"].items()
        return str(ep["IPAddress"])

    def rm(self, name: str) -> None:
        """Remove a container if it exists (``--ignore``); any other failure is an error."""
        self.podman("rm", "--ignore", "-f", "-t", "0", name)
        if name in self.created:
            self.created.remove(name)

    def cleanup(self) -> None:
        for name in list(self.created):
            self.rm(name)
        if self.podman("ps", "-a", "-q") == "":  # checked: a failing podman is an error
            release_netns()


def start_podman(backend: str = "netavark") -> Podman:
    """Podman on this back end, verified to really run it (``podman info`` says which)."""
    if shutil.which("podman") is None:
        raise EngineUnavailable("podman is not installed")
    if backend not in PODMAN_BACKENDS:
        raise ValueError(f"unknown podman network back end {backend!r}")
    with _locked():
        ensure_netns()
        env = {**os.environ, **write_podman_config(backend)}
    res = _run("podman", "info", "--format", "{{.Host.NetworkBackend}}", check=False, env=env)
    if res.returncode != 0:
        raise EngineUnavailable(f"podman ({backend}) does not run: {res.stderr.strip()}")
    if res.stdout.strip() != backend:
        raise EngineUnavailable(
            f"podman runs {res.stdout.strip()!r}, not {backend!r}: is {backend} installed? "
            "(scripts/setup-system.sh installs netavark, aardvark-dns and the CNI plugins)"
        )
    return Podman(backend=backend, rootfs=busybox_rootfs())
