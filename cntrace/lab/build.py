"""Bringing the lab up and down, and the system calls both need.

Namespaces and links are made with `ip -batch` (one process for the host side, one per container
namespace), rules with `iptables-restore`, sysctls by writing /proc/sys from a thread that entered
the namespace. Everything lives in namespaces named ``<lab>.*``; nothing touches the root
namespace. `down` works from the state file *and* from the names it finds, so it also cleans up
after a `lab up` that was killed half-way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from cntrace.errors import BadInput, CntraceError, EnvironmentProblem, NeedsPrivilege
from cntrace.lab import spec, state, topo
from cntrace.lab.state import ContainerState, LabState, NetworkState, PortState
from cntrace.lab.topo import iptables_cmd
from cntrace.sources import nsenter

Progress = Callable[[str], None]


class LabError(CntraceError):
    """A command the lab ran failed."""


# ----------------------------------------------------------------------------- system helpers


CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21


def effective_caps() -> int:
    """The effective capability mask: being uid 0 is not enough (containers drop caps)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def require_root(what: str = "the lab") -> None:
    caps = effective_caps()
    missing = [
        n
        for n, bit in (("CAP_SYS_ADMIN", CAP_SYS_ADMIN), ("CAP_NET_ADMIN", CAP_NET_ADMIN))
        if not caps >> bit & 1
    ]
    if missing:
        raise NeedsPrivilege(what, " and ".join(missing))


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise EnvironmentProblem(f"missing programs: {', '.join(missing)} (run `make demo`)")


def ip_batch(script: str, netns: str | None = None, program: str = "ip") -> None:
    """Run `ip -batch` (or `bridge -batch`) lines, optionally inside a named namespace."""
    cmd = [program, *(["-n", netns] if netns else []), "-batch", "-"]
    res = subprocess.run(cmd, input=script, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        detail = (res.stderr.strip().splitlines() or ["failed"])[0]
        raise LabError(f"{program} {'-n ' + netns + ' ' if netns else ''}-batch: {detail}")


def run_in(netns: str, argv: list[str], *, stdin: str | None = None) -> str:
    """Run a program inside a lab namespace (setns, not `ip netns exec`)."""
    res = subprocess.run(
        nsenter.command_in(netns, argv), input=stdin, capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        detail = (res.stderr.strip().splitlines() or ["failed"])[0]
        raise LabError(f"{' '.join(argv[:2])} in {netns}: {detail}")
    return res.stdout


def write_sysctl(netns: str, key: str, value: str) -> None:
    """Write a sysctl inside a namespace: /proc/sys/net follows the writing thread's netns.
    A key naming an interface with a dot in its name (flannel.1) is written with slashes."""
    path = "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))
    with nsenter.entered(netns), open(path, "w") as fh:
        fh.write(value)


def netns_inode(name: str) -> int | None:
    try:
        return nsenter.inode_of(nsenter.netns_path(name))
    except OSError:
        return None


def pids_in(inodes: Iterable[int]) -> list[int]:
    """Processes whose network namespace is one of ``inodes``."""
    wanted = {f"net:[{i}]" for i in inodes}
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/ns/net") in wanted:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def kill_all(pids: Iterable[int], grace: float = 1.0) -> None:
    pids = [p for p in pids if p != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if _alive(p)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def pid_alive(pid: int | None) -> bool:
    return pid is not None and _alive(pid)


def _listening(pid: int, port: int, proto: str = "tcp") -> bool:
    """Whether the namespace of ``pid`` has a socket bound to ``port`` (from /proc/PID/net)."""
    try:
        with open(f"/proc/{pid}/net/{proto}") as fh:
            next(fh)
            return any(int(line.split()[1].split(":")[1], 16) == port for line in fh)
    except (OSError, ValueError, IndexError, StopIteration):
        return False


# ----------------------------------------------------------------------------- servers


def start_server(
    lab: str, netns: str, name: str, *, bind: str, tcp: int, udp: int, full: bool = True
) -> int:
    """Start a container's long-lived process inside its namespace and wait until it listens."""
    if full:
        argv = [sys.executable, "-m", "cntrace.lab.server", "--name", name, "--bind", bind]
        argv += ["--tcp", str(tcp), "--udp", str(udp)]
    else:
        www = state.STATE_DIR / f"{lab}.www"
        www.mkdir(parents=True, exist_ok=True)
        argv = ["busybox", "httpd", "-f", "-p", f"{bind}:{tcp}", "-h", str(www)]
    proc = subprocess.Popen(
        nsenter.command_in(netns, argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/",
        start_new_session=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    return proc.pid


def wait_listening(pid: int, port: int, proto: str = "tcp", timeout: float = 10.0) -> None:
    if not port:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _listening(pid, port, proto):
            return
        if not _alive(pid):
            raise LabError(f"lab server (pid {pid}) exited before listening on {proto}/{port}")
        time.sleep(0.02)
    raise LabError(f"lab server (pid {pid}) is not listening on {proto}/{port} after {timeout}s")


def _spawn(lab: LabState, c: ContainerState) -> int:
    """Start ``c``'s server as its state describes it."""
    return start_server(
        lab.name, c.netns, c.name, bind=c.bind, tcp=c.tcp_port, udp=c.udp_port, full=c.full_server
    )


def _ready(c: ContainerState) -> None:
    assert c.pid is not None
    wait_listening(c.pid, c.tcp_port)
    wait_listening(c.pid, c.udp_port, "udp")


def restart_server(lab: LabState, c: ContainerState, **changes: object) -> ContainerState:
    """Replace a container's server (e.g. to rebind it), returning its new state."""
    if c.pid:
        kill_all([c.pid], grace=0.5)
    new = replace(c, **changes)  # type: ignore[arg-type]
    new = replace(new, pid=_spawn(lab, new))
    _ready(new)
    return new


# ----------------------------------------------------------------------------- up / down


def _initial_state(p: spec.LabPlan) -> LabState:
    containers = []
    for c in p.containers:
        net = p.network(c.network)
        containers.append(
            ContainerState(
                name=c.name,
                netns=p.ns(c.name),
                network=c.network,
                ip=c.ip,
                prefixlen=net.prefixlen,
                gateway=net.gateway,
                mac=c.mac,
                host_veth=c.host_veth,
                published=tuple(PortState(*x) for x in c.published),
                full_server=c.full_server,
                udp_port=spec.UDP_PORT if c.full_server else 0,
            )
        )
    return LabState(
        name=p.name,
        host_netns=p.host_ns,
        upstream_netns=p.upstream_ns,
        namespaces=p.namespaces,
        networks=tuple(NetworkState(n.name, n.bridge, n.subnet, n.gateway) for n in p.networks),
        containers=tuple(containers),
        uplink_ip=spec.UPLINK_HOST_IP,
        internet_ip=spec.INTERNET_IP,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def existing_namespaces(name: str) -> list[str]:
    return [n for n in nsenter.named() if n.startswith(f"{name}.")]


def up(p: spec.LabPlan, *, iptables: str = "nft", progress: Progress | None = None) -> LabState:
    """Create the whole lab; on any failure (or Ctrl-C) remove what was made and re-raise."""
    require_root()
    require_tools("ip", iptables_cmd(iptables, restore=True))
    if state.load(p.name) is not None or existing_namespaces(p.name):
        raise BadInput(f"lab {p.name} is already up (`cntrace lab down` first)")
    say = progress or (lambda _msg: None)
    lab = replace(_initial_state(p), notes={"iptables": iptables})
    state.save(lab)  # before creating anything: `down` must find a half-built lab
    try:
        say(f"creating {len(p.namespaces)} network namespaces")
        ip_batch(spec.script_namespaces(p))
        say("wiring the host: bridges, uplink, veth pairs")
        ip_batch(spec.script_host(p), p.host_ns)
        ip_batch(spec.script_upstream(), p.upstream_ns)
        say("configuring containers")
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(
                pool.map(
                    lambda c: ip_batch(spec.script_container(p, c), p.ns(c.name)), p.containers
                )
            )
        for key, value in spec.HOST_SYSCTLS.items():
            write_sysctl(p.host_ns, key, value)
        say(f"loading Docker-style rules (iptables-{iptables})")
        run_in(p.host_ns, [iptables_cmd(iptables, restore=True)], stdin=spec.iptables_ruleset(p))
        say("starting servers")
        lab = _start_servers(lab)
        lab = replace(lab, status="up")
        state.save(lab)
        return lab
    except BaseException:
        down(p.name)
        raise


def up_plan(p: topo.TopologyPlan, *, progress: Progress | None = None) -> LabState:
    """Create a topology's lab from its plan; on any failure remove what was made."""
    require_root()
    require_tools(*p.tools())
    if state.load(p.name) is not None or existing_namespaces(p.name):
        raise BadInput(f"lab {p.name} is already up (`cntrace lab down` first)")
    say = progress or (lambda _msg: None)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    lab = replace(p.state, created_at=created, notes={**p.state.notes, "iptables": p.backend})
    state.save(lab)
    try:
        say(f"creating {len(p.namespaces)} network namespaces ({p.topology})")
        ip_batch("".join(f"netns add {n}\n" for n in p.namespaces))
        for step in p.steps:
            if step.what:
                say(step.what)
            run_step(step, p.backend)
        say("starting servers")
        lab = replace(_start_servers(lab), status="up")
        state.save(lab)
        return lab
    except BaseException:
        down(p.name)
        raise


def run_step(step: topo.Step, backend: str) -> None:
    if step.kind in ("ip", "bridge"):
        ip_batch(step.text, step.netns, step.kind)
    elif step.kind == "sysctl":
        key, value = step.text.split("=", 1)
        write_sysctl(step.netns, key, value)
    elif step.kind == "iptables":
        run_in(step.netns, [iptables_cmd(backend, restore=True)], stdin=step.text)
    elif step.kind == "nft":
        run_in(step.netns, ["nft", "-f", "-"], stdin=step.text)
    else:
        raise LabError(f"unknown lab step kind {step.kind!r}")


def _start_servers(lab: LabState) -> LabState:
    containers = [replace(c, pid=_spawn(lab, c)) for c in lab.containers]
    upstream_pid = start_server(
        lab.name,
        lab.upstream_netns,
        "upstream",
        bind="0.0.0.0",
        tcp=spec.TCP_PORT,
        udp=spec.UDP_PORT,
    )
    for c in containers:
        _ready(c)
    wait_listening(upstream_pid, spec.TCP_PORT)
    return replace(lab, containers=tuple(containers), upstream_pid=upstream_pid)


def down(name: str) -> list[str]:
    """Remove every object of lab ``name``: processes, namespaces (and all links in them), state."""
    require_root()
    lab = state.load(name)
    names = set(existing_namespaces(name))
    if lab is not None:
        names |= {n for n in lab.namespaces if Path(nsenter.netns_path(n)).exists()}
    inodes = [i for i in (netns_inode(n) for n in names) if i is not None]
    kill_all(pids_in(inodes))
    if names:
        ip_batch("".join(f"netns del {n}\n" for n in sorted(names)))
    shutil.rmtree(state.STATE_DIR / f"{name}.www", ignore_errors=True)
    state.remove(name)
    return sorted(names)


def all_labs() -> list[str]:
    """Labs known by state file or by a leftover host namespace (``<name>.host``, or
    ``<name>.router`` for the router topology)."""
    names = set(state.all_names())
    names |= {n.split(".", 1)[0] for n in nsenter.named() if n.endswith((".host", ".router"))}
    return sorted(names)
