"""The k8s-node lab on a real kernel: a real containerd, pods wired by the real CNI plugins,
kube-proxy's rules in both modes; every path cntrace predicts is proven by a real connection.

Two nodes: bridge CNI + kube-proxy iptables mode, ptp CNI + kube-proxy nftables mode (so both
CNI variants and both modes run). Connections go only between the lab's own namespaces (the
Service range is virtual: it exists as DNAT rules in the node the test created).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import REPO, require_root, unavailable
from labkit import cntrace
from safety import GUARD, probe

from cntrace.lab.k8s import node as k8snode
from cntrace.lab.k8s import plan as k8splan
from cntrace.sources import live
from cntrace.sources.runtimes.containerd import ContainerdSource

sys.path.insert(0, str(REPO / "tests"))
from k8scases import CASES, UP, K8sCase

NODES = (("bridge", "nft"), ("ptp", "nftables"))  # (--cni, --iptables)
TRIES = 24  # connections to a two-endpoint Service: both are seen unless p < 1e-6


@dataclass
class Node:
    name: str
    variant: str
    proxy: str  # iptables | nft (kube-proxy's mode)

    @property
    def state(self) -> k8snode.NodeState:
        st = k8snode.load(self.name)
        assert st is not None
        return st

    def nspath(self, src: str) -> str:
        if src == UP:
            return f"/run/netns/{self.state.upstream_netns}"
        return f"/run/netns/{self.state.pod(src).netns}"

    def ref(self, src: str) -> str:
        return f"netns:{self.state.upstream_netns}" if src == UP else src

    def connect_endpoint(self, src: str, endpoint: str) -> str:
        """A connection straight to a Service's endpoint: from the source pod, or from the node
        when the source is outside (nothing routes the pod network there)."""
        return self.connect(src, endpoint, via_node=src == UP)

    def connect(self, src: str, dst: str, via_node: bool = False) -> str:
        ip, _, port = dst.rpartition(":")
        if not ip[0].isdigit():  # a pod's name: its address
            ip = self.state.pod(ip).ip
        where = f"/run/netns/{self.state.node_netns}" if via_node else self.nspath(src)
        res = probe(where, ip, int(port), timeout=1.5, echo=True).removeprefix("ok:")
        return "http" if res.startswith("HTTP/1.0 200") else res  # the upstream's server


@pytest.fixture(scope="module", params=NODES, ids=[f"{c}-{m}" for c, m in NODES])
def node(request: pytest.FixtureRequest) -> Iterator[Node]:
    require_root()
    for tool in ("containerd", "ctr", "runc", "nft", "iptables-nft"):
        if shutil.which(tool) is None:
            unavailable(f"needs {tool} (scripts/setup-system.sh installs containerd)")
    if not os.path.isdir(k8splan.CNI_BIN):
        unavailable("needs the CNI plugins in /usr/lib/cni (containernetworking-plugins)")
    cni, iptables = request.param
    name = f"k8s{os.getpid() % 100000}{cni[0]}"
    res = cntrace("lab", "up", "--topology", "k8s-node", "--name", name, "--cni", cni,
                  "--iptables", iptables)  # fmt: skip
    st = k8snode.load(name)
    owned = [f"/run/netns/{n}" for n in (st.namespaces if st else ())]
    GUARD.own(*owned)
    try:
        assert res.returncode == 0, res.stderr
        assert st is not None
        GUARD.own_virtual(f"/run/netns/{st.node_netns}", k8splan.SERVICE_CIDR)
        yield Node(name, cni, "iptables" if iptables == "nft" else "nft")
    finally:
        down = cntrace("lab", "down", "--name", name)
        GUARD.disown(*owned)
        assert down.returncode == 0, down.stderr
        assert not list(Path("/run/netns").glob(f"{name}.*")), "the node left namespaces"
        assert not Path(f"/run/cntrace-k8s/{name}").exists()
        assert not Path(f"/var/lib/cntrace-k8s/{name}").exists()
        assert k8snode.load(name) is None
        if st is not None:
            cmd = Path(f"/proc/{st.containerd_pid}/cmdline")
            assert not cmd.exists() or not cmd.read_bytes().startswith(b"containerd"), (
                "containerd still runs"
            )


def test_discovery_matches_containerd_and_the_kernel(node: Node) -> None:
    st = node.state
    tasks = {}
    ctr = subprocess.run(
        ["ctr", "--address", st.notes["socket"], "-n", "k8s.io", "task", "ls"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for line in ctr.splitlines()[1:]:
        cid, pid, status = line.split()[:3]
        tasks[cid] = (int(pid), status)
    snap = live.read_snapshot(sources=[ContainerdSource()])
    ours = {c.id: c for c in snap.containers if c.labels.get("containerd.state", "").startswith(
        f"/run/cntrace-k8s/{node.name}/")}  # fmt: skip
    assert set(ours) == set(tasks), "discovery and containerd disagree on the tasks"
    for pod in st.pods:
        sandbox, app = ours[pod.sandbox_id], ours[pod.container_id]
        assert (sandbox.name, sandbox.runtime, sandbox.network_mode) == (
            pod.ref, "kubernetes", "cni")  # fmt: skip
        assert app.name == f"{pod.ref}/{pod.container}"
        assert app.network_mode == f"container:{pod.ref}"
        assert sandbox.pid == tasks[pod.sandbox_id][0] and app.pid == tasks[pod.container_id][0]
        inode = os.stat(f"/run/netns/{pod.netns}").st_ino
        assert sandbox.netns == app.netns == inode  # the kernel: both in the pod's namespace
        assert sandbox.labels["containerd.address"] == st.notes["socket"]
    # ls, as a user sees it: the pod's address (from the kernel), its CNI link, bridge or route
    doc = json.loads(cntrace("ls", "--json", "--runtime", "kubernetes").stdout)
    rows = {r["name"]: r for r in doc["containers"]}
    for pod in st.pods:
        row = rows[pod.ref]
        addr = subprocess.run(["ip", "-n", pod.netns, "-j", "addr", "show", "eth0"],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
        kernel_ip = json.loads(addr)[0]["addr_info"][0]["local"]
        assert kernel_ip == pod.ip and [i.split("/")[0] for i in row["ips"]] == [pod.ip]
        kube = row["kubernetes"]
        assert (kube["pod"], kube["namespace"], kube["container"]) == (pod.name, pod.namespace,
                                                                        None)  # fmt: skip
        assert kube["node_ip"] == k8splan.NODE_IP and kube["cni_interface"] == pod.host_iface
        assert kube["routed"] == (node.variant == "ptp")
        assert row["bridges"] == (["cni0"] if node.variant == "bridge" else [])
    # with routes read (show/snapshot), a routed CNI's route to each pod is named
    full = live.read_snapshot()
    from cntrace.render.discovery_json import ls_doc

    rows = {r["name"]: r for r in ls_doc(full, runtime="kubernetes")["containers"]}
    for pod in st.pods:
        want = [] if node.variant == "bridge" else [f"{pod.ip}/32 dev {pod.host_iface}"]
        assert rows[pod.ref]["kubernetes"]["routes"] == want


def _path(node: Node, case: K8sCase, *extra: str) -> dict[str, object]:
    res = cntrace("path", node.ref(case.src), case.dst, "--json", *extra)
    assert res.returncode in (0, 1), res.stderr
    doc: dict[str, object] = json.loads(res.stdout)
    return doc


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_path_is_what_a_connection_does(node: Node, case: K8sCase) -> None:
    doc = _path(node, case)
    verdict = doc["verdict"]
    assert isinstance(verdict, dict)
    assert verdict["status"] == case.status, verdict["summary"]
    branches = doc.get("branches") or []
    assert isinstance(branches, list)
    assert [(b["pod"], b["verdict"]["status"]) for b in branches] == list(case.branches)
    codes = {f["code"] for f in doc["findings"]}  # type: ignore[attr-defined]
    assert case.finding is None or case.finding in codes, doc["findings"]
    if case.service:
        svc = doc["service"]
        assert isinstance(svc, dict)
        assert (f"{svc['namespace']}/{svc['name']}:{svc['port_name']}", svc["kind"]) == (
            case.service, case.kind)  # fmt: skip
        assert svc["proxy"] == ("iptables" if node.proxy == "iptables" else "nftables")
    # Each branch's verdict is what a real connection to that branch's endpoint does.
    for b in branches:
        got = node.connect_endpoint(case.src, b["endpoint"])
        want = b["pod"].split("/")[1] if b["verdict"]["status"] == "delivered" else "refused"
        assert got == want, (b["endpoint"], b["verdict"]["summary"])
    # And the connection to what was asked.
    if case.conn.startswith("any:"):
        allowed = set(case.conn[4:].split("|"))
        seen = {node.connect(case.src, case.dst) for _ in range(TRIES)}
        assert seen == allowed, f"{TRIES} connections to {case.dst} gave {seen}"
    else:
        assert node.connect(case.src, case.dst) == case.conn


def test_live_names_the_endpoint_the_kernel_picked(node: Node) -> None:
    case = next(c for c in CASES if c.name == "clusterip-two-endpoints")
    picked = set()
    for _ in range(6):
        doc = _path(node, case, "--live")
        assert doc["mode"] == "live" and doc["verdict"]["status"] == "delivered"  # type: ignore[index]
        branches = doc["branches"]
        assert isinstance(branches, list)
        chosen = [b for b in branches if b["chosen"]]
        assert len(chosen) == 1 and all(b["chosen"] is False for b in branches if b not in chosen)
        # the path shown is the chosen branch's: its DNAT goes to the endpoint named
        nat = next(h for h in doc["hops"] if h["kind"] == "nat")  # type: ignore[union-attr]
        assert nat["packet"]["dst"] + ":" + str(nat["packet"]["dport"]) == chosen[0]["endpoint"]
        seen_after = [
            h["observed_packet"]
            for h in doc["hops"]  # type: ignore[union-attr]
            if h["observed"] and h["observed_packet"] and h["direction"] == "request"
        ]
        assert any(f"{p['dst']}:{p['dport']}" == chosen[0]["endpoint"] for p in seen_after)
        picked.add(chosen[0]["pod"])
    assert picked <= {"default/web-a", "default/web-b"}


def test_no_endpoints_live_is_refused(node: Node) -> None:
    case = next(c for c in CASES if c.name == "no-endpoints")
    doc = _path(node, case, "--live")
    assert doc["verdict"]["status"] == "refused", doc["verdict"]  # type: ignore[index]


def test_cni_del_leaves_nothing(node: Node) -> None:
    """Last in the module: CNI DEL for every pod, then nothing of CNI's is left on the node."""
    st = node.state
    assert k8snode.pods_down(st) == []
    links = json.loads(
        subprocess.run(
            ["ip", "-n", st.node_netns, "-j", "link"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert not [lk["ifname"] for lk in links if lk.get("link_type") == "ether"
                and lk["ifname"].startswith("veth")], "CNI DEL left veths"  # fmt: skip
    nat = subprocess.run(["ip", "netns", "exec", st.node_netns, "iptables-nft-save", "-t", "nat"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "CNI-DN-" not in nat and "-j CNI-" not in nat.replace("CNI-HOSTPORT", ""), nat
    leases = Path(f"/run/cntrace-k8s/{node.name}/ipam/{k8splan.NETWORK_NAME}")
    assert not [p.name for p in leases.glob("10.*")], "host-local kept leases"
