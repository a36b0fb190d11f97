"""Discovery of real namespaces built here, compared with what `ip -j` and /proc say.

Topology (all under the cntrace-dc- prefix, removed at the end even on failure)::

    cntrace-dc-it1 (eth0 10.252.0.11/24, policy rule, listeners 127.0.0.1:7001, 0.0.0.0:7002,
                    udp 0.0.0.0:7003)  ──veth──┐
                                               dcbr0 (10.252.0.1/24) in cntrace-dc-itbr
    cntrace-dc-it2 (eth0 10.252.0.12/24) ─veth─┘     + dcdum0 (veth) ──macvlan── dcmv0 in it2
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from clirun import run_json, run_ok
from discovery_schema import validate
from harness import require_root
from labkit import Lab
from safety import GUARD, ping

from cntrace.model import Container, Netns, Snapshot
from cntrace.sources import live
from cntrace.sources.netlink import dumps
from cntrace.sources.runtimes.netns import NetnsSource
from cntrace.sources.runtimes.pid import PidSource
from cntrace.topology import Topology, resolve_ref

BR, NS1, NS2, NS3 = "cntrace-dc-itbr", "cntrace-dc-it1", "cntrace-dc-it2", "cntrace-dc-it3"
GONE = "cntrace-dc-itgone"


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def ipn(ns: str, args: str) -> str:
    return sh("ip", "-n", ns, *args.split())


def ipj(ns: str, *args: str) -> list[dict[str, object]]:
    out = sh("ip", "-n", ns, "-j", "-d", *args)
    data: list[dict[str, object]] = json.loads(out or "[]")
    return data


@dataclass
class World:
    listeners: list[subprocess.Popen[bytes]]

    @property
    def listener_pid(self) -> int:
        return self.listeners[0].pid


LISTENER = r"""
import socket, sys, time
specs = [("tcp", "127.0.0.1", 7001), ("tcp", "0.0.0.0", 7002), ("udp", "0.0.0.0", 7003)]
socks = []
for proto, ip, port in specs:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    if proto == "tcp":
        s.listen()
    socks.append(s)
print("ready", flush=True)
time.sleep(3600)
"""


def _teardown() -> None:
    for ns in (NS1, NS2, NS3, BR, GONE):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_root()
    _teardown()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for ns in (BR, NS1, NS2, NS3):
            sh("ip", "netns", "add", ns)
            ipn(ns, "link set lo up")
        ipn(BR, "link add dcbr0 type bridge")
        ipn(BR, "addr add 10.252.0.1/24 dev dcbr0")
        ipn(BR, "link set dcbr0 up")
        for i, ns in ((1, NS1), (2, NS2)):
            ipn(BR, f"link add dcv{i} type veth peer name eth0 netns {ns}")
            ipn(BR, f"link set dcv{i} master dcbr0 up")
            ipn(ns, f"addr add 10.252.0.1{i}/24 dev eth0")
            ipn(ns, "link set eth0 up")
            ipn(ns, "route add default via 10.252.0.1")
        ipn(BR, "link set dcv2 type bridge_slave hairpin on learning off")
        ipn(NS1, "rule add from 10.252.0.11 table 100 prio 1000")
        ipn(NS1, "route add 198.51.100.0/24 via 10.252.0.1 table 100")
        sh("ip", "netns", "exec", NS1, "sysctl", "-qw", "net.ipv4.conf.eth0.rp_filter=2")
        # No dummy driver on this kernel: a veth end serves as the macvlan's lower device.
        ipn(BR, "link add dcdum0 type veth peer name dcdum1")
        ipn(BR, "link set dcdum0 up")
        ipn(BR, "link add dcmv0 link dcdum0 type macvlan mode bridge")
        ipn(BR, f"link set dcmv0 netns {NS2}")
        ipn(NS2, "addr add 10.253.0.12/24 dev dcmv0")
        ipn(NS2, "link set dcmv0 up")
        # it3 has nothing but a macvlan: no veth teaches its netnsid map, RTM_GETNSID must.
        ipn(BR, "link add dcmv1 link dcdum1 type macvlan mode private")
        ipn(BR, f"link set dcmv1 netns {NS3}")
        GUARD.own_netns(BR, NS1, NS2)
        p = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{NS1}", sys.executable, "-c", LISTENER],
            stdout=subprocess.PIPE,
        )
        procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
        # Traffic so the bridge learns both MACs.
        assert ping(f"/run/netns/{NS1}", "10.252.0.12")
        yield World(procs)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        GUARD.disown(*(f"/run/netns/{n}" for n in (BR, NS1, NS2)))
        _teardown()


@pytest.fixture(scope="module")
def snap(world: World) -> Snapshot:
    return live.read_snapshot(sources=[NetnsSource(), PidSource([world.listener_pid])])


def _ns(snap: Snapshot, name: str) -> Netns:
    (ns,) = [n for n in snap.netns if n.name == name]
    return ns


@pytest.mark.parametrize("name", [BR, NS1, NS2])
def test_links_equal_ip_link(snap: Snapshot, world: World, name: str) -> None:
    ns = _ns(snap, name)
    ours = {(lk.ifindex, lk.name, lk.mac, lk.mtu, lk.admin_up) for lk in ns.links}
    theirs = {
        (
            lk["ifindex"],
            lk["ifname"],
            lk.get("address") if lk.get("link_type") != "loopback" else "00:00:00:00:00:00",
            lk["mtu"],
            "UP" in lk["flags"],
        )
        for lk in ipj(name, "link")
    }
    assert ours == theirs
    kinds = {lk.name: lk.kind for lk in ns.links}
    for lk in ipj(name, "link"):
        info = lk.get("linkinfo") or {}
        expected = info.get("info_kind") or ("loopback" if lk["ifname"] == "lo" else "device")
        assert kinds[str(lk["ifname"])] == expected


@pytest.mark.parametrize("name", [BR, NS1, NS2])
def test_addresses_equal_ip_addr(snap: Snapshot, world: World, name: str) -> None:
    ns = _ns(snap, name)
    ours = {(lk.name, a.cidr, a.scope) for lk in ns.links for a in lk.addresses}
    theirs = {
        (lk["ifname"], f"{a['local']}/{a['prefixlen']}", a["scope"].replace("universe", "global"))
        for lk in ipj(name, "addr")
        for a in lk["addr_info"]
    }
    assert ours == theirs


@pytest.mark.parametrize("name", [NS1, NS2])
def test_routes_of_all_tables_equal_ip_route(snap: Snapshot, world: World, name: str) -> None:
    ns = _ns(snap, name)
    ours = {
        (r.dst, r.table, r.gateway, r.oif)
        for r in ns.routes
        if r.family == 4 and r.type == "unicast"
    }
    theirs = set()
    for r in ipj(name, "-4", "route", "show", "table", "all"):
        if r.get("type", "unicast") != "unicast":
            continue
        table = {"main": 254, "local": 255}.get(str(r.get("table", "main")), r.get("table"))
        dst = "0.0.0.0/0" if r["dst"] == "default" else str(r["dst"])
        dst = dst if "/" in dst else f"{dst}/32"
        theirs.add((dst, int(str(table)), r.get("gateway"), r.get("dev")))
    assert ours == theirs


def test_policy_rule(snap: Snapshot) -> None:
    rules = [r for r in _ns(snap, NS1).rules if r.family == 4]
    theirs = ipj(NS1, "-4", "rule")
    assert [r.priority for r in rules] == [int(str(r["priority"])) for r in theirs]
    (ours,) = [r for r in rules if r.priority == 1000]
    assert (ours.src, ours.table, ours.action) == ("10.252.0.11/32", 100, "lookup")


def test_veth_peers_and_bridge_ports_equal_the_kernel(snap: Snapshot, world: World) -> None:
    topo = Topology(snap)
    br_inode = os.stat(f"/run/netns/{BR}").st_ino
    for i, name in ((1, NS1), (2, NS2)):
        (eth0,) = [lk for lk in ipj(name, "link") if lk["ifname"] == "eth0"]
        ns = _ns(snap, name)
        link = ns.link("eth0")
        assert link is not None and link.peer_netns == br_inode
        assert link.peer_ifindex == eth0["link_index"]
        (host,) = [lk for lk in ipj(BR, "link") if lk["ifindex"] == eth0["link_index"]]
        assert host["ifname"] == f"dcv{i}" and host["master"] == "dcbr0"
        (att,) = [a for a in topo.attachments(_container(snap, name)) if a.kind == "veth"]
        assert att.peer is not None and att.peer.link.name == f"dcv{i}"
        assert att.bridge is not None and att.bridge.link.name == "dcbr0"
        slave = host["linkinfo"]["info_slave_data"]
        assert att.port is not None
        assert att.port.state == slave["state"]
        assert att.port.hairpin == slave["hairpin"]
        assert att.port.learning == slave["learning"]
        assert att.port.isolated == slave["isolated"]


def test_fdb_has_the_learnt_mac(snap: Snapshot) -> None:
    topo = Topology(snap)
    (att,) = [a for a in topo.attachments(_container(snap, NS1)) if a.kind == "veth"]
    assert att.fdb is not None and att.fdb.port == "dcv1"
    learnt = sh("bridge", "-n", BR, "fdb", "show", "br", "dcbr0")
    assert f"{att.interface.link.mac} dev dcv1" in learnt


def test_macvlan_lower_device_in_another_namespace(snap: Snapshot) -> None:
    ns2 = _ns(snap, NS2)
    mv = ns2.link("dcmv0")
    assert mv is not None and mv.kind == "macvlan" and mv.macvlan_mode == "bridge"
    br = _ns(snap, BR)
    lower = br.link("dcdum0")
    assert lower is not None
    assert (mv.peer_netns, mv.peer_ifindex) == (br.inode, lower.ifindex)
    (kernel,) = [lk for lk in ipj(NS2, "link") if lk["ifname"] == "dcmv0"]
    assert kernel["link_index"] == lower.ifindex
    only = _ns(snap, NS3).link("dcmv1")
    lower1 = br.link("dcdum1")
    assert only is not None and lower1 is not None and only.macvlan_mode == "private"
    assert (only.peer_netns, only.peer_ifindex) == (br.inode, lower1.ifindex)


def test_sysctls_equal_proc(snap: Snapshot) -> None:
    ns = _ns(snap, NS1)
    for key in (
        "net.ipv4.ip_forward",
        "net.ipv4.conf.all.rp_filter",
        "net.ipv4.conf.default.rp_filter",
        "net.ipv4.conf.eth0.rp_filter",
        "net.ipv4.conf.eth0.forwarding",
        "net.ipv6.conf.all.forwarding",
    ):
        path = "/proc/sys/" + key.replace(".", "/")
        value = sh("ip", "netns", "exec", NS1, "cat", path).strip()
        assert ns.sysctls[key] == value, key
    assert ns.sysctls["net.ipv4.conf.eth0.rp_filter"] == "2"
    br = _ns(snap, BR)  # a namespace with a bridge also gets /proc/sys-only values
    rng = sh("ip", "netns", "exec", BR, "cat", "/proc/sys/net/ipv4/ip_local_port_range")
    assert br.sysctls["net.ipv4.ip_local_port_range"] == " ".join(rng.split())


def test_listeners_with_bind_address_and_owner(snap: Snapshot, world: World) -> None:
    ns = _ns(snap, NS1)
    ours = {(s.proto, s.local_ip, s.local_port) for s in ns.sockets}
    assert ours == {("tcp", "127.0.0.1", 7001), ("tcp", "0.0.0.0", 7002), ("udp", "0.0.0.0", 7003)}
    ss = sh("ip", "netns", "exec", NS1, "ss", "-Hltnu")
    for _, ip, port in ours:
        assert f"{ip}:{port}" in ss
    loop = next(s for s in ns.sockets if s.local_port == 7001)
    assert loop.loopback_only and not loop.wildcard
    snap2 = live.read_snapshot(only=[f"netns:{NS1}"], sources=[NetnsSource()])
    owned = [s for s in _ns(snap2, NS1).sockets if s.local_port == 7002]
    assert owned[0].pid == world.listener_pid


def _container(snap: Snapshot, name: str) -> Container:
    (c,) = [c for c in snap.containers if c.name == name and c.runtime == "netns"]
    return c


def test_named_namespaces_become_containers_and_the_bridge_namespace_a_host(
    snap: Snapshot,
) -> None:
    names = {c.name for c in snap.containers if c.runtime == "netns"}
    assert {NS1, NS2} <= names
    assert BR not in names  # it holds a bridge with ports: a host, shown by topo
    topo = Topology(snap)
    assert _container(snap, NS1).host_netns == _ns(snap, BR).inode
    assert _ns(snap, BR).inode in {h.inode for h in topo.hosts()}
    assert _container(snap, NS1).network_mode == "bridge"


def test_refs(snap: Snapshot, world: World) -> None:
    assert resolve_ref(snap, NS1) == _container(snap, NS1)
    target = resolve_ref(snap, f"netns:{NS2}")
    assert isinstance(target, Netns) and target.name == NS2
    by_pid = resolve_ref(snap, f"pid:{world.listener_pid}")
    assert isinstance(by_pid, Container) and by_pid.netns == _ns(snap, NS1).inode


def test_cli_show_and_topo_json_validate(world: World) -> None:
    for args in (["show", "--json", NS1], ["topo", "--json"], ["ls", "--json", "cntrace-dc-it"]):
        doc = run_json(*args)
        validate(doc)
        if args[0] == "ls":
            rows = {r["name"]: r for r in doc["containers"]}
            assert rows[NS1]["bridges"] == ["dcbr0"]
            assert [v["name"] for v in rows[NS1]["host_veths"]] == ["dcv1"]


def test_namespace_vanishing_mid_discovery_is_reported_not_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A namespace seen by the /proc scan that is gone before it can be entered."""
    require_root()
    proc = subprocess.Popen(["unshare", "--net", "sleep", "3600"])
    try:
        deadline = time.monotonic() + 5
        inode = None
        while inode is None and time.monotonic() < deadline:
            target = os.readlink(f"/proc/{proc.pid}/ns/net")
            own = os.readlink("/proc/self/ns/net")
            inode = int(target[5:-1]) if target != own else None
            time.sleep(0.02)
        assert inode is not None
        scan = live.find_namespaces

        def scan_then_kill(*args: object) -> object:
            """The scan sees the namespace; its only process dies right after."""
            found = scan(*args)  # type: ignore[arg-type]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return found

        monkeypatch.setattr(live, "find_namespaces", scan_then_kill)
        snap = live.read_snapshot(sources=[NetnsSource()])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    gone = snap.ns(inode)
    assert gone is not None and gone.error is not None and "vanished" in gone.error
    assert snap.root is not None and snap.root.links


def test_recorded_round_trip(snap: Snapshot, tmp_path: object) -> None:
    from pathlib import Path

    from cntrace.sources import recorded

    path = Path(str(tmp_path)) / "snap.json"
    recorded.save(snap, str(path))
    again = recorded.load(str(path))
    assert again == snap


def test_lab_ls_lists_its_containers_with_veths_and_bridges(lab: Lab) -> None:
    res = lab.run("ls", "--json", "--runtime", "lab")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    validate(doc)
    rows = {r["id"]: r for r in doc["containers"]}
    st = lab.state
    bridges = {n.name: n.bridge for n in st.networks}
    for c in st.containers:
        row = rows[f"{st.name}.{c.name}"]
        assert [v["name"] for v in row["host_veths"]] == [c.host_veth]
        assert row["bridges"] == [bridges[c.network]]
        assert f"{c.ip}/{c.prefixlen}" in row["ips"]


def test_netlink_errors_are_per_namespace() -> None:
    """A namespace whose socket fails does not fail the others (dump_many slots)."""
    require_root()
    with dumps.Conn.open("/proc/self/ns/net", diag=True) as conn:
        no_diag = dumps.Conn(conn.route)  # has no sock_diag socket: its slot is an error
        results = dumps.dump_many([conn, no_diag, conn], "tcp4")
    assert not isinstance(results[0], OSError)
    assert isinstance(results[1], OSError)
    assert not isinstance(results[2], OSError)


def test_lab_published_port_rules_are_attributed(lab: Lab) -> None:
    st = lab.state
    published = [c for c in st.containers if c.published]
    assert published, "the lab publishes a port"
    c = published[0]
    res = lab.run("show", "--json", f"{st.name}.{c.name}")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    validate(doc)
    nf = doc["container"]["netfilter"]
    assert nf["status"] == "ok", nf["reason"]
    port = c.published[0]
    assert any(
        f"--dport {port.host_port}" in r["text"]
        and f"--to-destination {c.ip}:{port.container_port}" in r["text"]
        for r in nf["dnat"]
    ), nf["dnat"]
    assert any("MASQUERADE" in r["text"] for r in nf["egress"])


def test_snapshot_save_then_replay(world: World, tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "host.json"
    res = run_ok("snapshot", "--save", str(path), timeout=300)
    assert "saved" in res.stderr
    doc = run_json("show", "--json", NS1, "--snapshot", str(path))
    validate(doc)
    (iface,) = [i for i in doc["container"]["interfaces"] if i["name"] == "eth0"]
    assert iface["host_side"]["peer"]["name"] == "dcv1"
    assert iface["host_side"]["bridge"]["name"] == "dcbr0"


def test_unprivileged_run_names_the_capability() -> None:
    require_root()
    res = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "cntrace",
            "ls",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 3, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "CAP_SYS_ADMIN" in lines[0]
