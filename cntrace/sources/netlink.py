"""A small raw netlink client: dump many namespaces at once and keep only what the model needs.

pyroute2 builds a full object tree per message and costs milliseconds per IPRoute, which is
seconds on a host with a thousand namespaces. Here each namespace gets plain sockets (created
inside it with setns, see nsenter), every namespace is sent the same dump request before any
answer is read, and the answers are decoded with ``struct`` straight into the model's values.

Attribute numbers come from the kernel's uapi headers (linux/rtnetlink.h, if_link.h, neighbour.h,
fib_rules.h, inet_diag.h, net_namespace.h, nfnetlink.h); pyroute2 uses the same numbers and was the
reference. Only the attributes cntrace reasons about are decoded; everything else is skipped.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from cntrace.model import (
    Address,
    BridgeInfo,
    BridgePort,
    FdbEntry,
    Neighbor,
    PolicyRule,
    Route,
    Socket,
)
from cntrace.sources import nsenter

# --------------------------------------------------------------------------- protocol constants

NETLINK_ROUTE = 0
NETLINK_SOCK_DIAG = 4
NETLINK_NETFILTER = 12

NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3

RTM_GETLINK = 18
RTM_GETADDR = 22
RTM_GETROUTE = 26
RTM_GETNEIGH = 30
RTM_GETRULE = 34
RTM_GETNETCONF = 82
RTM_NEWNSID = 88
RTM_GETNSID = 90
SOCK_DIAG_BY_FAMILY = 20
NFT_MSG_GETTABLE = (10 << 8) | 1  # NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETTABLE

AF_BRIDGE = 7
IFLA_EXT_MASK = 29
RTEXT_FILTER_SKIP_STATS = 1 << 3
NETNSA_NSID = 1
NETNSA_FD = 3
RTM_F_CLONED = 0x200
FIB_RULE_INVERT = 0x2
IFF_UP = 0x1
ARPHRD_LOOPBACK = 772

_HDR = struct.Struct("=IHHII")
_RTA = struct.Struct("=HH")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NDMSG = struct.Struct("=BxxxiHBB")
_U8 = struct.Struct("=B")
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")
_BE16 = struct.Struct("!H")

# IFLA_* (if_link.h)
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_AF_SPEC = 16, 18, 20, 26
IFLA_LINK_NETNSID = 37
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
IFLA_INET_CONF = 1
# IPV4_DEVCONF_* are 1-based indexes into the IFLA_INET_CONF u32 array.
DEVCONF_FORWARDING, DEVCONF_RP_FILTER, DEVCONF_ROUTE_LOCALNET = 1, 8, 26

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
NUD_STATES = (
    (0x80, "permanent"),
    (0x40, "noarp"),
    (0x20, "failed"),
    (0x10, "probe"),
    (0x08, "delay"),
    (0x04, "stale"),
    (0x02, "reachable"),
    (0x01, "incomplete"),
)
NUD_NOARP, NUD_PERMANENT = 0x40, 0x80
TCP_LISTEN, TCP_CLOSE = 10, 7


class NetlinkError(OSError):
    """The kernel answered a request with an error."""


# --------------------------------------------------------------------------- decoding helpers


def attrs(buf: bytes, off: int, end: int, want: frozenset[int] | None = None) -> dict[int, bytes]:
    """Netlink attributes between ``off`` and ``end`` as {type: payload} (nested flag masked);
    with ``want``, only those types are copied out (link messages carry ~50 attributes)."""
    out: dict[int, bytes] = {}
    unpack = _RTA.unpack_from
    while off + 4 <= end:
        alen, atype = unpack(buf, off)
        if alen < 4:
            break
        atype &= 0x3FFF
        if want is None or atype in want:
            out[atype] = buf[off + 4 : off + alen]
        off += (alen + 3) & ~3
    return out


def _nested(payload: bytes | None) -> dict[int, bytes]:
    return attrs(payload, 0, len(payload)) if payload else {}


def c_string(payload: bytes) -> str:
    """A NUL-terminated attribute string."""
    return payload.split(b"\0", 1)[0].decode(errors="replace")


def _u8(payload: bytes | None) -> int | None:
    return payload[0] if payload else None


def _u32(payload: bytes | None) -> int | None:
    return _U32.unpack_from(payload)[0] if payload and len(payload) >= 4 else None


def _i32(payload: bytes | None) -> int | None:
    return _I32.unpack_from(payload)[0] if payload and len(payload) >= 4 else None


def mac_text(payload: bytes) -> str:
    return payload.hex(":")


def ip_text(payload: bytes) -> str:
    if len(payload) == 4:
        return socket.inet_ntop(socket.AF_INET, payload)
    return socket.inet_ntop(socket.AF_INET6, payload)


def attr(atype: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    n = 4 + len(payload)
    return _RTA.pack(n, atype) + payload + b"\0" * ((4 - n % 4) % 4)


def _message(mtype: int, flags: int, payload: bytes, seq: int = 1) -> bytes:
    return _HDR.pack(16 + len(payload), mtype, flags, seq, 0) + payload


def messages(buf: bytes) -> Iterator[tuple[int, int, int]]:
    """(type, body offset, end) of each message in one datagram; raises on NLMSG_ERROR != 0."""
    off, n = 0, len(buf)
    unpack = _HDR.unpack_from
    while off + 16 <= n:
        mlen, mtype, _flags, _seq, _pid = unpack(buf, off)
        if mlen < 16:
            break
        if mtype == NLMSG_ERROR:
            code = -_I32.unpack_from(buf, off + 16)[0]
            if code:
                raise NetlinkError(code, os.strerror(code))
        yield mtype, off + 16, off + mlen
        off += (mlen + 3) & ~3


# --------------------------------------------------------------------------- requests

_DUMP = NLM_F_REQUEST | NLM_F_DUMP


def _inet_diag_req(family: int, proto: int, states: int) -> bytes:
    # struct inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid (48 bytes)
    return struct.pack("=BBBxI", family, proto, 0, states) + bytes(48)


REQUESTS: dict[str, bytes] = {
    "links": _message(
        RTM_GETLINK,
        _DUMP,
        bytes(16) + attr(IFLA_EXT_MASK, _U32.pack(RTEXT_FILTER_SKIP_STATS)),
    ),
    "addresses": _message(RTM_GETADDR, _DUMP, bytes(8)),
    "routes": _message(RTM_GETROUTE, _DUMP, bytes(12)),
    "rules": _message(RTM_GETRULE, _DUMP, bytes(12)),
    "neighbors": _message(RTM_GETNEIGH, _DUMP, bytes(12)),
    "fdb": _message(RTM_GETNEIGH, _DUMP, struct.pack("=Bxxxi", AF_BRIDGE, 0) + bytes(4)),
    "tcp4": _message(
        SOCK_DIAG_BY_FAMILY, _DUMP, _inet_diag_req(socket.AF_INET, 6, 1 << TCP_LISTEN)
    ),
    "tcp6": _message(
        SOCK_DIAG_BY_FAMILY, _DUMP, _inet_diag_req(socket.AF_INET6, 6, 1 << TCP_LISTEN)
    ),
    "udp4": _message(
        SOCK_DIAG_BY_FAMILY, _DUMP, _inet_diag_req(socket.AF_INET, 17, 1 << TCP_CLOSE)
    ),
    "udp6": _message(
        SOCK_DIAG_BY_FAMILY, _DUMP, _inet_diag_req(socket.AF_INET6, 17, 1 << TCP_CLOSE)
    ),
    "nft_tables": _message(NFT_MSG_GETTABLE, _DUMP, bytes(4)),
    "netconf4": _message(RTM_GETNETCONF, _DUMP, struct.pack("=Bxxx", socket.AF_INET)),
    "netconf6": _message(RTM_GETNETCONF, _DUMP, struct.pack("=Bxxx", socket.AF_INET6)),
}
DIAG_DUMPS = ("tcp4", "tcp6", "udp4", "udp6")


# --------------------------------------------------------------------------- sockets per namespace


def netlink_socket(proto: int) -> socket.socket:
    """A bound netlink socket in the calling thread's current namespace."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, proto)
    try:
        s.bind((0, 0))
    except OSError:
        s.close()
        raise
    return s


@dataclass
class Conn:
    """The netlink sockets of one namespace: route (always), sock_diag and netfilter (optional).

    Create it while the thread is inside the namespace (``Conn.here``) or with ``Conn.open``;
    a socket keeps the namespace it was created in, so the thread may leave right after.
    """

    route: socket.socket
    diag: socket.socket | None = None
    nf: socket.socket | None = None
    errors: list[str] = field(default_factory=list)

    @classmethod
    def here(cls, *, diag: bool = False, nf: bool = False) -> Conn:
        conn = cls(netlink_socket(NETLINK_ROUTE))
        try:
            if diag:
                conn.diag = netlink_socket(NETLINK_SOCK_DIAG)
            if nf:
                conn.nf = netlink_socket(NETLINK_NETFILTER)
        except OSError:
            conn.close()
            raise
        return conn

    @classmethod
    def open(cls, path: str, *, diag: bool = False, nf: bool = False) -> Conn:
        """Sockets inside the namespace at ``path``."""
        with nsenter.entered(path):
            return cls.here(diag=diag, nf=nf)

    def socket_for(self, dump: str) -> socket.socket | None:
        if dump in DIAG_DUMPS:
            return self.diag
        if dump == "nft_tables":
            return self.nf
        return self.route

    def close(self) -> None:
        for s in (self.route, self.diag, self.nf):
            if s is not None:
                s.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Chunks = list[bytes]


def _recv_dump(sock: socket.socket) -> Chunks:
    """Read datagrams until NLMSG_DONE; return them undecoded."""
    chunks: Chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return chunks
        chunks.append(data)
        # NLMSG_DONE is always the last message of its datagram.
        off, n = 0, len(data)
        last_type = 0
        while off + 16 <= n:
            mlen, last_type = _HDR.unpack_from(data, off)[:2]
            if mlen < 16:
                break
            off += (mlen + 3) & ~3
        if last_type in (NLMSG_DONE, NLMSG_ERROR):
            return chunks


def dump_many(conns: Sequence[Conn], dump: str) -> list[Chunks | OSError]:
    """Send the same dump request on every namespace's socket, then collect every answer.

    Sending all requests first lets the kernel fill each namespace's first chunk while we are
    still sending; one namespace failing (it vanished, the subsystem is missing) gives an OSError
    in its slot instead of failing the others.
    """
    request = REQUESTS[dump]
    sent: list[socket.socket | OSError] = []
    for conn in conns:
        sock = conn.socket_for(dump)
        if sock is None:
            sent.append(OSError(errno.ENOTCONN, f"no socket for {dump}"))
            continue
        try:
            sock.send(request)
            sent.append(sock)
        except OSError as exc:
            sent.append(exc)
    out: list[Chunks | OSError] = []
    for item in sent:
        if isinstance(item, OSError):
            out.append(item)
            continue
        try:
            out.append(_recv_dump(item))
        except OSError as exc:
            out.append(exc)
    return out


def dump(conn: Conn, what: str) -> Chunks:
    """One dump on one namespace."""
    result = dump_many([conn], what)[0]
    if isinstance(result, OSError):
        raise result
    return result


def each(chunks: Chunks) -> Iterator[tuple[bytes, int, int, int]]:
    """(datagram, message type, body offset, end) for each data message of a dump."""
    for buf in chunks:
        for mtype, off, end in messages(buf):
            if mtype > NLMSG_DONE:
                yield buf, mtype, off, end


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


def _bridge_info(data: dict[int, bytes]) -> BridgeInfo:
    nf = _u8(data.get(36))
    return BridgeInfo(
        stp=bool(_u32(data.get(5))),
        vlan_filtering=bool(_u8(data.get(7))),
        forward_delay=_u32(data.get(1)),
        ageing_time=_u32(data.get(4)),
        nf_call_iptables=None if nf is None else bool(nf),
    )


def _bridge_port(data: dict[int, bytes]) -> BridgePort:
    state = _u8(data.get(1))
    cost = _u32(data.get(3))
    prio = data.get(2)
    return BridgePort(
        state=BRPORT_STATES[state] if state is not None and state < 5 else str(state),
        learning=bool(_u8(data.get(8))),
        flood=bool(_u8(data.get(9))),
        hairpin=bool(_u8(data.get(4))),
        isolated=bool(_u8(data.get(33))),
        cost=cost,
        priority=_U16.unpack_from(prio)[0] if prio and len(prio) >= 2 else None,
    )


_LINK_ATTRS = frozenset(
    (
        IFLA_ADDRESS,
        IFLA_IFNAME,
        IFLA_MTU,
        IFLA_LINK,
        IFLA_MASTER,
        IFLA_OPERSTATE,
        IFLA_LINKINFO,
        IFLA_IFALIAS,
        IFLA_LINK_NETNSID,
    )
)
_LINK_ATTRS_CONF = _LINK_ATTRS | {IFLA_AF_SPEC}


def parse_link(buf: bytes, off: int, end: int, conf: bool = True) -> RawLink:
    """One RTM_NEWLINK message; ``conf`` also decodes the per-interface IPv4 sysctls."""
    _family, iftype, index, flags, _change = _IFINFO.unpack_from(buf, off)
    a = attrs(buf, off + 16, end, _LINK_ATTRS_CONF if conf else _LINK_ATTRS)
    info = _nested(a.get(IFLA_LINKINFO))
    kind = c_string(info[IFLA_INFO_KIND]) if IFLA_INFO_KIND in info else None
    if kind is None:
        kind = "loopback" if iftype == ARPHRD_LOOPBACK else "device"
    data = _nested(info.get(IFLA_INFO_DATA))
    slave_kind = c_string(info[IFLA_INFO_SLAVE_KIND]) if IFLA_INFO_SLAVE_KIND in info else None
    oper = _u8(a.get(IFLA_OPERSTATE))
    mac = a.get(IFLA_ADDRESS)
    alias = a.get(IFLA_IFALIAS)
    mode = _u32(data.get(1)) if kind in ("macvlan", "macvtap") else None
    inet_conf: dict[str, int] = {}
    inet = _nested(_nested(a.get(IFLA_AF_SPEC)).get(socket.AF_INET))
    arr = inet.get(IFLA_INET_CONF)
    if arr and len(arr) >= 4 * DEVCONF_ROUTE_LOCALNET:
        vals = struct.unpack_from(f"={len(arr) // 4}I", arr)
        inet_conf = {
            "forwarding": vals[DEVCONF_FORWARDING - 1],
            "rp_filter": vals[DEVCONF_RP_FILTER - 1],
            "route_localnet": vals[DEVCONF_ROUTE_LOCALNET - 1],
        }
    return RawLink(
        ifindex=index,
        name=c_string(a[IFLA_IFNAME]) if IFLA_IFNAME in a else f"if{index}",
        kind=kind,
        mac=mac_text(mac) if mac and len(mac) == 6 else None,
        mtu=_u32(a.get(IFLA_MTU)) or 0,
        admin_up=bool(flags & IFF_UP),
        oper_state=OPERSTATES[oper] if oper is not None and oper < len(OPERSTATES) else "unknown",
        master=_u32(a.get(IFLA_MASTER)),
        link=_i32(a.get(IFLA_LINK)),
        link_netnsid=_i32(a.get(IFLA_LINK_NETNSID)),
        bridge=_bridge_info(data) if kind == "bridge" else None,
        bridge_port=(
            _bridge_port(_nested(info.get(IFLA_INFO_SLAVE_DATA)))
            if slave_kind == "bridge"
            else None
        ),
        vxlan_id=_u32(data.get(1)) if kind == "vxlan" else None,
        macvlan_mode=MACVLAN_MODES.get(mode, str(mode)) if mode is not None else None,
        alias=c_string(alias) if alias else None,
        inet_conf=inet_conf,
    )


LOOPBACK_IFINDEX = 1  # every namespace's lo (net/core/dev.c)


def parse_links(chunks: Chunks, conf: bool = True, loopback: bool = True) -> list[RawLink]:
    """Links of one dump; ``loopback=False`` skips lo without decoding it (a third of the work
    on a host of single-interface containers, for readers that never show it)."""
    return [
        parse_link(buf, off, end, conf)
        for buf, _t, off, end in each(chunks)
        if loopback or _I32.unpack_from(buf, off + 4)[0] != LOOPBACK_IFINDEX
    ]


# --------------------------------------------------------------------------- addresses


def parse_addresses(chunks: Chunks, loopback: bool = True) -> dict[int, list[Address]]:
    """Addresses grouped by ifindex (``loopback=False``: lo's are skipped)."""
    out: dict[int, list[Address]] = {}
    for buf, _t, off, end in each(chunks):
        family, prefixlen, _flags, scope, index = _IFADDR.unpack_from(buf, off)
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        if not loopback and index == LOOPBACK_IFINDEX:
            continue
        a = attrs(buf, off + 8, end)
        raw = a.get(2) or a.get(1)  # IFA_LOCAL, else IFA_ADDRESS (IPv6 has only the latter)
        if raw is None:
            continue
        brd = a.get(4)
        out.setdefault(index, []).append(
            Address(
                family=4 if family == socket.AF_INET else 6,
                address=ip_text(raw),
                prefixlen=prefixlen,
                scope=SCOPES.get(scope, str(scope)),
                broadcast=ip_text(brd) if brd else None,
            )
        )
    return out


# --------------------------------------------------------------------------- routes and rules


def parse_routes(chunks: Chunks, names: dict[int, str]) -> list[Route]:
    """Routes of every table, IPv4 and IPv6; cloned (cache) entries are skipped.

    A multipath route keeps its first next hop (Route has one gateway); that is noted in
    docs/discovery.md.
    """
    out: list[Route] = []
    for buf, _t, off, end in each(chunks):
        family, dst_len, _src_len, _tos, table, proto, scope, rtype, flags = _RTMSG.unpack_from(
            buf, off
        )
        if family not in (socket.AF_INET, socket.AF_INET6) or flags & RTM_F_CLONED:
            continue
        a = attrs(buf, off + 12, end)
        if 15 in a:  # RTA_TABLE carries tables above 255
            table = _u32(a[15]) or table
        dst = a.get(1)
        if dst is None:
            dst_text = "0.0.0.0" if family == socket.AF_INET else "::"
        else:
            dst_text = ip_text(dst)
        gw = a.get(5)
        oif = _u32(a.get(4))
        mp = a.get(9)
        if mp and len(mp) >= 8 and gw is None:
            # struct rtnexthop {u16 len; u8 flags; u8 hops; i32 ifindex} + attributes
            nh_len = _U16.unpack_from(mp)[0]
            oif = _I32.unpack_from(mp, 4)[0]
            gw = attrs(mp, 8, nh_len).get(5)
        if gw is None and 18 in a and len(a[18]) > 2:  # RTA_VIA: family + address
            gw = a[18][2:]
        src = a.get(7)
        out.append(
            Route(
                family=4 if family == socket.AF_INET else 6,
                dst=f"{dst_text}/{dst_len}",
                table=table,
                type=ROUTE_TYPES[rtype] if rtype < len(ROUTE_TYPES) else str(rtype),
                gateway=ip_text(gw) if gw else None,
                oif=names.get(oif, f"if{oif}") if oif else None,
                prefsrc=ip_text(src) if src else None,
                metric=_u32(a.get(6)) or 0,
                scope=SCOPES.get(scope, str(scope)),
                protocol=PROTOCOLS.get(proto, str(proto)),
            )
        )
    return out


def parse_rules(chunks: Chunks) -> list[PolicyRule]:
    out: list[PolicyRule] = []
    for buf, _t, off, end in each(chunks):
        family, dst_len, src_len, _tos, table, _r1, _r2, action, flags = _RTMSG.unpack_from(
            buf, off
        )
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        a = attrs(buf, off + 12, end)
        src, dst = a.get(2), a.get(1)
        iif, oif = a.get(3), a.get(17)
        out.append(
            PolicyRule(
                family=4 if family == socket.AF_INET else 6,
                priority=_u32(a.get(6)) or 0,
                table=_u32(a.get(15)) or table,
                action=RULE_ACTIONS.get(action, str(action)),
                src=f"{ip_text(src)}/{src_len}" if src else None,
                dst=f"{ip_text(dst)}/{dst_len}" if dst else None,
                iif=c_string(iif) if iif else None,
                oif=c_string(oif) if oif else None,
                fwmark=_u32(a.get(10)),
                fwmask=_u32(a.get(16)),
                invert=bool(flags & FIB_RULE_INVERT),
            )
        )
    return out


# --------------------------------------------------------------------------- neighbours and fdb


def _nud(state: int) -> str:
    for bit, name in NUD_STATES:
        if state & bit:
            return name
    return "none"


def parse_neighbors(chunks: Chunks, names: dict[int, str]) -> list[Neighbor]:
    """ARP and NDP entries, as ``ip neigh`` shows them (NOARP and empty entries hidden)."""
    out: list[Neighbor] = []
    for buf, _t, off, end in each(chunks):
        family, index, state, _flags, _type = _NDMSG.unpack_from(buf, off)
        if family not in (socket.AF_INET, socket.AF_INET6) or not state or state & NUD_NOARP:
            continue
        a = attrs(buf, off + 12, end)
        dst = a.get(1)
        if dst is None:
            continue
        ll = a.get(2)
        out.append(
            Neighbor(
                ip=ip_text(dst),
                ifname=names.get(index, f"if{index}"),
                state=_nud(state),
                mac=mac_text(ll) if ll and len(ll) == 6 else None,
            )
        )
    return out


def parse_fdb(chunks: Chunks, names: dict[int, str]) -> list[FdbEntry]:
    """Bridge FDB entries (those with a master bridge); device-own (self) lists are skipped."""
    out: list[FdbEntry] = []
    for buf, _t, off, end in each(chunks):
        family, index, state, _flags, _type = _NDMSG.unpack_from(buf, off)
        if family != AF_BRIDGE:
            continue
        a = attrs(buf, off + 12, end)
        master = _u32(a.get(9))
        ll = a.get(2)
        if master is None or not ll or len(ll) != 6:
            continue
        vlan = a.get(5)
        out.append(
            FdbEntry(
                mac=mac_text(ll),
                port=names.get(index, f"if{index}"),
                bridge=names.get(master, f"if{master}"),
                vlan=_U16.unpack_from(vlan)[0] if vlan and len(vlan) >= 2 else None,
                local=bool(state & NUD_PERMANENT),
                static=bool(state & NUD_NOARP),
            )
        )
    return out


# --------------------------------------------------------------------------- sockets


def parse_sockets(chunks: Chunks, proto: str) -> list[Socket]:
    """Listening TCP / unconnected bound UDP sockets from an inet_diag dump."""
    out: list[Socket] = []
    for buf, _t, off, _end in each(chunks):
        family, state = buf[off], buf[off + 1]
        sport = _BE16.unpack_from(buf, off + 4)[0]
        raw = buf[off + 8 : off + 12] if family == socket.AF_INET else buf[off + 8 : off + 24]
        inode = _U32.unpack_from(buf, off + 68)[0]
        out.append(
            Socket(
                proto=proto,
                family=4 if family == socket.AF_INET else 6,
                local_ip=ip_text(raw),
                local_port=sport,
                state="listen" if state == TCP_LISTEN else "unconn",
                inode=inode or None,
            )
        )
    return out


def count_messages(chunks: Chunks) -> int:
    return sum(1 for _ in each(chunks))


# --------------------------------------------------------------------------- netconf

NETCONFA_IFINDEX_ALL, NETCONFA_IFINDEX_DEFAULT = -1, -2
_NETCONF_KEYS = {2: "forwarding", 3: "rp_filter"}


def parse_netconf(chunks: Chunks, names: dict[int, str]) -> dict[str, str]:
    """Forwarding and rp_filter for all/default/each interface, as dotted sysctl names.

    RTM_GETNETCONF answers from the kernel's devconf directly; reading the same values from
    /proc/sys costs a quarter of a millisecond per file, which is seconds on a big host.
    """
    out: dict[str, str] = {}
    for buf, _t, off, end in each(chunks):
        family = buf[off]
        a = attrs(buf, off + 4, end)
        index = _i32(a.get(1))
        if index is None:
            continue
        if index == NETCONFA_IFINDEX_ALL:
            dev = "all"
        elif index == NETCONFA_IFINDEX_DEFAULT:
            dev = "default"
        else:
            dev = names.get(index, f"if{index}")
        proto = "ipv4" if family == socket.AF_INET else "ipv6"
        for attr, key in _NETCONF_KEYS.items():
            if proto == "ipv6" and key == "rp_filter":
                continue
            value = _i32(a.get(attr))
            if value is not None:
                out[f"net.{proto}.conf.{dev}.{key}"] = str(value)
    if "net.ipv4.conf.all.forwarding" in out:
        out["net.ipv4.ip_forward"] = out["net.ipv4.conf.all.forwarding"]
    return out


# --------------------------------------------------------------------------- namespace ids


def nsids(conn: Conn, fds: Iterable[int], batch: int = 64) -> list[int | None]:
    """The netnsid this namespace uses for each namespace fd (None: none assigned).

    RTM_GETNSID with NETNSA_FD is answered synchronously; requests go out in small batches so
    the answers never overflow the socket's receive buffer.
    """
    fds = list(fds)
    out: list[int | None] = []
    sock = conn.route
    for start in range(0, len(fds), batch):
        part = fds[start : start + batch]
        for i, fd in enumerate(part):
            payload = bytes(4) + attr(NETNSA_FD, _U32.pack(fd))
            sock.send(_message(RTM_GETNSID, NLM_F_REQUEST, payload, seq=start + i + 1))
        answers: dict[int, int | None] = {}
        while len(answers) < len(part):
            data = sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                mlen, mtype, _f, seq, _p = _HDR.unpack_from(data, off)
                if mlen < 16:
                    break
                if mtype == RTM_NEWNSID:
                    nsid = _i32(attrs(data, off + 20, off + mlen).get(NETNSA_NSID))
                    answers[seq] = None if nsid is None or nsid < 0 else nsid
                elif mtype == NLMSG_ERROR:
                    answers[seq] = None
                off += (mlen + 3) & ~3
        out.extend(answers.get(start + i + 1) for i in range(len(part)))
    return out
