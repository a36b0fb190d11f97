"""Left-hand sides of nft JSON matches lowered to Fields: payload, meta, ct, fib, bit
operations and numgen. What the evaluator cannot read becomes a Field keyed
``unsupported:...`` (the match is then uncertain); shapes nft never prints raise Malformed.
"""

from __future__ import annotations

from typing import Any

from cntrace.netfilter.model import PORT_PROTO_NUMBERS
from cntrace.netfilter.nft_atoms import Malformed, atom
from cntrace.netfilter.steps import Field


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
        f = lhs_field(expr)
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
_BIT_OPS = ("&", "|", "^", ">>", "<<")
_IP_FIELDS = {
    ("ip", "ttl"): "ttl", ("ip6", "hoplimit"): "ttl", ("ip", "dscp"): "dscp",
    ("ip6", "dscp"): "dscp", ("ip", "ecn"): "ecn", ("ip6", "ecn"): "ecn",
    ("ip", "length"): "length", ("ip6", "length"): "l3.payload_length",
    ("ip", "version"): "ipversion", ("ip6", "version"): "ipversion",
    ("ip", "hdrlength"): "iphdrlength", ("ip", "frag-off"): "fragoff", ("ip", "id"): "ip.id",
    ("ip6", "flowlabel"): "flowlabel",
}  # fmt: skip


# --------------------------------------------------------------------------- expressions


_FIELD_CACHE: dict[tuple[str, ...], Field] = {}


def lhs_field(expr: Any, family: str = "") -> Field:
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
        hdr = _header_field(str(proto), str(fld))
        if hdr is not None:
            return hdr
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
        if key in _META_KEYS:
            return Field(f"h:meta.{_META_KEYS[key]}")
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
        if key in _CT_KEYS:
            return Field(f"h:ct.{key}", arg=direction)
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
        return Field(f"h:fib.{' . '.join(flags)} {result}")
    if k in _BIT_OPS:
        if not isinstance(v, list) or len(v) != 2:
            raise Malformed(f"bad {k} expression")
        inner = lhs_field(v[0], family)
        if inner.key.startswith("unsupported:"):
            return inner
        try:
            n = v[1] if type(v[1]) is int else int(atom(v[1], kind_of(inner)).lo)
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
    if k in _OPTION_EXPRS and isinstance(v, dict):
        name, fld = v.get("name", v.get("base")), v.get("field")  # base: a raw option kind
        if isinstance(name, (str, int)) and (fld is None or isinstance(fld, str)):
            return Field(_OPTION_EXPRS[k], arg=f"{name}.{fld}" if fld else str(name))
    if k in ("ipsec", "socket", "osf", "rt") and isinstance(v, dict):
        key = v.get("key")
        if isinstance(key, str):
            return Field(f"h:{k}.{key}", arg=str(v.get("dir")) if k == "ipsec" else None)
    if k in ("jhash", "symhash", "rt", "socket", "osf", "exthdr", "tcp option", "ipsec",
             "sctp chunk", "dccp option", "ip option"):  # fmt: skip
        return Field(f"unsupported:{k}")
    raise Malformed(f"unknown expression {k!r}")


_PROTO_HEADERS = {
    "tcp": 6, "udp": 17, "udplite": 136, "sctp": 132, "dccp": 33, "ah": 51, "esp": 50,
    "comp": 108, "igmp": 2,
}  # fmt: skip
_META_KEYS = {
    "priority": "priority", "iifgroup": "iifgroup", "oifgroup": "oifgroup",
    "iiftype": "iiftype", "oiftype": "oiftype", "cgroup": "cgroup", "sdif": "sdif",
    "sdifname": "sdifname", "cpu": "cpu", "rtclassid": "rtclassid", "ipsec": "secpath",
    "secpath": "secpath", "nftrace": "nftrace", "secmark": "secmark",
}  # fmt: skip
_CT_KEYS = ("zone", "label", "helper", "protocol", "l3proto", "bytes", "packets", "avgpkt", "id")
_OPTION_EXPRS = {"exthdr": "h:exthdr", "tcp option": "h:tcpopt", "sctp chunk": "h:sctpchunk",
                 "ip option": "h:ipopt"}  # fmt: skip


def _header_field(proto: str, fld: str) -> Field | None:
    """Transport, ICMP, IPv4 checksum and VLAN fields the probe's headers decide."""
    if proto in _PROTO_HEADERS:
        return Field(f"h:{proto}.{fld}", proto=_PROTO_HEADERS[proto])
    if proto in ("icmp", "icmpv6"):
        return Field(f"h:icmp.{fld}", proto=1 if proto == "icmp" else 58)
    if proto == "ip" and fld == "checksum":
        return Field("h:ip.checksum", family=4)
    if proto == "vlan":
        return Field(f"h:vlan.{fld}")
    return None


def fields_of(expr: Any, family: str) -> tuple[Field, ...]:
    if isinstance(expr, dict) and "concat" in expr:
        parts = expr["concat"]
        if not isinstance(parts, list) or not parts:
            raise Malformed("bad concat expression")
        return tuple(lhs_field(p, family) for p in parts)
    return (lhs_field(expr, family),)


def kind_of(f: Field) -> str:
    k = f.key
    if k in ("ether.saddr", "ether.daddr", "arp.sha", "arp.tha"):
        return "mac"
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
    if k.startswith("h:"):
        if k.endswith(".nexthdr") or (f.arg or "").endswith(".nexthdr") or k == "h:ct.protocol":
            return "proto"
        return _H_KINDS.get(k, "int")
    return _KINDS.get(k, "int")


_H_KINDS = {
    "h:ct.helper": "str", "h:ct.l3proto": "nfproto", "h:meta.iiftype": "iftype",
    "h:meta.oiftype": "iftype", "h:meta.sdifname": "str", "h:osf.name": "str",
    "h:osf.version": "str", "h:vlan.type": "ethertype", "h:meta.iifgroup": "group",
    "h:meta.oifgroup": "group", "h:meta.priority": "tcprio", "h:rt.classid": "realm",
    "h:meta.rtclassid": "realm", "h:dccp.type": "dccptype", "h:igmp.type": "igmptype",
}  # fmt: skip


_KINDS = {
    "tcpflags": "tcpflags", "dscp": "dscp", "ecn": "ecn", "day": "day", "hour": "hour",
    "time": "time", "skuid": "uid", "skgid": "uid", "icmp.code": "icmpcode",
}  # fmt: skip
