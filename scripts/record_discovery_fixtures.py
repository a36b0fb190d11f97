"""Record the discovery fixtures in fixtures/discovery/ (see the README there for provenance).

Run as root: `.venv/bin/python scripts/record_discovery_fixtures.py [NAME...]`, NAME one of
docker, docker-nft, k8s, k8s-lab.

- docker: a real Docker engine (tests/engines.py, in namespace cntrace-engine) with containers
  in every network mode; read live; fully real.
- docker-nft: Docker 29's nftables-only firewall cannot run here (Docker 20.10 is installed), so a
  host namespace is built with the same bridges, veths and addresses Docker would make, the
  authored ruleset fixtures/rulesets/src/docker-nftables.nft is loaded with `nft -f`, the kernel
  state is read live, and the container records (runtime docker) are written by hand.
- k8s: a real containerd (its own root/state/socket, CRI plugin off) runs pause-style sandboxes
  and app containers with CRI's annotations via `ctr run --with-ns network:...`, in pod
  namespaces wired CNI-style (veth into cni0) in a node namespace that holds kube-proxy's
  iptables rules (fixtures/rulesets/src/kube-proxy-iptables.rules, loaded with
  iptables-nft-restore). Everything but the rules' authorship is real.
- k8s-lab: the k8s-node lab (cntrace.lab.k8s, `cntrace lab up --topology k8s-node`) in its bridge
  + iptables and ptp + nftables variants: real containerd, real CNI plugins (bridge/ptp,
  host-local, portmap), kube-proxy's rules generated from its source's shapes; also the node's
  rules as fixtures/rulesets/kube-proxy-lab-*.

In every file the namespace that played the host is marked is_root (on the recording machine it
was a named namespace), hostnames are fixed, and only the fixture's namespaces are kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from engines import (  # noqa: E402
    ENGINE_NSPATH,
    IMAGE,
    busybox_rootfs,
    ensure_upstream,
    release_docker,
    start_docker,
)

from cntrace.lab.k8s import node  # noqa: E402
from cntrace.lab.k8s import plan as k8splan  # noqa: E402
from cntrace.model import Container, ContainerNetwork, PortMapping, Snapshot  # noqa: E402
from cntrace.sources import live, nsenter, recorded  # noqa: E402
from cntrace.sources.runtimes.containerd import ContainerdSource  # noqa: E402
from cntrace.sources.runtimes.docker import DockerSource  # noqa: E402

OUT = REPO / "fixtures" / "discovery"
P = "cntrace-dc-fx"


def sh(*argv: str, check: bool = True) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: {res.stderr.strip()}")
    return res.stdout


def ipn(ns: str, args: str) -> None:
    sh("ip", "-n", ns, *args.split())


def keep(snap: Snapshot, inodes: set[int], host: int, hostname: str) -> Snapshot:
    """Only the fixture's namespaces and containers; the host namespace becomes the root."""
    netns = tuple(
        dataclasses.replace(
            ns, is_root=ns.inode == host, name=None if ns.inode == host else ns.name
        )
        for ns in snap.netns
        if ns.inode in inodes
    )
    containers = tuple(c for c in snap.containers if c.netns in inodes)
    return dataclasses.replace(
        snap, netns=netns, containers=containers, hostname=hostname, warnings=()
    )


def inode(ns: str) -> int:
    return nsenter.inode_of(nsenter.netns_path(ns))


@contextmanager
def namespaces(*names: str) -> Iterator[None]:
    for n in names:
        sh("ip", "netns", "del", n, check=False)
    try:
        for n in names:
            sh("ip", "netns", "add", n)
            ipn(n, "link set lo up")
        yield
    finally:
        for n in names:
            sh("ip", "netns", "del", n, check=False)


def veth(host: str, host_if: str, ns: str, cidr: str, gw: str, bridge: str | None) -> None:
    ipn(host, f"link add {host_if} type veth peer name eth0 netns {ns}")
    ipn(host, f"link set {host_if} up")
    if bridge:
        ipn(host, f"link set {host_if} master {bridge}")
    ipn(ns, f"addr add {cidr} dev eth0")
    ipn(ns, "link set eth0 up")
    ipn(ns, f"route add default via {gw}")


# --------------------------------------------------------------------------- docker (real)


def record_docker() -> None:
    engine = start_docker()
    d = engine.docker
    names = ["web", "user", "hostnet", "nonet", "sidecar", "multi"]
    try:
        ensure_upstream()
        d("rm", "-f", *names, check=False)
        d("network", "rm", "appnet", "backnet", check=False)
        d("network", "create", "appnet")
        d("network", "create", "backnet")
        d(
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "8080:80",
            IMAGE,
            "nc",
            "-ll",
            "-p",
            "80",
            "-e",
            "echo",
            "hi",
        )
        d("run", "-d", "--name", "user", "--network", "appnet", IMAGE, "sleep", "3600")
        d("run", "-d", "--name", "hostnet", "--network", "host", IMAGE, "sleep", "3600")
        d("run", "-d", "--name", "nonet", "--network", "none", IMAGE, "sleep", "3600")
        d("run", "-d", "--name", "sidecar", "--network", "container:web", IMAGE, "sleep", "3600")
        d("run", "-d", "--name", "multi", "--network", "appnet", IMAGE, "sleep", "3600")
        d("network", "connect", "backnet", "multi")
        time.sleep(1)
        snap = live.read_snapshot(
            sources=[DockerSource(env={"DOCKER_HOST": f"unix://{engine.socket}"})]
        )
        host = nsenter.inode_of(ENGINE_NSPATH)
        wanted = {host} | {c.netns for c in snap.containers if c.netns}
        recorded.save(keep(snap, wanted, host, "docker-host"), str(OUT / "docker-iptables.json"))
    finally:
        d("rm", "-f", *names, check=False)
        d("network", "rm", "appnet", "backnet", check=False)
        release_docker(engine)


# --------------------------------------------------------------------------- docker nftables


def record_docker_nft() -> None:
    host, up, c1, c2 = f"{P}-dn-host", f"{P}-dn-up", f"{P}-dn-c1", f"{P}-dn-c2"
    with namespaces(host, up, c1, c2):
        for br, cidr in (("docker0", "172.17.0.1/16"), ("bridge1", "192.0.2.1/24")):
            ipn(host, f"link add {br} type bridge")
            ipn(host, f"addr add {cidr} dev {br}")
            ipn(host, f"link set {br} up")
        ipn(host, f"link add eth0 type veth peer name eth0 netns {up}")
        ipn(host, "addr add 203.0.113.10/24 dev eth0")
        ipn(host, "link set eth0 up")
        ipn(up, "addr add 203.0.113.1/24 dev eth0")
        ipn(up, "link set eth0 up")
        ipn(host, "route add default via 203.0.113.1")
        sh("ip", "netns", "exec", host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        veth(host, "veth1c2a3b4", c1, "192.0.2.2/24", "192.0.2.1", "bridge1")
        veth(host, "veth9f8e7d6", c2, "172.17.0.2/16", "172.17.0.1", "docker0")
        sh(
            "ip",
            "netns",
            "exec",
            host,
            "nft",
            "-f",
            str(REPO / "fixtures/rulesets/src/docker-nftables.nft"),
        )
        mac1 = json.loads(sh("ip", "-n", c1, "-j", "link", "show", "eth0"))[0]["address"]
        mac2 = json.loads(sh("ip", "-n", c2, "-j", "link", "show", "eth0"))[0]["address"]

        class Docker29:
            """The records Docker 29 would give for these two containers (hand-written)."""

            name = "docker"

            def available(self) -> tuple[bool, str]:
                return True, ""

            def containers(self) -> list[Container]:
                return [
                    Container(
                        id="c1" + "a" * 62,
                        name="c1",
                        runtime="docker",
                        netns_path=f"/run/netns/{c1}",
                        network_mode="bridge",
                        networks=(
                            ContainerNetwork(
                                "bridge1",
                                "bridge",
                                "bridge1",
                                "192.0.2.2",
                                24,
                                None,
                                "192.0.2.1",
                                mac1,
                            ),
                        ),
                        ports=(PortMapping("tcp", 8080, 80),),
                        image="busybox",
                    ),
                    Container(
                        id="c2" + "b" * 62,
                        name="c2",
                        runtime="docker",
                        netns_path=f"/run/netns/{c2}",
                        network_mode="bridge",
                        networks=(
                            ContainerNetwork(
                                "bridge",
                                "bridge",
                                "docker0",
                                "172.17.0.2",
                                16,
                                None,
                                "172.17.0.1",
                                mac2,
                            ),
                        ),
                        image="busybox",
                    ),
                ]

        snap = live.read_snapshot(sources=[Docker29()])
        wanted = {inode(n) for n in (host, up, c1, c2)}
        recorded.save(
            keep(snap, wanted, inode(host), "docker-nft-host"), str(OUT / "docker-nftables.json")
        )


# --------------------------------------------------------------------------- kubernetes node

CTD = Path("/run/cntrace-dc-containerd")
CTD_CONFIG = f"""version = 2
root = "/var/lib/cntrace-dc-containerd"
state = "{CTD}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{CTD}/containerd.sock"
"""
PODS = (
    # namespace, pod, pod ip, host veth, containers (name, command)
    (
        "default",
        "webapp-6d4cf56db6-x7k2p",
        "10.244.1.7",
        "veth3a1f0c2e",
        (("web", ("/bin/nc", "-ll", "-p", "8080", "-e", "echo", "hi")),),
    ),
    (
        "default",
        "client-5c7b9d8f4-q9wzt",
        "10.244.1.8",
        "vethb41d77a0",
        (("shell", ("/bin/sleep", "3600")),),
    ),
)


@contextmanager
def containerd() -> Iterator[Callable[..., str]]:
    CTD.mkdir(parents=True, exist_ok=True)
    conf = CTD / "config.toml"
    conf.write_text(CTD_CONFIG)
    proc = subprocess.Popen(
        ["containerd", "--config", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def ctr(*args: str, check: bool = True) -> str:
        return sh("ctr", "--address", f"{CTD}/containerd.sock", "-n", "k8s.io", *args, check=check)

    try:
        deadline = time.monotonic() + 20
        while subprocess.run(
            ["ctr", "--address", f"{CTD}/containerd.sock", "version"],
            capture_output=True,
            check=False,
        ).returncode:
            if time.monotonic() > deadline:
                raise SystemExit("containerd did not start")
            time.sleep(0.2)
        yield ctr
    finally:
        for line in ctr("task", "ls", "-q", check=False).split():
            ctr("task", "kill", "-s", "KILL", line, check=False)
        time.sleep(1)
        for line in ctr("task", "ls", "-q", check=False).split():
            ctr("task", "rm", "-f", line, check=False)
        for line in ctr("containers", "ls", "-q", check=False).split():
            ctr("containers", "rm", line, check=False)
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(CTD, ignore_errors=True)
        shutil.rmtree("/var/lib/cntrace-dc-containerd", ignore_errors=True)


def _id(seed: str) -> str:
    """A stable 64-hex container id, like containerd's."""
    return hashlib.sha256(seed.encode()).hexdigest()


def record_k8s() -> None:
    node, up = f"{P}-k8s-node", f"{P}-k8s-up"
    pod_ns = [f"{P}-cni-{i}" for i in range(len(PODS))]
    rootfs = busybox_rootfs()
    with namespaces(node, up, *pod_ns), containerd() as ctr:
        ipn(node, "link add cni0 type bridge")
        ipn(node, "addr add 10.244.1.1/24 dev cni0")
        ipn(node, "link set cni0 up")
        ipn(node, f"link add eth0 type veth peer name eth0 netns {up}")
        ipn(node, "addr add 192.168.0.2/24 dev eth0")
        ipn(node, "link set eth0 up")
        ipn(up, "addr add 192.168.0.1/24 dev eth0")
        ipn(up, "link set eth0 up")
        ipn(node, "route add default via 192.168.0.1")
        ipn(node, "route add 10.244.0.0/24 via 192.168.0.3 dev eth0")
        sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh(
            "ip",
            "netns",
            "exec",
            node,
            "iptables-nft-restore",
            str(REPO / "fixtures/rulesets/src/kube-proxy-iptables.rules"),
        )
        for (kns, pod, ip, hveth, containers), ns in zip(PODS, pod_ns, strict=True):
            veth(node, hveth, ns, f"{ip}/24", "10.244.1.1", "cni0")
            sandbox = _id(pod)
            base = [
                "--annotation",
                f"io.kubernetes.cri.sandbox-name={pod}",
                "--annotation",
                f"io.kubernetes.cri.sandbox-namespace={kns}",
                "--annotation",
                f"io.kubernetes.cri.sandbox-id={sandbox}",
                "--label",
                f"io.kubernetes.pod.name={pod}",
                "--label",
                f"io.kubernetes.pod.namespace={kns}",
                "--with-ns",
                f"network:/run/netns/{ns}",
            ]
            ctr(
                "run",
                "-d",
                "--rootfs",
                *base,
                "--annotation",
                "io.kubernetes.cri.container-type=sandbox",
                "--annotation",
                "io.kubernetes.cri.image-name=registry.k8s.io/pause:3.9",
                str(rootfs),
                sandbox,
                "/bin/sleep",
                "3600",
            )
            for name, cmd in containers:
                cid = _id(f"{pod}/{name}")
                ctr(
                    "run",
                    "-d",
                    "--rootfs",
                    *base,
                    "--annotation",
                    "io.kubernetes.cri.container-type=container",
                    "--annotation",
                    f"io.kubernetes.cri.container-name={name}",
                    str(rootfs),
                    cid,
                    *cmd,
                )
        time.sleep(1)
        source = ContainerdSource(roots=(str(CTD / "io.containerd.runtime.v2.task"),))
        snap = live.read_snapshot(sources=[source])
        wanted = {inode(n) for n in (node, up, *pod_ns)}
        recorded.save(keep(snap, wanted, inode(node), "k8s-node-1"), str(OUT / "k8s-node.json"))


# --------------------------------------------------------------------------- k8s-node lab (real)

K8S_OUT = REPO / "fixtures" / "k8s"
RULESETS = REPO / "fixtures" / "rulesets"


def record_k8s_lab() -> None:
    """The k8s-node lab (cntrace.lab.k8s) in both variants, read live: a real containerd, pods
    wired by the real CNI plugins, kube-proxy's rules as cntrace generates them (iptables mode on
    the bridge variant, nftables mode on the ptp one). The node namespace becomes the root."""
    K8S_OUT.mkdir(parents=True, exist_ok=True)
    for variant, mode in (("bridge", "iptables"), ("ptp", "nft")):
        p = k8splan.plan("fxk8s", variant, mode)
        node.down(p.name)
        node.up(p)
        try:
            snap = live.read_snapshot()
            wanted = {inode(n) for n in p.namespaces}
            out = K8S_OUT / f"node-{variant}-{mode}.json"
            host = inode(p.node_ns)
            kept = keep(snap, wanted, host, k8splan.NODE_NAME)
            kept = dataclasses.replace(  # the node is the host, not a named-namespace "container"
                kept, containers=tuple(c for c in kept.containers if c.netns != host)
            )
            recorded.save(kept, str(out))
            if mode == "iptables":
                text = sh("ip", "netns", "exec", p.node_ns, "iptables-nft-save")
                (RULESETS / "kube-proxy-lab-iptables.save").write_text(_strip_dates(text))
            else:
                js = sh("ip", "netns", "exec", p.node_ns, "nft", "-j", "list", "table", "ip",
                        "kube-proxy")  # fmt: skip
                (RULESETS / "kube-proxy-lab-nft.nft.json").write_text(js)
                txt = sh("ip", "netns", "exec", p.node_ns, "nft", "list", "table", "ip",
                         "kube-proxy")  # fmt: skip
                (RULESETS / "kube-proxy-lab-nft.nft.txt").write_text(txt)
        finally:
            node.down(p.name)


def _strip_dates(text: str) -> str:
    """iptables-save's header and footer carry the time; the fixture should not churn."""
    return "".join(
        ln
        for ln in text.splitlines(keepends=True)
        if not ln.startswith(("# Generated", "# Completed"))
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    which = sys.argv[1:] or ["docker", "docker-nft", "k8s", "k8s-lab"]
    recorders = {"docker": record_docker, "docker-nft": record_docker_nft, "k8s": record_k8s,
                 "k8s-lab": record_k8s_lab}  # fmt: skip
    for name in which:
        recorders[name]()
        print(f"recorded {name}")


if __name__ == "__main__":
    main()
