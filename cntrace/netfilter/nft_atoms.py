"""Right-hand sides of nft JSON matches: scalars, prefixes, ranges, flag lists and set
elements lowered to Atoms of the field's kind (names as nft prints them).
"""

from __future__ import annotations

from typing import Any

from cntrace.netfilter.model import CT_STATE_BITS, CT_STATUS_BITS
from cntrace.netfilter.names import (
    DAYS,
    DSCP,
    ECN,
    ICMP_CODES,
    ICMPV6_CODES,
    TCP_FLAGS,
    bit_names,
    protocol_number,
)
from cntrace.netfilter.steps import CATCHALL, Atom
from cntrace.netfilter.values import (
    ICMP_TYPES,
    ICMPV6_TYPES,
    int_value,
    port_number,
    prefix_atom,
)


class Malformed(ValueError):
    """A structural problem in one JSON object; turned into a RulesetError with its position."""

    index: int | None = None


ARP_OPS = {
    "request": 1, "reply": 2, "rrequest": 3, "rreply": 4, "inrequest": 8, "inreply": 9, "nak": 10,
}  # fmt: skip
ETHERTYPES = {"ip": 4, "ip6": 6, "arp": 0x806, "vlan": 0x8100, "8021ad": 0x88A8}
ETHERTYPE_NUMBERS = {0x0800: 4, 0x86DD: 6}  # IP versions stand for their ethertypes

TYPE_KIND = {
    "ipv4_addr": "addr",
    "ipv6_addr": "addr",
    "inet_service": "port",
    "inet_proto": "proto",
    "ifname": "str",
    "mark": "int",
    "icmp_type": "icmp",
    "icmpv6_type": "icmpv6",
    "ct_state": "ctstate",
    "ct_status": "ctstatus",
    "fib_addrtype": "str",
    "pkt_type": "str",
    "nf_proto": "nfproto",
    "ether_type": "ethertype",
    "ether_addr": "mac",
    "arp_op": "arpop",
}


def atom(value: Any, kind: str) -> Atom:
    """A right-hand scalar, prefix or range as an Atom of the field's kind."""
    if value == "*":
        return CATCHALL
    if isinstance(value, list) and kind in FLAG_KINDS:  # a flag combination: ["syn", "ack"]
        bits = 0
        for part in value:
            bits |= int(atom(part, kind).lo)
        return Atom(bits)
    if isinstance(value, dict):
        if "prefix" in value:
            p = value["prefix"]
            if kind != "addr":  # a mark or other number with a mask: its top bits
                base, plen = int(atom(p["addr"], kind).lo), int(p["len"])
                host = (1 << (32 - plen)) - 1
                return Atom(base & ~host & 0xFFFFFFFF, (base & ~host) | host)
            return prefix_atom(f"{p['addr']}/{p['len']}")[1]
        if "|" in value and isinstance(value["|"], list):
            bits = 0
            for part in value["|"]:
                bits |= int(atom(part, kind).lo)
            return Atom(bits)
        if "range" in value:
            lo, hi = value["range"]
            a, b = atom(lo, kind), atom(hi, kind)
            if isinstance(a.lo, str) or isinstance(b.lo, str):
                raise Malformed("range of names")
            return Atom(a.lo, b.lo if b.lo != a.lo else None)
        if "elem" in value:
            return atom(value["elem"].get("val"), kind)
        raise Malformed(f"unexpected value {value!r}")
    if isinstance(value, bool):
        return Atom(int(value))
    if kind == "addr":
        return prefix_atom(str(value))[1]
    if kind == "port":
        return Atom(port_number(value))
    if kind == "proto":
        if isinstance(value, int):
            return Atom(value)
        num = protocol_number(str(value))
        if num is None:
            raise Malformed(f"unknown protocol {value!r}")
        return Atom(num)
    if kind == "str":
        s = str(value)
        if s.endswith("*") and not s.endswith("\\*"):
            return Atom(s[:-1], wildcard=True)
        return Atom(s.replace("\\*", "*"))
    if kind in ("icmp", "icmpv6"):
        if isinstance(value, int):
            return Atom(value)
        names = ICMPV6_TYPES if kind == "icmpv6" else ICMP_TYPES
        if str(value) not in names:
            raise Malformed(f"unknown ICMP type {value!r}")
        return Atom(names[str(value)])
    if kind in ("ctstate", "ctstatus"):
        table = CT_STATE_BITS if kind == "ctstate" else CT_STATUS_BITS
        if isinstance(value, int):
            return Atom(value)
        if str(value) not in table:
            raise Malformed(f"unknown {kind} {value!r}")
        return Atom(table[str(value)])
    if kind == "ctdirection":
        return Atom(
            {"original": 0, "reply": 1}[str(value)] if isinstance(value, str) else int(value)
        )
    if kind == "nfproto":
        return Atom({"ipv4": 4, "ipv6": 6}.get(str(value), -1) if isinstance(value, str) else value)
    if kind == "ethertype":
        if isinstance(value, str):
            return Atom(ETHERTYPES.get(value, -1))
        return Atom(ETHERTYPE_NUMBERS.get(value, value))
    if kind == "mac":
        return Atom(str(value).lower())
    if kind == "arpop":
        return Atom(ARP_OPS.get(value, -1) if isinstance(value, str) else value)
    if kind == "raw":
        return Atom(value if isinstance(value, int) else str(value))
    if kind in _NAMED and isinstance(value, str):
        return Atom(_named(value, kind))
    if isinstance(value, int):
        return Atom(value)
    return Atom(int_value(str(value)))


FLAG_KINDS = ("tcpflags", "ctstate", "ctstatus")
_NAMED = ("tcpflags", "dscp", "ecn", "day", "hour", "time", "uid", "icmpcode", "icmpv6code",
          "iftype", "group", "tcprio", "realm", "dccptype", "igmptype")  # fmt: skip
_DCCP_TYPES = ("request", "response", "data", "ack", "dataack", "closereq", "close", "reset",
               "sync", "syncack")  # fmt: skip
_IGMP_TYPES = {
    "membership-query": 0x11,
    "membership-report-v1": 0x12,
    "membership-report-v2": 0x16,
    "membership-report-v3": 0x22,
    "leave-group": 0x17,
}
_IFTYPES = {"ether": 1, "ppp": 512, "ipip": 768, "ipip6": 769, "loopback": 772, "sit": 776,
            "ipgre": 778}  # fmt: skip


def _named(value: str, kind: str) -> int:
    """A symbolic value of a probe field as nft prints it."""
    if kind == "tcpflags":
        return bit_names(list(value.split("|")), TCP_FLAGS, "TCP flag")
    if kind in ("dscp", "ecn", "day"):
        table = {"dscp": DSCP, "ecn": ECN, "day": DAYS}[kind]
        key = value.lower()
        if key in table:
            return table[key]
    elif kind == "hour":
        parts = [int(x) for x in value.split(":")]
        return parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) > 2 else 0)
    elif kind == "time":
        import datetime  # noqa: PLC0415  (time matches only: 2 ms of every command)

        stamp = datetime.datetime.fromisoformat(value).replace(tzinfo=datetime.UTC)
        return int(stamp.timestamp()) * 1_000_000_000
    elif kind == "uid" and value == "root":
        return 0
    elif kind == "dccptype" and value in _DCCP_TYPES:
        return _DCCP_TYPES.index(value)
    elif kind == "igmptype" and value in _IGMP_TYPES:
        return _IGMP_TYPES[value]
    elif kind == "iftype" and value in _IFTYPES:
        return _IFTYPES[value]
    elif kind in ("group", "realm") and value in ("default", "cosmos"):
        return 0  # /etc/iproute2/group and rt_realms name 0 so
    elif kind == "tcprio":
        if value in ("root", "none"):
            return 0xFFFFFFFF if value == "root" else 0
        major, sep, minor = value.partition(":")
        if sep:
            return (int(major or "0", 16) << 16) | int(minor or "0", 16)
    elif kind in ("icmpcode", "icmpv6code"):
        codes = ICMPV6_CODES if kind == "icmpv6code" else ICMP_CODES
        if value in codes:
            return codes[value]
    return int_value(value)


def element(value: Any, kinds: tuple[str, ...]) -> tuple[Atom, ...]:
    if isinstance(value, dict) and "elem" in value:
        value = value["elem"].get("val")
    if isinstance(value, dict) and "concat" in value:
        parts = value["concat"]
        if len(parts) != len(kinds):
            raise Malformed("concatenation does not fit the key")
        return tuple(atom(p, k) for p, k in zip(parts, kinds, strict=True))
    if value == "*":
        return tuple(CATCHALL for _ in kinds)
    if len(kinds) != 1:
        raise Malformed("element does not fit a concatenated key")
    return (atom(value, kinds[0]),)
