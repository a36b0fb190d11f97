"""The raw netlink decoders on messages built byte by byte (layouts from the kernel's uapi)."""

from __future__ import annotations

import socket
import struct

import pytest

from cntrace.sources.netlink import decode as nl
from cntrace.sources.netlink import decode_state, proto


def attr(atype: int, payload: bytes, nested: bool = False) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, atype | (0x8000 if nested else 0)) + payload + b"\0" * (-n % 4)


def msg(mtype: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), mtype, 2, 1, 0) + body


def done() -> bytes:
    return msg(proto.NLMSG_DONE, struct.pack("=i", 0))


def s(text: str) -> bytes:
    return text.encode() + b"\0"


def u32(v: int) -> bytes:
    return struct.pack("=I", v)


def test_veth_bridge_port_link() -> None:
    slave = b"".join(
        [
            attr(1, bytes([3])),  # state forwarding
            attr(2, struct.pack("=H", 32)),
            attr(3, u32(2)),
            attr(4, bytes([1])),  # hairpin (mode)
            attr(8, bytes([0])),  # learning off
            attr(9, bytes([1])),
            attr(33, bytes([1])),  # isolated
        ]
    )
    linkinfo = attr(1, s("veth")) + attr(4, s("bridge")) + attr(5, slave, nested=True)
    body = struct.pack("=BxHiII", 0, 1, 7, 0x1 | 0x10000, 0) + b"".join(
        [
            attr(3, s("veth1234")),
            attr(1, bytes.fromhex("0242ac110002")),
            attr(4, u32(1500)),
            attr(5, struct.pack("=i", 12)),
            attr(10, u32(3)),
            attr(16, bytes([6])),
            attr(37, struct.pack("=i", 4)),
            attr(18, linkinfo, nested=True),
            attr(7, b"\0" * 96),  # an attribute nobody asked for
        ]
    )
    (link,) = nl.parse_links([msg(16, body) + done()])
    assert (link.ifindex, link.name, link.kind, link.mac, link.mtu) == (
        7,
        "veth1234",
        "veth",
        "02:42:ac:11:00:02",
        1500,
    )
    assert link.admin_up and link.oper_state == "up"
    assert (link.master, link.link, link.link_netnsid) == (3, 12, 4)
    port = link.bridge_port
    assert port is not None
    assert (port.state, port.learning, port.flood, port.hairpin, port.isolated) == (
        "forwarding",
        False,
        True,
        True,
        True,
    )
    assert (port.cost, port.priority) == (2, 32)


def test_bridge_and_macvlan_and_loopback() -> None:
    br_data = attr(5, u32(1)) + attr(7, bytes([1])) + attr(36, bytes([0]))
    br = (
        struct.pack("=BxHiII", 0, 1, 3, 1, 0)
        + attr(3, s("br0"))
        + attr(18, attr(1, s("bridge")) + attr(2, br_data, nested=True), nested=True)
    )
    mv = (
        struct.pack("=BxHiII", 0, 1, 4, 1, 0)
        + attr(3, s("mv0"))
        + attr(18, attr(1, s("macvlan")) + attr(2, attr(1, u32(4)), nested=True), nested=True)
    )
    lo = struct.pack("=BxHiII", 0, proto.ARPHRD_LOOPBACK, 1, 1, 0) + attr(3, s("lo"))
    links = nl.parse_links([msg(16, br) + msg(16, mv) + msg(16, lo) + done()])
    assert [lk.kind for lk in links] == ["bridge", "macvlan", "loopback"]
    assert links[0].bridge is not None
    assert (links[0].bridge.stp, links[0].bridge.vlan_filtering) == (True, True)
    assert links[0].bridge.nf_call_iptables is False
    assert links[1].macvlan_mode == "bridge"
    assert links[2].oper_state == "unknown" and links[2].mac is None


def test_addresses_routes_rules_neighbors_fdb() -> None:
    addr4 = struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 2) + attr(2, bytes([10, 0, 0, 2]))
    addr6 = struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 253, 2) + attr(
        1, socket.inet_pton(socket.AF_INET6, "fe80::1")
    )
    by_if = nl.parse_addresses([msg(20, addr4) + msg(20, addr6) + done()])
    assert [a.cidr for a in by_if[2]] == ["10.0.0.2/24", "fe80::1/64"]
    assert by_if[2][1].scope == "link"

    names = {2: "eth0"}
    default = (
        struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 254, 3, 0, 1, 0)
        + attr(5, bytes([10, 0, 0, 1]))
        + attr(4, u32(2))
    )
    big_table = (
        struct.pack("=BBBBBBBBI", socket.AF_INET, 24, 0, 0, 252, 4, 0, 6, 0)
        + attr(1, bytes([198, 51, 100, 0]))
        + attr(15, u32(1000))
    )
    cloned = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 0, 0, 254, 2, 0, 1, proto.RTM_F_CLONED)
    routes = nl.parse_routes(
        [msg(24, default) + msg(24, big_table) + msg(24, cloned) + done()], names
    )
    assert [(r.dst, r.table, r.gateway, r.oif, r.type, r.protocol) for r in routes] == [
        ("0.0.0.0/0", 254, "10.0.0.1", "eth0", "unicast", "boot"),
        ("198.51.100.0/24", 1000, None, None, "blackhole", "static"),
    ]

    rule = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 32, 0, 100, 0, 0, 1, proto.FIB_RULE_INVERT)
    rule += attr(2, bytes([10, 0, 0, 2])) + attr(6, u32(1000)) + attr(10, u32(7))
    (r,) = nl.parse_rules([msg(32, rule) + done()])
    assert (r.priority, r.table, r.src, r.fwmark, r.invert, r.action) == (
        1000,
        100,
        "10.0.0.2/32",
        7,
        True,
        "lookup",
    )

    neigh = (
        struct.pack("=BxxxiHBB", socket.AF_INET, 2, 0x02, 0, 1)
        + attr(1, bytes([10, 0, 0, 1]))
        + attr(2, bytes.fromhex("020000000001"))
    )
    noarp = struct.pack("=BxxxiHBB", socket.AF_INET, 2, 0x40, 0, 1) + attr(1, bytes(4))
    (n,) = decode_state.parse_neighbors([msg(28, neigh) + msg(28, noarp) + done()], names)
    assert (n.ip, n.ifname, n.state, n.mac) == (
        "10.0.0.1",
        "eth0",
        "reachable",
        "02:00:00:00:00:01",
    )

    names = {3: "br0", 5: "veth5"}
    learnt = (
        struct.pack("=BxxxiHBB", proto.AF_BRIDGE, 5, 0x02, 4, 1)
        + attr(2, bytes.fromhex("02420a000002"))
        + attr(9, u32(3))
    )
    local = (
        struct.pack("=BxxxiHBB", proto.AF_BRIDGE, 5, 0x80, 4, 1)
        + attr(2, bytes.fromhex("02420a000003"))
        + attr(9, u32(3))
        + attr(5, struct.pack("=H", 1))
    )
    own = struct.pack("=BxxxiHBB", proto.AF_BRIDGE, 5, 0x80, 2, 1) + attr(
        2, bytes.fromhex("333300000001")
    )
    fdb = decode_state.parse_fdb([msg(28, learnt) + msg(28, local) + msg(28, own) + done()], names)
    assert [(e.mac, e.port, e.bridge, e.local, e.vlan) for e in fdb] == [
        ("02:42:0a:00:00:02", "veth5", "br0", False, None),
        ("02:42:0a:00:00:03", "veth5", "br0", True, 1),
    ]


def test_inet_diag_sockets() -> None:
    def diag(family: int, state: int, port: int, ip: bytes, inode: int) -> bytes:
        sockid = struct.pack("!HH", port, 0) + ip.ljust(16, b"\0") + bytes(16) + bytes(12)
        return (
            struct.pack("=BBBB", family, state, 0, 0)
            + sockid
            + struct.pack("=IIIII", 0, 0, 0, 0, inode)
        )

    body = diag(socket.AF_INET, 10, 8080, bytes([127, 0, 0, 1]), 99)
    body6 = diag(socket.AF_INET6, 10, 80, bytes(16), 100)
    socks = decode_state.parse_sockets([msg(20, body) + msg(20, body6) + done()], "tcp")
    assert [(x.local_ip, x.local_port, x.inode, x.state) for x in socks] == [
        ("127.0.0.1", 8080, 99, "listen"),
        ("::", 80, 100, "listen"),
    ]
    assert socks[0].loopback_only and socks[1].wildcard


def test_netconf() -> None:
    def nc(index: int, fwd: int, rp: int) -> bytes:
        return (
            struct.pack("=Bxxx", socket.AF_INET)
            + attr(1, struct.pack("=i", index))
            + attr(2, struct.pack("=i", fwd))
            + attr(3, struct.pack("=i", rp))
        )

    out = decode_state.parse_netconf(
        [msg(80, nc(-1, 1, 2)) + msg(80, nc(-2, 0, 1)) + msg(80, nc(2, 1, 0)) + done()], {2: "eth0"}
    )
    assert out["net.ipv4.conf.all.forwarding"] == "1" == out["net.ipv4.ip_forward"]
    assert out["net.ipv4.conf.all.rp_filter"] == "2"
    assert out["net.ipv4.conf.default.rp_filter"] == "1"
    assert out["net.ipv4.conf.eth0.rp_filter"] == "0"


def test_error_message_raises() -> None:
    err = msg(proto.NLMSG_ERROR, struct.pack("=i", -13) + bytes(16))
    with pytest.raises(proto.NetlinkError) as exc:
        list(nl.each([err]))
    assert exc.value.errno == 13


def test_inet_confs_alone_match_the_link_decoder() -> None:
    """A host's route_localnet per interface is read without decoding its links."""
    conf = [0] * 30
    conf[0], conf[7], conf[25] = 1, 2, 1  # forwarding, rp_filter, route_localnet
    inet = attr(socket.AF_INET, attr(1, struct.pack("=30I", *conf)), nested=True)
    body = struct.pack("=BxHiII", 0, 1, 7, 1, 0) + attr(3, s("br0")) + attr(26, inet, nested=True)
    plain = struct.pack("=BxHiII", 0, 1, 8, 1, 0) + attr(3, s("veth0"))
    chunks = [msg(16, body) + msg(16, plain) + done()]
    expected = {lk.name: lk.inet_conf for lk in nl.parse_links(chunks, conf=True)}
    assert expected["br0"] == {"forwarding": 1, "rp_filter": 2, "route_localnet": 1}
    assert nl.parse_inet_confs(chunks) == expected


def test_derived_local_routes_skipped_undecoded() -> None:
    local = (
        struct.pack("=BBBBBBBBI", socket.AF_INET6, 128, 0, 0, 255, 2, 0, 2, 0)
        + attr(1, bytes(16))
        + attr(4, u32(2))
    )
    added = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 0, 0, 255, 4, 0, 2, 0) + attr(
        1, bytes([192, 0, 2, 1])
    )
    chunks = [msg(24, local) + msg(24, added) + done()]
    every = nl.parse_routes(chunks, {2: "eth0"})
    assert [(r.table, r.type, r.protocol) for r in every] == [
        (255, "local", "kernel"),
        (255, "local", "static"),  # AnyIP, added by a person: kept
    ]
    assert nl.parse_routes(chunks, {2: "eth0"}, derived=False) == every[1:]


def test_link_local_prefix_routes_are_skipped_as_namespaces_drops_them() -> None:
    """fe80::/64 routes the kernel made (main table, or another named by RTA_TABLE) are left
    out before decoding; one a person added, another prefix, or one in the local table is
    kept. derived=False keeps exactly what namespaces._derived would keep."""
    from cntrace.sources.namespaces import _derived

    def route(dst: bytes, plen: int, proto: int, table: int, rta_table: int | None) -> bytes:
        body = struct.pack("=BBBBBBBBI", socket.AF_INET6, plen, 0, 0, table, proto, 0, 1, 0)
        if rta_table is not None:
            body += attr(15, u32(rta_table))
        return body + attr(1, dst) + attr(4, u32(2))

    fe80 = bytes.fromhex("fe80") + bytes(14)
    routes = [
        route(fe80, 64, 2, 254, 254),  # the kernel's, main table: skipped
        route(fe80, 64, 2, 252, 1000),  # the kernel's, in table 1000 (a VRF): skipped
        route(fe80, 64, 3, 254, 254),  # added at boot: kept
        route(fe80, 64, 2, 254, 255),  # RTA_TABLE says local: kept (not a local type)
        route(bytes.fromhex("fe81") + bytes(14), 64, 2, 254, None),  # another prefix: kept
        route(fe80, 10, 2, 254, None),  # fe80::/10: kept
    ]
    chunks = [b"".join(msg(24, r) for r in routes) + done()]
    every = nl.parse_routes(chunks, {2: "eth0"})
    assert len(every) == 6
    kept = nl.parse_routes(chunks, {2: "eth0"}, derived=False)
    assert kept == [r for r in every if not _derived(r)] == every[2:]


def test_operstate_lagging_carrier_reads_as_up() -> None:
    """Linkwatch sets IFLA_OPERSTATE up to a second after carrier (a veth pair born in two fresh
    namespaces shows NO-CARRIER ... LOWER_UP, state DOWN meanwhile) and the kernel already
    transmits: that link is up. Without carrier, or admin down, "down" stays down."""

    def link(flags: int, oper: int) -> str:
        body = struct.pack("=BxHiII", 0, 1, 2, flags, 0) + attr(3, s("ceng-dn"))
        (lk,) = nl.parse_links([msg(16, body + attr(16, bytes([oper]))) + done()])
        return lk.oper_state

    up, lower_up, down, lowerlayerdown = 0x1, 0x10000, 2, 3
    assert link(up | lower_up, down) == "up"
    assert link(up, down) == "down"
    assert link(lower_up, down) == "down"
    assert link(up | lower_up, lowerlayerdown) == "lowerlayerdown"


def test_memos_key_on_contents_not_on_headers_or_names() -> None:
    """parse_rules and parse_netconf remember small dumps by their message bodies: the same
    bodies under other sequence numbers are the same answer; other bodies, names or skipped
    interfaces are not; and a caller changing an answer does not change the next one."""

    def header(seq: int, body: bytes, mtype: int) -> bytes:
        return struct.pack("=IHHII", 16 + len(body), mtype, 2, seq, 4242 + seq) + body

    rule = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 254, 0, 0, 1, 0) + attr(6, u32(7))
    other = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 253, 0, 0, 1, 0) + attr(6, u32(7))
    first = nl.parse_rules([header(1, rule, 32) + done()])
    again = nl.parse_rules([header(99, rule, 32) + done()])
    assert first == again and first[0].table == 254
    first.clear()
    assert nl.parse_rules([header(5, rule, 32) + done()]) == again
    assert nl.parse_rules([header(1, other, 32) + done()])[0].table == 253

    def nc(index: int, fwd: int) -> bytes:
        body = struct.pack("=Bxxx", socket.AF_INET) + attr(1, struct.pack("=i", index))
        return header(index + 10, body + attr(2, struct.pack("=i", fwd)), 80)

    dump = [nc(2, 1) + nc(3, 0) + done()]
    one = decode_state.parse_netconf(dump, {2: "eth0", 3: "eth1"})
    assert one == {"net.ipv4.conf.eth0.forwarding": "1", "net.ipv4.conf.eth1.forwarding": "0"}
    one["net.ipv4.conf.eth0.forwarding"] = "changed"
    assert (
        decode_state.parse_netconf(dump, {2: "eth0", 3: "eth1"})["net.ipv4.conf.eth0.forwarding"]
        == "1"
    )
    renamed = decode_state.parse_netconf(dump, {2: "veth9", 3: "eth1"})
    assert "net.ipv4.conf.veth9.forwarding" in renamed
    skipped = decode_state.parse_netconf(dump, {2: "eth0", 3: "eth1"}, skip=frozenset({3}))
    assert skipped == {"net.ipv4.conf.eth0.forwarding": "1"}
