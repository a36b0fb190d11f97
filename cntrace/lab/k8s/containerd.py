"""A private containerd for the k8s-node lab, and the ``ctr`` calls that make pods.

containerd runs in the node's network namespace with its own root, state and socket (never
/run/containerd's), and in a private mount namespace whose /run/containerd is a fresh tmpfs:
containerd 1.6 puts its shims' sockets under /run/containerd/s whatever its state directory is,
so that is where another containerd on the machine would meet ours. Mounts propagate into that
namespace (slave), so the pod namespaces made later under /run/netns are visible to it.

No kubelet runs, so the CRI plugin is off and ``ctr`` does what CRI would: a sandbox ("pause")
container per pod and an app container joined to the sandbox's network namespace, with the OCI
annotations CRI writes (``io.kubernetes.cri.container-type``, ``sandbox-id``, ``sandbox-name``,
``sandbox-namespace``, ``container-name``, ``image-name``) and CRI's container labels. The
containers run from a busybox root filesystem (no registry here).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from cntrace.errors import CntraceError, EnvironmentProblem
from cntrace.lab.k8s.plan import NodePlan, PodSpec
from cntrace.sources import nsenter

ROOTFS = Path("/var/lib/cntrace-k8s-rootfs")
CTR_NAMESPACE = "k8s.io"  # the containerd namespace CRI uses
PAUSE_IMAGE = "registry.k8s.io/pause:3.9"
APP_IMAGE = "docker.io/library/busybox:1.35"


class ContainerdError(CntraceError):
    """containerd or ctr failed."""


def busybox_rootfs(dest: Path = ROOTFS) -> Path:
    """A busybox-static root filesystem: /bin/busybox, its applets as symlinks, minimal /etc.
    Made once (atomically, by rename) and shared by every container that runs from it."""
    if (dest / "bin" / "sh").exists():
        return dest
    busybox = shutil.which("busybox")
    if busybox is None:
        raise EnvironmentProblem("busybox (busybox-static) is not installed")
    parent = dest.parent if dest.parent.exists() else None
    tmp = Path(tempfile.mkdtemp(prefix="rootfs-", dir=parent))
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "var/run"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, tmp / "bin" / "busybox")
    listed = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    for applet in listed.stdout.split():
        if applet != "busybox":
            (tmp / "bin" / applet).symlink_to("busybox")
    (tmp / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tmp / "etc" / "group").write_text("root:x:0:\n")
    (tmp / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (tmp / "etc" / "resolv.conf").write_text("")
    os.chmod(tmp / "tmp", 0o1777)
    if dest.exists():
        shutil.rmtree(tmp)  # another process won the race
        return dest
    tmp.rename(dest)
    return dest


def config_text(p: NodePlan) -> str:
    """containerd's config.toml: own root, state and socket; CRI off; no debug/metrics socket."""
    return (
        "version = 2\n"
        f'root = "{p.root}/containerd"\n'
        f'state = "{p.run_dir}/containerd"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        "[grpc]\n"
        f'  address = "{p.socket}"\n'
        "[ttrpc]\n"
        '  address = ""\n'
        "[debug]\n"
        '  address = ""\n'
        "[metrics]\n"
        '  address = ""\n'
        '[plugins."io.containerd.internal.v1.opt"]\n'
        f'  path = "{p.root}/opt"\n'
    )


def config_path(p: NodePlan) -> str:
    return f"{p.run_dir}/containerd/config.toml"


def start(p: NodePlan, timeout: float = 30.0) -> int:
    """Start containerd for ``p`` and wait until it answers; its pid."""
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2", "runc", "unshare"):
        if shutil.which(tool) is None:
            raise EnvironmentProblem(f"{tool} is not installed (apt-get install containerd)")
    Path(f"{p.run_dir}/containerd").mkdir(parents=True, exist_ok=True)
    Path(p.root).mkdir(parents=True, exist_ok=True)
    Path(config_path(p)).write_text(config_text(p))
    Path("/run/containerd").mkdir(mode=0o711, exist_ok=True)  # the mount point, if absent
    script = (
        "mount -t tmpfs -o mode=0711 cntrace-k8s-shims /run/containerd && "
        f"exec containerd --config {config_path(p)}"
    )
    argv = ["unshare", "--mount", "--propagation", "slave", "sh", "-c", script]
    log = open(f"{p.run_dir}/containerd.log", "ab")  # noqa: SIM115  (the daemon keeps it)
    proc = subprocess.Popen(
        nsenter.command_in(p.node_ns, argv),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while True:
        res = subprocess.run(
            ["ctr", "--address", p.socket, "version"], capture_output=True, check=False
        )
        if res.returncode == 0:
            return proc.pid
        if proc.poll() is not None:
            raise ContainerdError(
                f"containerd exited ({proc.returncode}); see {p.run_dir}/containerd.log"
            )
        if time.monotonic() > deadline:
            raise ContainerdError(f"containerd did not answer on {p.socket} in {timeout:.0f}s")
        time.sleep(0.1)


def ctr(p: NodePlan, *args: str, check: bool = True) -> str:
    res = subprocess.run(
        ["ctr", "--address", p.socket, "-n", CTR_NAMESPACE, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if check and res.returncode != 0:
        raise ContainerdError(f"ctr {' '.join(args[:2])}: {res.stderr.strip()}")
    return res.stdout


def _run(p: NodePlan, cid: str, netns_path: str, meta: dict[str, str], argv: tuple[str, ...],
         labels: dict[str, str]) -> None:  # fmt: skip
    opts = ["run", "-d", "--null-io", "--rootfs", "--with-ns", f"network:{netns_path}"]
    for k, v in meta.items():
        opts += ["--annotation", f"{k}={v}"]
    for k, v in labels.items():
        opts += ["--label", f"{k}={v}"]
    ctr(p, *opts, str(busybox_rootfs()), cid, *argv)


def run_pod(p: NodePlan, pod: PodSpec, netns_path: str) -> None:
    """The pod's sandbox, then its app container in the sandbox's network namespace."""
    common = {
        "io.kubernetes.cri.sandbox-id": pod.sandbox_id,
        "io.kubernetes.cri.sandbox-name": pod.name,
        "io.kubernetes.cri.sandbox-namespace": pod.namespace,
    }
    pod_labels = {"io.kubernetes.pod.name": pod.name, "io.kubernetes.pod.namespace": pod.namespace}
    _run(
        p,
        pod.sandbox_id,
        netns_path,
        {**common, "io.kubernetes.cri.container-type": "sandbox",
         "io.kubernetes.cri.image-name": PAUSE_IMAGE},
        ("/bin/sleep", "1000000"),
        {**pod_labels, "io.cri-containerd.kind": "sandbox"},
    )  # fmt: skip
    _run(
        p,
        pod.container_id,
        netns_path,
        {**common, "io.kubernetes.cri.container-type": "container",
         "io.kubernetes.cri.container-name": pod.container,
         "io.kubernetes.cri.image-name": APP_IMAGE},
        pod.command(),
        {**pod_labels, "io.cri-containerd.kind": "container",
         "io.kubernetes.container.name": pod.container},
    )  # fmt: skip


def tasks(p: NodePlan) -> dict[str, int]:
    """Running tasks: container id -> pid (from ``ctr task ls``)."""
    out: dict[str, int] = {}
    for line in ctr(p, "task", "ls", check=False).splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def remove_all(p: NodePlan) -> None:
    """Kill and delete every task and container of the lab's containerd."""
    for cid in tasks(p):
        ctr(p, "task", "kill", "-s", "KILL", cid, check=False)
    deadline = time.monotonic() + 10
    while tasks(p) and time.monotonic() < deadline:
        for cid in tasks(p):
            ctr(p, "task", "rm", "-f", cid, check=False)
        time.sleep(0.1)
    for cid in ctr(p, "containers", "ls", "-q", check=False).split():
        ctr(p, "containers", "rm", cid, check=False)
