"""The netlink protocol as cntrace speaks it: numbers with names, message and attribute framing.

Discovery (netlink.dumps, netlink.decode), tc (trace/tcnl) and nftables (trace/nftlib) all build
and read netlink messages; every number they use is named here once. The numbers come from the
kernel's uapi headers (linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h, neighbour.h,
fib_rules.h, netconf.h, net_namespace.h, pkt_cls.h, inet_diag.h, nfnetlink.h, nf_tables.h).
Attribute numbers are grouped per attribute space in the manner of pyroute2's ``nla_map`` (one
class per message or nested attribute, named after the kernel's prefix); tests/unit check each
against pyroute2's maps. Plain int class attributes, not enums: the decoders look them up in hot
loops over a thousand namespaces.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from collections.abc import Iterator

# --------------------------------------------------------------------------- families and framing

NETLINK_ROUTE = 0
NETLINK_SOCK_DIAG = 4
NETLINK_NETFILTER = 12

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

NLMSG_ERROR = 2
NLMSG_DONE = 3

AF_BRIDGE = 7

# --------------------------------------------------------------------------- message types


class RTM:
    """rtnetlink message types (rtnetlink.h)."""

    NEWLINK = 16
    GETLINK = 18
    NEWADDR = 20
    GETADDR = 22
    NEWROUTE = 24
    GETROUTE = 26
    NEWNEIGH = 28
    GETNEIGH = 30
    NEWRULE = 32
    GETRULE = 34
    NEWQDISC = 36
    DELQDISC = 37
    GETQDISC = 38
    NEWTFILTER = 44
    DELTFILTER = 45
    GETTFILTER = 46
    NEWNETCONF = 80
    GETNETCONF = 82
    NEWNSID = 88
    GETNSID = 90


SOCK_DIAG_BY_FAMILY = 20

NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFT_MSG_GETTABLE = (NFNL_SUBSYS_NFTABLES << 8) | 1
NFT_MSG_DELTABLE = (NFNL_SUBSYS_NFTABLES << 8) | 2
# nftables address families (NFPROTO_*), by the names nft prints
NFPROTO = {"inet": 1, "ip": 2, "arp": 3, "netdev": 5, "bridge": 7, "ip6": 10}

# --------------------------------------------------------------------------- attribute spaces


class IFLA:
    """Link attributes (if_link.h)."""

    ADDRESS = 1
    IFNAME = 3
    MTU = 4
    LINK = 5  # veth peer / lower device ifindex
    MASTER = 10
    OPERSTATE = 16
    LINKINFO = 18
    IFALIAS = 20
    AF_SPEC = 26
    EXT_MASK = 29
    LINK_NETNSID = 37  # where IFLA_LINK's ifindex lives, as this namespace names it


class IFLA_INFO:  # noqa: N801  (the kernel's prefix)
    """Inside IFLA_LINKINFO."""

    KIND, DATA, SLAVE_KIND, SLAVE_DATA = 1, 2, 4, 5


class IFLA_BR:  # noqa: N801  (the kernel's prefix)
    """A bridge's IFLA_INFO_DATA."""

    FORWARD_DELAY, AGEING_TIME, STP_STATE, VLAN_FILTERING = 1, 4, 5, 7
    NF_CALL_IPTABLES = 36


class IFLA_BRPORT:  # noqa: N801  (the kernel's prefix)
    """A bridge port's IFLA_INFO_SLAVE_DATA (MODE is hairpin mode)."""

    STATE, PRIORITY, COST, MODE, LEARNING, UNICAST_FLOOD = 1, 2, 3, 4, 8, 9
    ISOLATED = 33


class IFLA_MACVLAN:  # noqa: N801  (the kernel's prefix)
    MODE = 1


class IFLA_VXLAN:  # noqa: N801  (the kernel's prefix)
    """A vxlan device's IFLA_INFO_DATA (PORT is big-endian)."""

    ID, GROUP, LINK, LOCAL, LEARNING, PORT = 1, 2, 3, 4, 7, 15


class IFLA_INET:  # noqa: N801  (the kernel's prefix)
    """IFLA_AF_SPEC's AF_INET part."""

    CONF = 1


class IPV4_DEVCONF:  # noqa: N801  (the kernel's prefix)
    """1-based indexes into IFLA_INET_CONF's u32 array (ip.h)."""

    FORWARDING, RP_FILTER, ROUTE_LOCALNET = 1, 8, 26


class IFA:
    """Address attributes (if_addr.h)."""

    ADDRESS, LOCAL, BROADCAST = 1, 2, 4


class RTA:
    """Route attributes (rtnetlink.h); RTA_MULTIPATH's next hops carry the same."""

    DST, SRC, OIF, GATEWAY, PRIORITY, PREFSRC = 1, 2, 4, 5, 6, 7
    MULTIPATH = 9
    TABLE = 15  # tables above 255
    VIA = 18  # family + address (an IPv6 gateway of an IPv4 route)


class FRA:
    """Policy rule attributes (fib_rules.h)."""

    DST, SRC, IIFNAME, PRIORITY = 1, 2, 3, 6
    FWMARK = 10
    TABLE, FWMASK, OIFNAME = 15, 16, 17


class NDA:
    """Neighbour and FDB attributes (neighbour.h)."""

    DST, LLADDR, VLAN, MASTER = 1, 2, 5, 9


class NETCONFA:
    """RTM_GETNETCONF attributes (netconf.h); IFINDEX -1 is "all", -2 "default"."""

    IFINDEX, FORWARDING, RP_FILTER, PROXY_NEIGH = 1, 2, 3, 5


NETCONFA_IFINDEX_ALL, NETCONFA_IFINDEX_DEFAULT = -1, -2


class NETNSA:
    """RTM_GETNSID attributes (net_namespace.h)."""

    NSID, FD = 1, 3


class TCA:
    """Traffic control attributes (rtnetlink.h)."""

    KIND, OPTIONS = 1, 2


class TCA_BPF:  # noqa: N801  (the kernel's prefix)
    """cls_bpf's TCA_OPTIONS (pkt_cls.h)."""

    FD, NAME, FLAGS, ID = 6, 7, 8, 11


TCA_BPF_FLAG_ACT_DIRECT = 1


class NFTA_TABLE:  # noqa: N801  (the kernel's prefix)
    """nf_tables table attributes (nf_tables.h)."""

    NAME = 1
    FLAGS = 2  # u32, network order: NFT_TABLE_F_*


# NFTA_TABLE_FLAGS bits (enum nft_table_flags), by the names nft prints
NFT_TABLE_FLAGS = {0x1: "dormant", 0x2: "owner", 0x4: "persist"}
NFT_TABLE_F_DORMANT = 0x1


# --------------------------------------------------------------------------- values

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000  # the driver has carrier (netif_carrier_ok), at once
ARPHRD_LOOPBACK = 772
IFLA_EXT_MASK_SKIP_STATS = 1 << 3  # RTEXT_FILTER_SKIP_STATS
RTM_F_CLONED = 0x200
FIB_RULE_INVERT = 0x2
NUD_NOARP, NUD_PERMANENT = 0x40, 0x80
TCP_LISTEN, TCP_CLOSE = 10, 7

# --------------------------------------------------------------------------- fixed headers

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
NLATTR = struct.Struct("=HH")  # len, type
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, proto, scope, type, flags
NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
NTF_SELF = 0x02  # an FDB entry the device itself lists (ndm_flags)
NTF_MASTER = 0x04  # an FDB entry of the device's master (the bridge)
TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info
NFGENMSG = struct.Struct("=BBH")  # family, version, res_id (big-endian)
# inet_diag_msg: family, state, (timer, retrans), sport (big-endian), (dport), src,
# (dst, if, cookie, expires, rqueue, wqueue, uid), inode
INET_DIAG_MSG = struct.Struct("=BB2xH2x16s16x4x8x16xI")
U16 = struct.Struct("=H")
U32 = struct.Struct("=I")
I32 = struct.Struct("=i")


class NetlinkError(OSError):
    """The kernel answered a request with an error."""


# --------------------------------------------------------------------------- attributes


# A dump repeats one attribute layout thousands of times (a bridge's 1,000 ports, a host's
# routes): walking ~45 attributes of each link message in Python was most of a big host's
# decode. A layout seen before is recognised with one struct.unpack_from of all its attribute
# headers at their offsets (compared as a tuple); when every header and the region's length are
# equal, walking the region would visit the same attributes at the same offsets, so the wanted
# payloads are sliced at the offsets recorded. Anything else takes the walk.
_Layout = tuple[struct.Struct, tuple[int, ...], tuple[tuple[int, int, int], ...]]
_LAYOUTS: dict[tuple[int, frozenset[int] | None], list[_Layout]] = {}
_LAYOUTS_PER_KEY = 4  # layouts kept per (region length, wanted types)
_LAYOUT_KEYS = 4096  # a long-running console reads many dumps: the cache stays bounded
_LAYOUT_MIN_ATTRS = 6  # below this the walk is as cheap as the check


def attrs(
    buf: bytes,
    off: int,
    end: int,
    want: frozenset[int] | None = None,
    min_attrs: int | None = None,
) -> dict[int, bytes]:
    """Netlink attributes between ``off`` and ``end`` as {type: payload} (nested flag masked);
    with ``want``, only those types are copied out (link messages carry ~50 attributes).
    A region of at least ``min_attrs`` attributes (default _LAYOUT_MIN_ATTRS) is remembered as
    a layout."""
    key = (end - off, want)
    known = _LAYOUTS.get(key)
    if known is not None:
        for headers, expect, slices in known:
            if headers.unpack_from(buf, off) == expect:
                return {t: buf[off + a : off + b] for t, a, b in slices}
    out: dict[int, bytes] = {}
    seen: list[tuple[int, int]] | None = []  # (offset, header as one u32) of each attribute
    picks: list[tuple[int, int, int]] = []
    unpack = NLATTR.unpack_from
    start = off
    while off + 4 <= end:
        alen, atype = unpack(buf, off)
        if alen < 4:
            seen = None  # malformed: never a layout
            break
        if seen is not None:
            if off + alen > end:
                seen = None  # cut short
            else:
                seen.append((off - start, _header_word(alen, atype)))
        atype &= NLA_TYPE_MASK
        if want is None or atype in want:
            out[atype] = buf[off + 4 : off + alen]
            picks.append((atype, off - start + 4, off - start + alen))
        off += (alen + 3) & ~3
    least = _LAYOUT_MIN_ATTRS if min_attrs is None else min_attrs
    if seen is not None and len(seen) >= least and len(_LAYOUTS) < _LAYOUT_KEYS:
        _remember(key, seen, picks)
    return out


def _header_word(alen: int, atype: int) -> int:
    """An attribute header (u16 length, u16 type) as the native u32 it is read back as."""
    return alen | atype << 16 if sys.byteorder == "little" else alen << 16 | atype


def _remember(
    key: tuple[int, frozenset[int] | None],
    seen: list[tuple[int, int]],
    picks: list[tuple[int, int, int]],
) -> None:
    """Record a walked region's layout: a format reading each attribute header at its offset."""
    layouts = _LAYOUTS.setdefault(key, [])
    if len(layouts) >= _LAYOUTS_PER_KEY:
        return
    fmt, pos = ["="], 0
    for rel, _word in seen:
        fmt.append(f"{rel - pos}xI" if rel > pos else "I")
        pos = rel + 4
    layouts.append((struct.Struct("".join(fmt)), tuple(w for _r, w in seen), tuple(picks)))


def nested(payload: bytes | None, want: frozenset[int] | None = None) -> dict[int, bytes]:
    """The attributes inside a nested attribute (none when it is absent); ``want`` as attrs."""
    return attrs(payload, 0, len(payload), want) if payload else {}


def attr(atype: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    n = 4 + len(payload)
    return NLATTR.pack(n, atype) + payload + b"\0" * ((4 - n % 4) % 4)


def c_string(payload: bytes) -> str:
    """A NUL-terminated attribute string."""
    return payload.split(b"\0", 1)[0].decode(errors="replace")


def u8(payload: bytes | None) -> int | None:
    return payload[0] if payload else None


def u16(payload: bytes | None) -> int | None:
    return U16.unpack_from(payload)[0] if payload and len(payload) >= 2 else None


def u32(payload: bytes | None) -> int | None:
    return U32.unpack_from(payload)[0] if payload and len(payload) >= 4 else None


def i32(payload: bytes | None) -> int | None:
    return I32.unpack_from(payload)[0] if payload and len(payload) >= 4 else None


def mac_text(payload: bytes) -> str:
    return payload.hex(":")


def ip_text(payload: bytes) -> str:
    if len(payload) == 4:
        return socket.inet_ntop(socket.AF_INET, payload)
    return socket.inet_ntop(socket.AF_INET6, payload)


# --------------------------------------------------------------------------- messages


def message(mtype: int, flags: int, payload: bytes, seq: int = 1) -> bytes:
    """One message: header plus payload (the caller pads attributes with ``attr``)."""
    return NLMSGHDR.pack(16 + len(payload), mtype, flags, seq, 0) + payload


def headers(buf: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(type, seq, body offset, end) of each message in one datagram."""
    off, n = 0, len(buf)
    unpack = NLMSGHDR.unpack_from
    while off + 16 <= n:
        mlen, mtype, _flags, seq, _pid = unpack(buf, off)
        if mlen < 16:
            break
        yield mtype, seq, off + 16, off + mlen
        off += (mlen + 3) & ~3


_LEN_TYPE = struct.Struct("=IH")


def last_type(buf: bytes) -> int | None:
    """The type of the datagram's last message (how a dump's end is found: NLMSG_DONE or the
    error ending it is always last), walking the headers without building them."""
    off, n, last = 0, len(buf), None
    unpack = _LEN_TYPE.unpack_from
    while off + 16 <= n:
        mlen, last = unpack(buf, off)
        if mlen < 16:
            break
        off += (mlen + 3) & ~3
    return last


def data_messages(buf: bytes) -> Iterator[tuple[int, int, int]]:
    """(type, body offset, end) of each data message (type > NLMSG_DONE) of one datagram;
    raises on NLMSG_ERROR != 0. One loop: a dump of a 1,000-port host has ~100,000 messages."""
    off, n = 0, len(buf)
    unpack = _LEN_TYPE.unpack_from
    while off + 16 <= n:
        mlen, mtype = unpack(buf, off)
        if mlen < 16:
            break
        if mtype == NLMSG_ERROR:
            raise_for(error_code(buf, off + 16))
        elif mtype > NLMSG_DONE:
            yield mtype, off + 16, off + mlen
        off += (mlen + 3) & ~3


def error_code(buf: bytes, body: int) -> int:
    """The errno an NLMSG_ERROR message at ``body`` carries; 0 is an acknowledgement."""
    code: int = I32.unpack_from(buf, body)[0]
    return -code


def raise_for(code: int) -> None:
    if code:
        raise NetlinkError(code, os.strerror(code))


def messages(buf: bytes) -> Iterator[tuple[int, int, int]]:
    """(type, body offset, end) of each message in one datagram; raises on NLMSG_ERROR != 0."""
    for mtype, _seq, off, end in headers(buf):
        if mtype == NLMSG_ERROR:
            raise_for(error_code(buf, off))
        yield mtype, off, end
