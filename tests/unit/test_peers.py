"""Veth peers across namespaces from what each namespace's link dump says (sources.peers).

The kernel names a veth's peer by ifindex plus a netnsid that only means something inside the
namespace that reports it; both ends of veths made inside namespaces often have ifindex 2.
"""

from __future__ import annotations

from cntrace.model import Link, Netns, Snapshot
from cntrace.sources.namespaces import Space, to_netns
from cntrace.sources.netlink.decode import RawLink
from cntrace.sources.peers import resolve_peers
from cntrace.topology import Topology


def raw(ifindex: int, name: str, link: int | None, nsid: int | None, kind: str = "veth") -> RawLink:
    return RawLink(
        ifindex,
        name,
        kind,
        None,
        1500,
        True,
        "up",
        None,
        link,
        nsid,
        None,
        None,
        None,
        None,
        None,
        {},
    )


def space(inode: int, *links: RawLink) -> Space:
    return Space(inode, raw_links=list(links))


def test_mirrored_pair_with_equal_ifindexes_resolves_both_ways() -> None:
    a, b = space(10, raw(2, "a0", 2, 0)), space(11, raw(2, "b0", 2, 0))
    peers = resolve_peers([a, b])
    assert peers == {(10, 2): 11, (11, 2): 10}
    na, nb = to_netns(a, None, peers), to_netns(b, None, peers)
    snap = Snapshot(netns=(na, nb))
    ref = Topology(snap).peer(na, na.links[0])
    assert ref is not None and (ref.netns.inode, ref.link.name) == (11, "b0")


def test_a_veth_whose_peer_is_elsewhere_but_unknown_is_not_its_own_peer() -> None:
    a = space(10, raw(2, "a0", 2, 0))  # the peer's namespace was not found
    na = to_netns(a, None, resolve_peers([a]))
    assert na.links[0].peer_netns is None and na.links[0].peer_nsid == 0
    assert Topology(Snapshot(netns=(na,))).peer(na, na.links[0]) is None


def test_same_namespace_pair_is_still_found() -> None:
    ns = Netns(
        1,
        links=(
            Link(2, "v0", kind="veth", peer_ifindex=3),
            Link(3, "v1", kind="veth", peer_ifindex=2),
        ),
    )
    ref = Topology(Snapshot(netns=(ns,))).peer(ns, ns.links[0])
    assert ref is not None and ref.link.name == "v1"


def test_contradicting_mutual_matches_are_not_trusted() -> None:
    # x names two different namespaces with one nsid: one of the matches is a coincidence, and
    # without the kernel to ask (no sockets here) neither is kept.
    x = space(10, raw(2, "x1", 2, 0), raw(3, "x2", 5, 0))
    y = space(11, raw(2, "y0", 2, 0))
    z = space(12, raw(5, "z0", 3, 0))
    peers = resolve_peers([x, y, z])
    assert (10, 2) not in peers and (10, 3) not in peers
    assert peers[(11, 2)] == 10 and peers[(12, 5)] == 10


def test_macvlan_lower_device_in_another_namespace_with_the_same_ifindex() -> None:
    root = space(1, raw(2, "eth0", None, None, kind="device"), raw(3, "h0", 4, 0))
    c = space(2, raw(2, "mv0", 2, 0, kind="macvlan"), raw(4, "c0", 3, 0))
    peers = resolve_peers([root, c])
    assert peers[(2, 4)] == 1  # the veth, by the mutual reference
    assert peers[(2, 2)] == 1  # the macvlan's lower device, through the nsid the veth taught
    nc = to_netns(c, None, peers)
    assert nc.links[0].peer_ifindex == 2 and nc.links[0].peer_netns == 1
