"""Dumps decoded straight into the model's values, keeping only what cntrace reasons about.

Each ``parse_*`` takes the datagrams of one dump (netlink.dumps) and copies out the few
attributes the model has a field for with ``struct``; everything else is skipped unread. Link
messages carry ~50 attributes and a thousand namespaces have thousands of links, so the link
decoder asks ``attrs`` for its own set only. pyroute2 decodes the same dumps in
tests/integration/test_netlink_pyroute2.py, field by field.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from cntrace.model import (
    Address,
    BridgeInfo,
    BridgePort,
    PolicyRule,
    Route,
    Vxlan,
)
from cntrace.sources.netlink import link_shapes
from cntrace.sources.netlink import proto as p
from cntrace.sources.netlink.proto import (
    FRA,
    IFA,
    IFLA,
    IFLA_BR,
    IFLA_BRPORT,
    IFLA_INET,
    IFLA_INFO,
    IFLA_VXLAN,
    IPV4_DEVCONF,
    RTA,
    attrs,
    c_string,
    i32,
    ip_text,
    mac_text,
    nested,
    u8,
    u16,
    u32,
)

Chunks = list[bytes]

OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
BRPORT_STATES = ("disabled", "listening", "learning", "forwarding", "blocking")
MACVLAN_MODES = {1: "private", 2: "vepa", 4: "bridge", 8: "passthru", 16: "source"}
SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
ROUTE_TYPES = (
    "unspec",
    "unicast",
    "local",
    "broadcast",
    "anycast",
    "multicast",
    "blackhole",
    "unreachable",
    "prohibit",
    "throw",
    "nat",
    "xresolve",
)
PROTOCOLS = {
    0: "unspec",
    1: "redirect",
    2: "kernel",
    3: "boot",
    4: "static",
    9: "ra",
    16: "dhcp",
    42: "babel",
    186: "bgp",
    187: "isis",
    188: "ospf",
    189: "rip",
}
RULE_ACTIONS = {1: "lookup", 2: "goto", 3: "nop", 6: "blackhole", 7: "unreachable", 8: "prohibit"}
LOOPBACK_IFINDEX = 1  # every namespace's lo (net/core/dev.c)


def each(chunks: Chunks) -> Iterator[tuple[bytes, int, int, int]]:
    """(datagram, message type, body offset, end) for each data message of a dump."""
    for buf in chunks:
        for mtype, off, end in p.data_messages(buf):
            yield buf, mtype, off, end


def payloads(chunks: Chunks, limit: int = 4096) -> bytes | None:
    """A small dump's message bodies, without the netlink headers (whose sequence numbers and
    port ids differ per socket): equal for equal contents, the key of a memo. None past
    ``limit`` bytes: a key should cost far less than the decode it saves."""
    parts = []
    size = 0
    for buf, _t, off, end in each(chunks):
        size += end - off
        if size > limit:
            return None
        parts.append(buf[off:end])
    return b"".join(parts)


# The policy rules of a thousand namespaces are nearly always the kernel's defaults, byte for
# byte: decoded once per process. PolicyRules are frozen, so one is shared by many namespaces.
_RULES_SEEN: dict[bytes, tuple[PolicyRule, ...]] = {}
MEMO_ENTRIES = 256


def count_messages(chunks: Chunks) -> int:
    return sum(1 for _ in each(chunks))


def parse_nft_tables(chunks: Chunks) -> list[tuple[str, str, int]]:
    """(family, name, NFTA_TABLE_FLAGS) of each nf_tables table in an NFT_MSG_GETTABLE dump.

    Read here rather than from libnftables: nft 1.0.6 prints a table's single flag from freed
    memory (see sources/rulesets.py), and the kernel's own answer is what decides it."""
    names = {v: k for k, v in p.NFPROTO.items()}
    out = []
    for buf, _mtype, off, end in each(chunks):
        family = buf[off]
        a = p.attrs(buf, off + p.NFGENMSG.size, end)
        raw = a.get(p.NFTA_TABLE.FLAGS)
        flags = int.from_bytes(raw[:4], "big") if raw and len(raw) >= 4 else 0
        name = p.c_string(a.get(p.NFTA_TABLE.NAME, b""))
        out.append((names.get(family, str(family)), name, flags))
    return out


def _family(family: int) -> int:
    return 4 if family == socket.AF_INET else 6


# --------------------------------------------------------------------------- links


@dataclass(slots=True)
class RawLink:
    """A link as netlink describes it, before the peer's netnsid is turned into an inode."""

    ifindex: int
    name: str
    kind: str
    mac: str | None
    mtu: int
    admin_up: bool
    oper_state: str
    master: int | None
    link: int | None  # IFLA_LINK: veth peer / lower device ifindex
    link_netnsid: int | None  # IFLA_LINK_NETNSID: where that ifindex lives, as this ns names it
    bridge: BridgeInfo | None
    bridge_port: BridgePort | None
    vxlan_id: int | None
    macvlan_mode: str | None
    alias: str | None
    inet_conf: dict[str, int]
    vxlan: Vxlan | None = None  # its ``dev`` is named by the caller, from ``vxlan_link``
    vxlan_link: int | None = None


def _vxlan(data: dict[int, bytes]) -> tuple[Vxlan, int | None]:
    """A vxlan device's VNI, port, local and remote (group) addresses; the underlay ifindex."""
    group, local, port = data.get(IFLA_VXLAN.GROUP), data.get(IFLA_VXLAN.LOCAL), None
    raw_port = data.get(IFLA_VXLAN.PORT)
    if raw_port and len(raw_port) >= 2:
        port = struct.unpack_from("!H", raw_port)[0]
    remote = ip_text(group) if group and any(group) else None
    link = u32(data.get(IFLA_VXLAN.LINK))
    info = Vxlan(
        vni=u32(data.get(IFLA_VXLAN.ID)) or 0,
        port=port or 8472,
        local=ip_text(local) if local and any(local) else None,
        remote=remote,
        learning=bool(u8(data.get(IFLA_VXLAN.LEARNING))),
    )
    return info, link or None


def _bridge_info(data: dict[int, bytes]) -> BridgeInfo:
    nf = u8(data.get(IFLA_BR.NF_CALL_IPTABLES))
    return BridgeInfo(
        stp=bool(u32(data.get(IFLA_BR.STP_STATE))),
        vlan_filtering=bool(u8(data.get(IFLA_BR.VLAN_FILTERING))),
        forward_delay=u32(data.get(IFLA_BR.FORWARD_DELAY)),
        ageing_time=u32(data.get(IFLA_BR.AGEING_TIME)),
        nf_call_iptables=None if nf is None else bool(nf),
    )


def bridge_port(data: dict[int, bytes]) -> BridgePort:
    state = u8(data.get(IFLA_BRPORT.STATE))
    return BridgePort(
        state=BRPORT_STATES[state] if state is not None and state < 5 else str(state),
        learning=bool(u8(data.get(IFLA_BRPORT.LEARNING))),
        flood=bool(u8(data.get(IFLA_BRPORT.UNICAST_FLOOD))),
        hairpin=bool(u8(data.get(IFLA_BRPORT.MODE))),
        isolated=bool(u8(data.get(IFLA_BRPORT.ISOLATED))),
        cost=u32(data.get(IFLA_BRPORT.COST)),
        priority=u16(data.get(IFLA_BRPORT.PRIORITY)),
    )


def _inet_conf(af_spec: bytes | None) -> dict[str, int]:
    """Forwarding, rp_filter and route_localnet from the AF_INET devconf array."""
    arr = nested(nested(af_spec).get(socket.AF_INET)).get(IFLA_INET.CONF)
    if not arr or len(arr) < 4 * IPV4_DEVCONF.ROUTE_LOCALNET:
        return {}
    vals = struct.unpack_from(f"={len(arr) // 4}I", arr)
    return {
        "forwarding": vals[IPV4_DEVCONF.FORWARDING - 1],
        "rp_filter": vals[IPV4_DEVCONF.RP_FILTER - 1],
        "route_localnet": vals[IPV4_DEVCONF.ROUTE_LOCALNET - 1],
    }


LINK_ATTRS = frozenset(
    (
        IFLA.ADDRESS,
        IFLA.IFNAME,
        IFLA.MTU,
        IFLA.LINK,
        IFLA.MASTER,
        IFLA.OPERSTATE,
        IFLA.LINKINFO,
        IFLA.IFALIAS,
        IFLA.LINK_NETNSID,
    )
)
LINK_ATTRS_CONF = LINK_ATTRS | {IFLA.AF_SPEC}
INFO_ATTRS = frozenset((IFLA_INFO.KIND, IFLA_INFO.DATA, IFLA_INFO.SLAVE_KIND, IFLA_INFO.SLAVE_DATA))
KINDS_WITH_DATA = frozenset(("bridge", "vxlan", "macvlan", "macvtap"))  # what parse_link reads
BRPORT_ATTRS = frozenset(
    (
        IFLA_BRPORT.STATE,
        IFLA_BRPORT.LEARNING,
        IFLA_BRPORT.UNICAST_FLOOD,
        IFLA_BRPORT.MODE,
        IFLA_BRPORT.ISOLATED,
        IFLA_BRPORT.COST,
        IFLA_BRPORT.PRIORITY,
    )
)


def _oper_state(oper: int | None, flags: int) -> str:
    """IFLA_OPERSTATE, except "down" on an up link that has carrier: carrier (IFF_LOWER_UP) and
    transmission start at once, while the operational state is set later by the kernel's
    linkwatch work (batched, at most once a second for non-urgent events, and behind the RTNL
    lock), so a new veth reads "NO-CARRIER ... LOWER_UP state DOWN" for a second or more on a busy
    host. Reading "down" then predicts a drop that does not happen; an up link with carrier
    settles on "up" (down stays down only without carrier)."""
    state = OPERSTATES[oper] if oper is not None and oper < len(OPERSTATES) else "unknown"
    if state == "down" and flags & p.IFF_UP and flags & p.IFF_LOWER_UP:
        return "up"
    return state


def parse_link(buf: bytes, off: int, end: int, conf: bool = True) -> RawLink:
    """One RTM_NEWLINK message; ``conf`` also decodes the per-interface IPv4 sysctls. Without
    it, a message of a shape seen before is read at the offsets recorded (link_shapes)."""
    if not conf:
        known = link_shapes.build(buf, off, end)
        if known is not None:
            return known
    _family, iftype, index, flags, _change = p.IFINFOMSG.unpack_from(buf, off)
    a = attrs(buf, off + p.IFINFOMSG.size, end, LINK_ATTRS_CONF if conf else LINK_ATTRS)
    info = nested(a.get(IFLA.LINKINFO), INFO_ATTRS)
    kind = c_string(info[IFLA_INFO.KIND]) if IFLA_INFO.KIND in info else None
    slave_kind = c_string(info[IFLA_INFO.SLAVE_KIND]) if IFLA_INFO.SLAVE_KIND in info else None
    link = make_link(
        (iftype, index, flags),
        a.get(IFLA.IFNAME),
        a.get(IFLA.ADDRESS),
        a.get(IFLA.IFALIAS),
        (
            u32(a.get(IFLA.MTU)),
            u32(a.get(IFLA.MASTER)),
            i32(a.get(IFLA.LINK)),
            i32(a.get(IFLA.LINK_NETNSID)),
            u8(a.get(IFLA.OPERSTATE)),
        ),
        kind,
        (
            bridge_port(nested(info.get(IFLA_INFO.SLAVE_DATA), BRPORT_ATTRS))
            if slave_kind == "bridge"
            else None
        ),
        nested(info.get(IFLA_INFO.DATA)) if kind in KINDS_WITH_DATA else {},
        _inet_conf(a.get(IFLA.AF_SPEC)) if conf else {},
    )
    if not conf and kind not in KINDS_WITH_DATA:
        link_shapes.learn(buf, off, end)
    return link


def make_link(
    head: tuple[int, int, int],
    name: bytes | None,
    mac: bytes | None,
    alias: bytes | None,
    scalars: tuple[int | None, int | None, int | None, int | None, int | None],
    kind: str | None,
    port: BridgePort | None,
    data: dict[int, bytes],
    inet_conf: dict[str, int],
) -> RawLink:
    """A RawLink from what parse_link (or a link shape) read: ``head`` the ifinfomsg's type,
    index and flags; the name, MAC and alias payloads; MTU, master, IFLA_LINK, its netnsid and
    the operstate as decoded; the kind; the bridge port (None: not a bridge port); the kind's
    IFLA_INFO_DATA attributes; the IPv4 devconf values."""
    iftype, index, flags = head
    mtu, master, link, link_netnsid, oper = scalars
    if kind is None:
        kind = "loopback" if iftype == p.ARPHRD_LOOPBACK else "device"
    # IFLA_MACVLAN_MODE and IFLA_VXLAN_ID are both attribute 1 of their kind's data
    mode = u32(data.get(p.IFLA_MACVLAN.MODE)) if kind in ("macvlan", "macvtap") else None
    vxlan, vxlan_link = _vxlan(data) if kind == "vxlan" else (None, None)
    return RawLink(
        ifindex=index,
        name=c_string(name) if name is not None else f"if{index}",
        kind=kind,
        mac=mac_text(mac) if mac and len(mac) == 6 else None,
        mtu=mtu or 0,
        admin_up=bool(flags & p.IFF_UP),
        oper_state=_oper_state(oper, flags),
        master=master,
        link=link,
        link_netnsid=link_netnsid,
        bridge=_bridge_info(data) if kind == "bridge" else None,
        bridge_port=port,
        vxlan_id=u32(data.get(p.IFLA_VXLAN.ID)) if kind == "vxlan" else None,
        macvlan_mode=MACVLAN_MODES.get(mode, str(mode)) if mode is not None else None,
        alias=c_string(alias) if alias else None,
        inet_conf=inet_conf,
        vxlan=vxlan,
        vxlan_link=vxlan_link,
    )


def parse_links(chunks: Chunks, conf: bool = True, loopback: bool = True) -> list[RawLink]:
    """Links of one dump; ``loopback=False`` skips lo without decoding it (a third of the work
    on a host of single-interface containers, for readers that never show it)."""
    return [
        parse_link(buf, off, end, conf)
        for buf, _t, off, end in each(chunks)
        if loopback or p.I32.unpack_from(buf, off + 4)[0] != LOOPBACK_IFINDEX
    ]


_CONF_ATTRS = frozenset((IFLA.IFNAME, IFLA.AF_SPEC))


def parse_inet_confs(chunks: Chunks) -> dict[str, dict[str, int]]:
    """Interface name -> its IPv4 devconf values (parse_link's ``inet_conf``), decoding nothing
    else: a host namespace's route_localnet per interface, without building 2,000 links."""
    out: dict[str, dict[str, int]] = {}
    for buf, _t, off, end in each(chunks):
        index = p.I32.unpack_from(buf, off + 4)[0]
        a = attrs(buf, off + p.IFINFOMSG.size, end, _CONF_ATTRS)
        name = c_string(a[IFLA.IFNAME]) if IFLA.IFNAME in a else f"if{index}"
        out[name] = _inet_conf(a.get(IFLA.AF_SPEC))
    return out


# --------------------------------------------------------------------------- addresses


def parse_addresses(
    chunks: Chunks, loopback: bool = True, skip: frozenset[int] = frozenset()
) -> dict[int, list[Address]]:
    """Addresses grouped by ifindex (``loopback=False``: lo's are skipped; ``skip``: those
    interfaces' messages are passed over undecoded, see address_messages)."""
    out: dict[int, list[Address]] = {}
    for buf, _t, off, end in each(chunks):
        index = p.IFADDRMSG.unpack_from(buf, off)[4]
        if index in skip or (not loopback and index == LOOPBACK_IFINDEX):
            continue
        got = address_of(buf, off, end)
        if got is not None:
            out.setdefault(index, []).append(got)
    return out


Message = tuple[bytes, int, int]  # a datagram, and one message's start and end in it


def address_messages(chunks: Chunks, indexes: set[int]) -> dict[int, list[tuple[int, Message]]]:
    """The undecoded address messages of ``indexes``, with each one's scope (ifa_scope)."""
    out: dict[int, list[tuple[int, Message]]] = {}
    for buf, _t, off, end in each(chunks):
        _family, _plen, _flags, scope, index = p.IFADDRMSG.unpack_from(buf, off)
        if index in indexes:
            out.setdefault(index, []).append((scope, (buf, off, end)))
    return out


# What address_of reads. An address message has 3 to 7 attributes; a host's 1,000 link-local
# addresses share one layout, so even these small regions are remembered (proto.attrs).
_ADDR_ATTRS = frozenset((IFA.LOCAL, IFA.ADDRESS, IFA.BROADCAST))
_ADDR_LAYOUT_MIN = 3


def address_of(buf: bytes, off: int, end: int) -> Address | None:
    """One RTM_NEWADDR message (None: not an IPv4/IPv6 address)."""
    family, prefixlen, _flags, scope, _index = p.IFADDRMSG.unpack_from(buf, off)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    a = attrs(buf, off + p.IFADDRMSG.size, end, _ADDR_ATTRS, _ADDR_LAYOUT_MIN)
    raw = a.get(IFA.LOCAL) or a.get(IFA.ADDRESS)  # IPv6 has only IFA_ADDRESS
    if raw is None:
        return None
    brd = a.get(IFA.BROADCAST)
    return Address(
        family=_family(family),
        address=ip_text(raw),
        prefixlen=prefixlen,
        scope=SCOPES.get(scope, str(scope)),
        broadcast=ip_text(brd) if brd else None,
    )


# --------------------------------------------------------------------------- routes and rules


def _first_hop(mp: bytes) -> tuple[int, bytes | None]:
    """(ifindex, gateway) of a multipath route's first struct rtnexthop (len, flags, hops,
    ifindex) and its attributes."""
    nh_len = p.U16.unpack_from(mp)[0]
    return p.I32.unpack_from(mp, 4)[0], attrs(mp, 8, nh_len).get(RTA.GATEWAY)


_LOCAL_DERIVED = frozenset((2, 3, 4, 5))  # local, broadcast, anycast, multicast


_FE80 = bytes.fromhex("fe80") + bytes(14)
_DST_TABLE = frozenset((RTA.DST, RTA.TABLE))


def parse_routes(chunks: Chunks, names: dict[int, str], derived: bool = True) -> list[Route]:
    """Routes of every table, IPv4 and IPv6; cloned (cache) entries are skipped.
    ``derived=False`` also skips the routes the kernel made from addresses: undecoded, the
    local table's entries, and before a Route is built, each interface's fe80::/64 (a host's
    1,000 veths each have a link-local address: most of its dump).

    A multipath route keeps its first next hop (Route has one gateway); that is noted in
    docs/discovery.md.
    """
    out: list[Route] = []
    for buf, _t, off, end in each(chunks):
        family, dst_len, _src_len, _tos, table, proto, scope, rtype, flags = p.RTMSG.unpack_from(
            buf, off
        )
        if family not in (socket.AF_INET, socket.AF_INET6) or flags & p.RTM_F_CLONED:
            continue
        if not derived and table == 255 and proto == 2 and rtype in _LOCAL_DERIVED:
            continue
        if not derived and dst_len == 64 and proto == 2 and family == socket.AF_INET6:
            # an interface's IPv6 link-local prefix route (namespaces._derived)? Two
            # attributes tell, before the whole message is decoded.
            head = attrs(buf, off + p.RTMSG.size, end, _DST_TABLE)
            if head.get(RTA.DST) == _FE80 and (u32(head.get(RTA.TABLE)) or table) != 255:
                continue
        a = attrs(buf, off + p.RTMSG.size, end)
        if RTA.TABLE in a:
            table = u32(a[RTA.TABLE]) or table
        dst = a.get(RTA.DST)
        if dst is None:
            dst_text = "0.0.0.0" if family == socket.AF_INET else "::"
        else:
            dst_text = ip_text(dst)
        gw = a.get(RTA.GATEWAY)
        oif = u32(a.get(RTA.OIF))
        mp = a.get(RTA.MULTIPATH)
        if mp and len(mp) >= 8 and gw is None:
            oif, gw = _first_hop(mp)
        via = a.get(RTA.VIA)
        if gw is None and via is not None and len(via) > 2:  # u16 family, then the address
            gw = via[2:]
        src = a.get(RTA.PREFSRC)
        out.append(
            Route(
                family=_family(family),
                dst=f"{dst_text}/{dst_len}",
                table=table,
                type=ROUTE_TYPES[rtype] if rtype < len(ROUTE_TYPES) else str(rtype),
                gateway=ip_text(gw) if gw else None,
                oif=names.get(oif, f"if{oif}") if oif else None,
                prefsrc=ip_text(src) if src else None,
                metric=u32(a.get(RTA.PRIORITY)) or 0,
                scope=SCOPES.get(scope, str(scope)),
                protocol=PROTOCOLS.get(proto, str(proto)),
            )
        )
    return out


def parse_rules(chunks: Chunks) -> list[PolicyRule]:
    """Policy rules (struct fib_rule_hdr has rtmsg's layout; ``action`` sits where ``type`` is)."""
    key = payloads(chunks)
    seen = _RULES_SEEN.get(key) if key is not None else None
    if seen is not None:
        return list(seen)
    out = _parse_rules(chunks)
    if key is not None and len(_RULES_SEEN) < MEMO_ENTRIES:
        _RULES_SEEN[key] = tuple(out)
    return out


def _parse_rules(chunks: Chunks) -> list[PolicyRule]:
    out: list[PolicyRule] = []
    for buf, _t, off, end in each(chunks):
        family, dst_len, src_len, _tos, table, _r1, _r2, action, flags = p.RTMSG.unpack_from(
            buf, off
        )
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        a = attrs(buf, off + p.RTMSG.size, end)
        src, dst = a.get(FRA.SRC), a.get(FRA.DST)
        iif, oif = a.get(FRA.IIFNAME), a.get(FRA.OIFNAME)
        out.append(
            PolicyRule(
                family=_family(family),
                priority=u32(a.get(FRA.PRIORITY)) or 0,
                table=u32(a.get(FRA.TABLE)) or table,
                action=RULE_ACTIONS.get(action, str(action)),
                src=f"{ip_text(src)}/{src_len}" if src else None,
                dst=f"{ip_text(dst)}/{dst_len}" if dst else None,
                iif=c_string(iif) if iif else None,
                oif=c_string(oif) if oif else None,
                fwmark=u32(a.get(FRA.FWMARK)),
                fwmask=u32(a.get(FRA.FWMASK)),
                invert=bool(flags & p.FIB_RULE_INVERT),
            )
        )
    return out
