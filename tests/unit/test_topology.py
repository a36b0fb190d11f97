"""Topology on hand-built Snapshots: veth pairing, bridge ports, host sides, hosts, modes."""

from __future__ import annotations

from cntrace.model import (
    Address,
    BridgePort,
    Container,
    FdbEntry,
    Link,
    Netns,
    Route,
    Snapshot,
)
from cntrace.topology import Topology, label_of

HOST, C1, C2, C3, ORPHAN = 1001, 1002, 1003, 1004, 1005


def lo() -> Link:
    return Link(1, "lo", kind="loopback", mac="00:00:00:00:00:00", mtu=65536, oper_state="unknown")


def world() -> Snapshot:
    host = Netns(
        HOST,
        is_root=True,
        links=(
            lo(),
            Link(2, "eth0", mac="02:00:00:00:00:01", addresses=(Address(4, "203.0.113.5", 24),)),
            Link(
                3,
                "br0",
                kind="bridge",
                mac="02:00:00:00:00:02",
                addresses=(Address(4, "10.0.0.1", 24),),
            ),
            Link(
                4,
                "vetha",
                kind="veth",
                master=3,
                peer_ifindex=2,
                peer_netns=C1,
                bridge_port=BridgePort(state="forwarding"),
            ),
            # Same ifindex pair as C2's eth0 <-> vethb, but C3's: collisions must not confuse.
            Link(
                5,
                "vethb",
                kind="veth",
                master=3,
                peer_ifindex=2,
                peer_netns=C2,
                bridge_port=BridgePort(state="blocking", hairpin=True),
            ),
            Link(6, "vethc", kind="veth", peer_ifindex=2, peer_netns=C3),
        ),
        routes=(Route(4, "0.0.0.0/0", gateway="203.0.113.1", oif="eth0"),),
        fdb=(
            FdbEntry("02:00:00:00:01:01", "vetha", "br0"),
            FdbEntry("02:00:00:00:02:02", "vetha", "br0", local=True),
        ),
    )
    c1 = Netns(
        C1,
        name="c1",
        links=(
            lo(),
            Link(
                2,
                "eth0",
                kind="veth",
                mac="02:00:00:00:01:01",
                peer_ifindex=4,
                peer_netns=HOST,
                addresses=(Address(4, "10.0.0.2", 24),),
            ),
        ),
    )
    c2 = Netns(
        C2,
        name="c2",
        links=(
            lo(),
            Link(2, "eth0", kind="veth", mac="02:00:00:00:01:02", peer_ifindex=5, peer_netns=HOST),
        ),
    )
    c3 = Netns(
        C3, name="c3", links=(lo(), Link(2, "eth0", kind="veth", peer_ifindex=6, peer_netns=HOST))
    )
    orphan = Netns(ORPHAN, name="stray", links=(lo(),))
    containers = (
        Container("a" * 64, "web", "docker", pid=10, netns=C1, network_mode="bridge"),
        Container("b" * 64, "side", "docker", pid=11, netns=C1, network_mode="container:web"),
        Container("c" * 64, "db", "docker", pid=12, netns=C2, network_mode="bridge"),
        Container("d" * 64, "hostnet", "docker", pid=13, netns=HOST, network_mode="host"),
        Container("netns:c3", "c3", "netns", netns=C3, network_mode="unknown"),
    )
    return Snapshot(netns=(host, c1, c2, c3, orphan), containers=containers)


def test_peer_and_bridge_port_of_a_container() -> None:
    snap = world()
    topo = Topology(snap)
    web = topo.by_name("web")
    assert web is not None
    (att,) = topo.attachments(web)
    assert att.kind == "veth"
    assert att.peer is not None and att.peer.link.name == "vetha"
    assert att.bridge is not None and att.bridge.link.name == "br0"
    assert att.port == BridgePort(state="forwarding")
    assert att.fdb == FdbEntry("02:00:00:00:01:01", "vetha", "br0")


def test_port_state_and_missing_fdb_entry() -> None:
    topo = Topology(world())
    db = topo.by_name("db")
    assert db is not None
    (att,) = topo.attachments(db)
    assert att.peer is not None and att.peer.link.name == "vethb"
    assert att.port is not None and att.port.state == "blocking" and att.port.hairpin
    assert att.fdb is None  # the bridge never learnt db's MAC


def test_veth_without_bridge() -> None:
    topo = Topology(world())
    c3 = topo.by_name("c3")
    assert c3 is not None
    (att,) = topo.attachments(c3)
    assert att.peer is not None and att.peer.link.name == "vethc" and att.bridge is None
    assert topo.infer_mode(c3) == "veth"


def test_veth_pairs_are_listed_once() -> None:
    pairs = Topology(world()).veth_pairs()
    names = sorted(tuple(sorted((p.a.link.name, p.b.link.name))) for p in pairs)
    assert names == [("eth0", "vetha"), ("eth0", "vethb"), ("eth0", "vethc")]


def test_peer_rejects_an_ifindex_collision() -> None:
    snap = world()
    topo = Topology(snap)
    host = snap.ns(HOST)
    assert host is not None
    wrong = Link(9, "vethx", kind="veth", peer_ifindex=2, peer_netns=C1)  # C1's eth0 points at 4
    assert topo.peer(host, wrong) is None


def test_host_netns_by_mode() -> None:
    snap = world()
    topo = Topology(snap)
    by = {c.name: c for c in snap.containers}
    assert topo.host_netns(by["web"]) == HOST
    assert topo.host_netns(by["side"]) == HOST  # through the container it shares
    assert topo.host_netns(by["hostnet"]) == HOST


def test_none_mode_host_is_where_the_runtime_bridges_are() -> None:
    snap = world()
    from dataclasses import replace

    lonely = Netns(2000, links=(lo(),))
    c = Container("e" * 64, "nonet", "docker", netns=2000, network_mode="none")
    web = replace(snap.containers[0], networks=())
    snap2 = replace(snap, netns=(*snap.netns, lonely), containers=(web, c))
    assert Topology(snap2).host_netns(c) == HOST  # falls back to the root without bridges


def test_hosts_uplinks_graph_and_unowned() -> None:
    snap = world()
    topo = Topology(snap)
    host = snap.ns(HOST)
    assert host is not None
    assert [h.inode for h in topo.hosts()] == [HOST]
    assert [u.name for u in topo.uplinks(host)] == ["eth0"]
    assert [p.name for p in topo.ports(host, host.links[2])] == ["vetha", "vethb"]
    assert topo.graph()[HOST] == {C1, C2, C3}
    # c3 is only an `ip netns` name: no container runtime owns it either.
    assert [n.inode for n in topo.unowned()] == [C3, ORPHAN]


def test_labels() -> None:
    snap = world()
    assert label_of(snap, HOST) == "host"
    assert label_of(snap, C1) == "web"  # not the sidecar sharing it
    assert label_of(snap, ORPHAN) == "stray"
    assert label_of(snap, 424242) == "netns:424242"


def test_infer_mode() -> None:
    snap = world()
    topo = Topology(snap)
    c = Container("x", "x", "netns", netns=C1)
    assert topo.infer_mode(c) == "bridge"
    assert topo.infer_mode(Container("y", "y", "netns", netns=ORPHAN)) == "none"
    mv = Netns(3000, links=(lo(), Link(2, "mv0", kind="macvlan", peer_ifindex=2, peer_netns=HOST)))
    from dataclasses import replace

    snap2 = replace(snap, netns=(*snap.netns, mv))
    assert Topology(snap2).infer_mode(Container("z", "z", "netns", netns=3000)) == "macvlan"


def test_sharers_never_own_a_namespace() -> None:
    snap = world()
    topo = Topology(snap)
    assert topo.owner(HOST) is None  # hostnet runs there in host mode: the root is the host's
    assert topo.label(HOST) == "host"
    owner = topo.owner(C1)
    assert owner is not None and owner.name == "web"  # not side, which shares web's
    assert [c.name for c in topo.sharers(C1)] == ["side"]
    lone = Snapshot(
        netns=snap.netns,
        containers=(Container("e" * 64, "only", "docker", netns=C2, network_mode="container:x"),),
    )
    assert Topology(lone).owner(C2) is None and Topology(lone).label(C2) == "c2"


def test_host_ref_is_the_root_namespace() -> None:
    from cntrace.topology import resolve_ref

    snap = world()
    assert resolve_ref(snap, "host") == snap.root
