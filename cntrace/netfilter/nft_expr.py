"""nft JSON expressions lowered to the model: left-hand sides become Fields, right-hand sides
Atoms, and a ``match`` statement a Match.

Expressions the evaluator cannot read become a Field keyed ``unsupported:...``, which the match
turns into an unsupported (uncertain) Match; shapes nft never prints raise Malformed.
"""

from __future__ import annotations

import datetime
from typing import Any

from cntrace.netfilter.model import CT_STATE_BITS, CT_STATUS_BITS, PORT_PROTO_NUMBERS
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
from cntrace.netfilter.nft_text import stmt_text
from cntrace.netfilter.steps import CATCHALL, Atom, Field, Match, Verdict
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


def key_types(t: Any) -> tuple[str, ...]:
    if isinstance(t, str):
        return (t,)
    if isinstance(t, list) and all(isinstance(x, str) for x in t):
        return tuple(t)
    if isinstance(t, dict) and "typeof" in t:
        exprs = t["typeof"]
        parts = exprs["concat"] if isinstance(exprs, dict) and "concat" in exprs else [exprs]
        return tuple(_typeof_kind(p) for p in parts)
    raise Malformed(f"unknown set type {t!r}")


def _typeof_kind(expr: Any) -> str:
    try:
        f = _field(expr)
    except Malformed:
        return "raw"
    return (
        {
            "saddr": "ipv4_addr",
            "daddr": "ipv4_addr",
            "sport": "inet_service",
            "dport": "inet_service",
            "l4proto": "inet_proto",
            "iifname": "ifname",
            "oifname": "ifname",
            "mark": "mark",
            "ctmark": "mark",
        }.get(f.key, "raw")
        if f.family != 6
        else "ipv6_addr"
    )


# The link-layer fields the bridge, netdev and arp families read (cntrace.netfilter.families).
L2_FIELDS = {
    ("ether", "type"): "ethertype",
    ("ether", "saddr"): "ether.saddr",
    ("ether", "daddr"): "ether.daddr",
    ("arp", "operation"): "arp.op",
    ("arp", "saddr ip"): "arp.sip",
    ("arp", "daddr ip"): "arp.tip",
    ("arp", "saddr ether"): "arp.sha",
    ("arp", "daddr ether"): "arp.tha",
    ("arp", "htype"): "arp.htype",
    ("arp", "ptype"): "arp.ptype",
    ("arp", "hlen"): "arp.hlen",
    ("arp", "plen"): "arp.plen",
}
ARP_OPS = {
    "request": 1, "reply": 2, "rrequest": 3, "rreply": 4, "inrequest": 8, "inreply": 9, "nak": 10,
}  # fmt: skip
ETHERTYPES = {"ip": 4, "ip6": 6, "arp": 0x806, "vlan": 0x8100, "8021ad": 0x88A8}
ETHERTYPE_NUMBERS = {0x0800: 4, 0x86DD: 6}  # IP versions stand for their ethertypes
_BIT_OPS = ("&", "|", "^", ">>", "<<")
_IP_FIELDS = {
    ("ip", "ttl"): "ttl", ("ip6", "hoplimit"): "ttl", ("ip", "dscp"): "dscp",
    ("ip6", "dscp"): "dscp", ("ip", "ecn"): "ecn", ("ip6", "ecn"): "ecn",
    ("ip", "length"): "length", ("ip6", "length"): "l3.payload_length",
    ("ip", "version"): "ipversion", ("ip6", "version"): "ipversion",
    ("ip", "hdrlength"): "iphdrlength", ("ip", "frag-off"): "fragoff", ("ip", "id"): "ip.id",
    ("ip6", "flowlabel"): "flowlabel",
}  # fmt: skip

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


# --------------------------------------------------------------------------- expressions


_FIELD_CACHE: dict[tuple[str, ...], Field] = {}


def _field(expr: Any, family: str = "") -> Field:
    """A left-hand expression as a Field (raises Malformed for shapes nft never prints)."""
    if not isinstance(expr, dict) or len(expr) != 1:
        raise Malformed(f"bad expression {expr!r}")
    ((k, v),) = expr.items()
    if k in ("payload", "meta", "ct") and isinstance(v, dict):
        vals = tuple(v.values())
        if all(isinstance(x, str) for x in vals):
            key = (k, *v.keys(), *vals)
            hit = _FIELD_CACHE.get(key)
            if hit is None:
                hit = _field_uncached(k, v, family)
                _FIELD_CACHE[key] = hit
            return hit
    return _field_uncached(k, v, family)


def _field_uncached(k: str, v: Any, family: str) -> Field:
    if k == "payload":
        if not isinstance(v, dict):
            raise Malformed("bad payload expression")
        proto = v.get("protocol")
        fld = v.get("field")
        if proto in ("ip", "ip6") and fld in ("saddr", "daddr"):
            return Field(fld, family=4 if proto == "ip" else 6)
        if (proto, fld) in (("ip", "protocol"), ("ip6", "nexthdr")):
            return Field("l4proto", family=4 if proto == "ip" else 6)
        if fld in ("sport", "dport") and proto in PORT_PROTO_NUMBERS:
            return Field(fld, proto=PORT_PROTO_NUMBERS[proto])
        if proto == "th" and fld in ("sport", "dport"):
            return Field(fld)
        if proto in ("icmp", "icmpv6") and fld in ("type", "code"):
            return Field(f"icmp.{fld}", proto=1 if proto == "icmp" else 58)
        l2 = L2_FIELDS.get((str(proto), str(fld)))
        if l2 is not None:
            return Field(l2)
        if proto in ("ip", "ip6"):
            key = _IP_FIELDS.get((proto, str(fld)))
            if key is not None:
                return Field(key, family=4 if proto == "ip" else 6)
        if proto == "tcp" and fld == "flags":
            return Field("tcpflags", proto=6)
        where = f"{proto} {fld}" if proto else "raw payload"
        return Field(f"unsupported:{where}")
    if k == "meta":
        key = v.get("key") if isinstance(v, dict) else None
        if key in ("iifname", "oifname", "l4proto", "mark", "pkttype", "nfproto"):
            return Field("mark" if key == "mark" else str(key))
        if key in ("iif", "oif"):
            return Field(f"{key}name")
        if key in ("ibrname", "obrname", "ibridgename", "obridgename"):
            return Field(f"{str(key)[0]}brname")
        if key in ("length", "skuid", "skgid", "hour", "day", "time"):
            return Field(str(key))
        if key == "protocol":
            return Field("ethertype")
        return Field(f"unsupported:meta {key}")
    if k == "ct":
        if not isinstance(v, dict):
            raise Malformed("bad ct expression")
        key = v.get("key")
        direction = v.get("dir")
        if key == "state":
            return Field("ctstate")
        if key == "status":
            return Field("ctstatus")
        if key == "mark":
            return Field("ctmark")
        if key == "direction":
            return Field("ctdirection")
        if direction in ("original", "reply") and key in (
            "saddr",
            "daddr",
            "ip saddr",
            "ip daddr",
            "ip6 saddr",
            "ip6 daddr",
            "proto-src",
            "proto-dst",
        ):
            d = "orig" if direction == "original" else "reply"
            what = {"proto-src": "sport", "proto-dst": "dport"}.get(str(key), str(key).split()[-1])
            return Field(f"ct.{d}.{what}")
        return Field(f"unsupported:ct {direction + ' ' if direction else ''}{key}")
    if k == "fib":
        if not isinstance(v, dict):
            raise Malformed("bad fib expression")
        flags = v.get("flags", [])
        flags = [flags] if isinstance(flags, str) else list(flags)
        result = v.get("result")
        if result == "type" and ("daddr" in flags or "saddr" in flags):
            which = "daddr" if "daddr" in flags else "saddr"
            arg = "iif" if "iif" in flags else ("oif" if "oif" in flags else None)
            return Field(f"fib.{which}.type", arg=arg)
        return Field(f"unsupported:fib {' . '.join(flags)} {result}")
    if k in _BIT_OPS:
        if not isinstance(v, list) or len(v) != 2:
            raise Malformed(f"bad {k} expression")
        inner = _field(v[0], family)
        if inner.key.startswith("unsupported:"):
            return inner
        try:
            n = v[1] if type(v[1]) is int else int(_atom(v[1], kind_of(inner)).lo)
        except (ValueError, TypeError, Malformed):
            return Field(f"unsupported:{k} with a non-constant operand")
        if k == "&" and not inner.ops and inner.mask is None:
            return Field(inner.key, mask=n, family=inner.family, proto=inner.proto, arg=inner.arg)
        ops = inner.ops or ((("&", inner.mask),) if inner.mask is not None else ())
        return Field(inner.key, family=inner.family, proto=inner.proto, arg=inner.arg,
                     ops=(*ops, (k, n)))  # fmt: skip
    if k == "numgen":
        if not isinstance(v, dict):
            raise Malformed("bad numgen expression")
        mode = v.get("mode")
        mod = v.get("mod")
        if not isinstance(mod, int) or mod < 1:
            raise Malformed("numgen needs a positive mod")
        return Field(f"numgen.{mode}", mask=mod, arg=str(v.get("offset", 0)))
    if k in (
        "jhash",
        "symhash",
        "rt",
        "socket",
        "osf",
        "exthdr",
        "tcp option",
        "ipsec",
        "sctp chunk",
        "dccp option",
    ):
        return Field(f"unsupported:{k}")
    raise Malformed(f"unknown expression {k!r}")


def fields_of(expr: Any, family: str) -> tuple[Field, ...]:
    if isinstance(expr, dict) and "concat" in expr:
        parts = expr["concat"]
        if not isinstance(parts, list) or not parts:
            raise Malformed("bad concat expression")
        return tuple(_field(p, family) for p in parts)
    return (_field(expr, family),)


def kind_of(f: Field) -> str:
    k = f.key
    if k in ("saddr", "daddr") or k.endswith((".saddr", ".daddr")):
        return "addr"
    if k in ("sport", "dport") or k.endswith((".sport", ".dport")):
        return "port"
    if k == "l4proto":
        return "proto"
    if k in ("iifname", "oifname", "pkttype", "ibrname", "obrname") or k.startswith("fib."):
        return "str"
    if k in ("arp.sip", "arp.tip"):
        return "addr"
    if k in ("ether.saddr", "ether.daddr", "arp.sha", "arp.tha"):
        return "mac"
    if k == "arp.op":
        return "arpop"
    if k == "arp.ptype":
        return "ethertype"
    if k == "icmp.type":
        return "icmpv6" if f.proto == 58 else "icmp"
    if k == "icmp.code":
        return "icmpv6code" if f.proto == 58 else "icmpcode"
    if k == "ctstate":
        return "ctstate"
    if k == "ctstatus":
        return "ctstatus"
    if k == "ctdirection":
        return "ctdirection"
    if k == "nfproto":
        return "nfproto"
    if k == "ethertype":
        return "ethertype"
    return _KINDS.get(k, "int")


_KINDS = {
    "tcpflags": "tcpflags", "dscp": "dscp", "ecn": "ecn", "day": "day", "hour": "hour",
    "time": "time", "skuid": "uid", "skgid": "uid", "icmp.code": "icmpcode",
}  # fmt: skip


def _atom(value: Any, kind: str) -> Atom:
    """A right-hand scalar, prefix or range as an Atom of the field's kind."""
    if value == "*":
        return CATCHALL
    if isinstance(value, list) and kind in _FLAG_KINDS:  # a flag combination: ["syn", "ack"]
        bits = 0
        for part in value:
            bits |= int(_atom(part, kind).lo)
        return Atom(bits)
    if isinstance(value, dict):
        if "prefix" in value:
            p = value["prefix"]
            if kind != "addr":  # a mark or other number with a mask: its top bits
                base, plen = int(_atom(p["addr"], kind).lo), int(p["len"])
                host = (1 << (32 - plen)) - 1
                return Atom(base & ~host & 0xFFFFFFFF, (base & ~host) | host)
            return prefix_atom(f"{p['addr']}/{p['len']}")[1]
        if "|" in value and isinstance(value["|"], list):
            bits = 0
            for part in value["|"]:
                bits |= int(_atom(part, kind).lo)
            return Atom(bits)
        if "range" in value:
            lo, hi = value["range"]
            a, b = _atom(lo, kind), _atom(hi, kind)
            if isinstance(a.lo, str) or isinstance(b.lo, str):
                raise Malformed("range of names")
            return Atom(a.lo, b.lo if b.lo != a.lo else None)
        if "elem" in value:
            return _atom(value["elem"].get("val"), kind)
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


_FLAG_KINDS = ("tcpflags", "ctstate", "ctstatus")
_NAMED = ("tcpflags", "dscp", "ecn", "day", "hour", "time", "uid", "icmpcode", "icmpv6code")


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
        stamp = datetime.datetime.fromisoformat(value).replace(tzinfo=datetime.UTC)
        return int(stamp.timestamp()) * 1_000_000_000
    elif kind == "uid" and value == "root":
        return 0
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
        return tuple(_atom(p, k) for p, k in zip(parts, kinds, strict=True))
    if value == "*":
        return tuple(CATCHALL for _ in kinds)
    if len(kinds) != 1:
        raise Malformed("element does not fit a concatenated key")
    return (_atom(value, kinds[0]),)


def lower_verdict(value: Any) -> Verdict:
    if not isinstance(value, dict) or len(value) != 1:
        raise Malformed(f"expected a verdict, got {value!r}")
    ((k, v),) = value.items()
    if k in ("jump", "goto"):
        target = v.get("target") if isinstance(v, dict) else None
        if not isinstance(target, str):
            raise Malformed(f"{k} without a target")
        return Verdict(k, target)
    if k in ("accept", "drop", "continue", "return", "queue"):
        return Verdict(k)
    raise Malformed(f"unknown verdict {k!r}")


def _values(
    right: Any, fields: tuple[Field, ...]
) -> tuple[tuple[tuple[Atom, ...], ...], str | None]:
    """Right-hand side -> (value tuples, named set)."""
    if isinstance(right, str) and right.startswith("@"):
        return (), right[1:]
    kinds = tuple(kind_of(f) for f in fields)
    if isinstance(right, dict) and "set" in right:
        items = right["set"]
        if not isinstance(items, list):
            items = [items]
        return tuple(element(i, kinds) for i in items), None
    if isinstance(right, list):
        if len(kinds) == 1 and kinds[0] in _FLAG_KINDS:
            return ((_atom(right, kinds[0]),),), None
        return tuple(element(i, kinds) for i in right), None
    return (element(right, kinds),), None


_MATCH_CACHE: dict[tuple[object, ...], Match] = {}


def lower_match(body: Any, family: str) -> Match:
    if not isinstance(body, dict):
        raise Malformed("match must be an object")
    op = body.get("op", "==")
    left = body.get("left")
    right = body.get("right")
    # Fast path: a plain field against one scalar, the bulk of every large ruleset.
    if (
        op in ("==", "!=")
        and isinstance(right, (str, int))
        and not isinstance(right, bool)
        and isinstance(left, dict)
        and len(left) == 1
    ):
        ((lk, lv),) = left.items()
        if lk in ("payload", "meta") and isinstance(lv, dict):
            key = (op, lk, *lv.values(), right)
            hit = _MATCH_CACHE.get(key)
            if hit is not None:
                return hit
            f = _field(left, family)
            if not f.key.startswith(("unsupported:", "numgen.")) and not (
                isinstance(right, str) and right.startswith("@")
            ):
                m = Match((f,), op, ((_atom(right, kind_of(f)),),))
                if len(_MATCH_CACHE) < 65536:
                    _MATCH_CACHE[key] = m
                return m
    fields = fields_of(left, family)
    text = ""  # rendered only where a message needs it (the rule's text is rendered lazily)
    bad = [f.key.split(":", 1)[1] for f in fields if f.key.startswith("unsupported:")]
    if bad:
        text = stmt_text("match", body)
        return Match(fields, text=text, unsupported=f"{', '.join(bad)} is not modelled")
    if any(f.key.startswith("numgen.") for f in fields) and len(fields) > 1:
        return Match(fields, text=stmt_text("match", body), unsupported="numgen in a concatenation")
    values, set_name = _values(right, fields)
    flag_field = len(fields) == 1 and fields[0].key in ("ctstate", "ctstatus", "tcpflags")
    if op == "in" and flag_field:
        bits = 0
        for (a,) in values:
            bits |= int(a.lo)
        return Match(fields, "bits", ((Atom(bits),),), text=text)
    if op == "in":
        op = "=="
    if op not in ("==", "!=", "<", ">", "<=", ">="):
        raise Malformed(f"unknown operator {op!r}")
    if op in ("<", ">", "<=", ">=") and (set_name or len(values) != 1 or len(fields) != 1):
        raise Malformed(f"operator {op} needs one value")
    return Match(fields, op, values, set_name=set_name, text=text)
