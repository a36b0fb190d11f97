"""iptables match modules (``-m tcp --dport 80``, ``-m conntrack --ctstate NEW`` ...) as steps.

One handler per module turns one of its options into a Match (or an Effect for options that only
annotate, like ``--comment``). A module whose outcome depends on what the packet description does
not carry (rates, owners, payload bytes) becomes an ``unsupported`` match, so an evaluation that
depends on it is reported as uncertain instead of guessed.
"""

from __future__ import annotations

from collections.abc import Callable

from cntrace.netfilter import hashlimit, stateful
from cntrace.netfilter.iptables_headers import (
    m_cgroup,
    m_connbytes,
    m_ecn,
    m_exthdr,
    m_mac,
    m_proto_header,
    m_tcpmss,
    sctp_dccp_option,
)
from cntrace.netfilter.iptables_probe import (
    m_dscp,
    m_length,
    m_owner,
    m_time,
    m_tos,
    m_ttl,
    tcp_flags,
)
from cntrace.netfilter.model import CT_STATE_BITS, CT_STATUS_BITS, PORT_PROTO_NUMBERS
from cntrace.netfilter.names import ICMP_TYPE_CODES, ICMPV6_TYPE_CODES, protocol_number
from cntrace.netfilter.probe_headers import STATE
from cntrace.netfilter.steps import MASK32, Atom, Effect, Field, Match, Step
from cntrace.netfilter.values import (
    ADDRTYPES,
    ICMP_TYPES,
    ICMPV6_TYPES,
    PKTTYPES,
    int_value,
    port_number,
    prefix_atom,
    range_atom,
)

# The protocol a module's port options imply when the rule has no -p.
MODULE_PROTO = PORT_PROTO_NUMBERS

ModuleHandler = Callable[[str, list[str], bool, "int | None", str], "Step | None"]


def _one(args: list[str]) -> str:
    if not args:
        raise ValueError("missing value")
    return args[0]


def mask_value(text: str) -> tuple[int, int]:
    """'0x4000/0x4000' -> (value, mask); no mask means all 32 bits."""
    v, _, m = text.partition("/")
    return int_value(v), int_value(m) if m else MASK32


def iface_atom(value: str) -> Atom:
    """An interface name, ``veth+`` being a prefix."""
    return Atom(value[:-1], wildcard=True) if value.endswith("+") else Atom(value)


def _names_to_bits(spec: str, table: dict[str, int], what: str) -> int:
    bits = 0
    for name in spec.split(","):
        key = name.strip().lower().replace("_", "-")
        if key not in table:
            raise ValueError(f"unknown {what} {name!r}")
        bits |= table[key]
    return bits


def ports(key: str, args: list[str], neg: bool, proto: int | None, text: str) -> Match:
    """A port match (``--dport 80``, ``--dports 80,443:445``) on ``key``."""
    spec = _one(args)
    atoms: list[tuple[Atom, ...]] = []
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        a = port_number(lo) if lo else 0
        b = port_number(hi) if hi else (65535 if ":" in part else None)
        atoms.append((Atom(a, b if b is not None and b != a else None),))
    return Match((Field(key, proto=proto),), "!=" if neg else "==", tuple(atoms), text=text)


def _m_tcp(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    pr = proto
    if opt in ("--dport", "--destination-port"):
        return ports("dport", args, neg, pr, text)
    if opt in ("--sport", "--source-port"):
        return ports("sport", args, neg, pr, text)
    if opt in ("--syn", "--tcp-flags") and pr == 6:
        return tcp_flags(opt, args, neg, pr, text)
    if opt in ("--syn", "--tcp-flags", "--tcp-option"):
        return Match((), text=text, unsupported=f"TCP {opt} is not modelled")
    if opt in ("--chunk-types", "--verification-tag", "--dccp-types", "--dccp-option"):
        return sctp_dccp_option(opt, args, neg, pr, text)
    raise ValueError(f"unknown option {opt}")


def _m_multiport(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    if opt in ("--dports", "--destination-ports"):
        return ports("dport", args, neg, proto, text)
    if opt in ("--sports", "--source-ports"):
        return ports("sport", args, neg, proto, text)
    if opt == "--ports":
        return ports("port", args, neg, proto, text)
    raise ValueError(f"unknown option {opt}")


def _m_icmp(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    v6 = opt == "--icmpv6-type"
    if opt not in ("--icmp-type", "--icmpv6-type"):
        raise ValueError(f"unknown option {opt}")
    spec = _one(args)
    names = ICMPV6_TYPES if v6 else ICMP_TYPES
    typ, _, code = spec.partition("/")
    pairs = ICMPV6_TYPE_CODES if v6 else ICMP_TYPE_CODES
    if typ in pairs and not code:
        t, c = pairs[typ]
        typ, code = str(t), str(c)
    t = names[typ] if typ in names else int(typ)
    fields: tuple[Field, ...] = (Field("icmp.type", proto=58 if v6 else 1),)
    if t == -1:
        return Match(
            (Field("l4proto"),), "!=" if neg else "==", ((Atom(58 if v6 else 1),),), text=text
        )
    if code:
        fields = (*fields, Field("icmp.code", proto=58 if v6 else 1))
        return Match(fields, "!=" if neg else "==", ((Atom(t), Atom(int(code))),), text=text)
    return Match(fields, "!=" if neg else "==", ((Atom(t),),), text=text)


# --ctorigsrc 10.0.0.1, --ctrepldstport 80 ...: the connection's tuples, both directions.
_CT_TUPLE = {
    "--ctorigsrc": "ct.orig.saddr",
    "--ctorigdst": "ct.orig.daddr",
    "--ctreplsrc": "ct.reply.saddr",
    "--ctrepldst": "ct.reply.daddr",
    "--ctorigsrcport": "ct.orig.sport",
    "--ctorigdstport": "ct.orig.dport",
    "--ctreplsrcport": "ct.reply.sport",
    "--ctrepldstport": "ct.reply.dport",
}


def _m_conntrack(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    if opt in ("--ctstate", "--state"):
        bits = _names_to_bits(_one(args), CT_STATE_BITS, "conntrack state")
        key = "ctstate.x" if opt == "--ctstate" else "ctstate"
        return Match((Field(key),), "!bits" if neg else "bits", ((Atom(bits),),), text=text)
    if opt == "--ctstatus":
        spec = _one(args).lower()
        bits = 0 if spec == "none" else _names_to_bits(spec, CT_STATUS_BITS, "conntrack status")
        # NONE is an empty mask: (status & 0) != 0 never holds, as in xt_conntrack
        return Match((Field("ctstatus"),), "!bits" if neg else "bits", ((Atom(bits),),), text=text)
    if opt == "--ctdir":
        d = {"ORIGINAL": 0, "REPLY": 1}[_one(args).upper()]
        return Match((Field("ctdirection"),), "!=" if neg else "==", ((Atom(d),),), text=text)
    tuple_key = _CT_TUPLE.get(opt)
    if tuple_key is not None and tuple_key.endswith("port"):
        return ports(tuple_key, args, neg, None, text)
    if tuple_key is not None:
        atoms = tuple((prefix_atom(a)[1],) for a in _one(args).split(","))
        return Match((Field(tuple_key),), "!=" if neg else "==", atoms, text=text)
    if opt == "--ctproto":
        value = _one(args).lower()
        num = protocol_number(value)
        if num is None:
            raise ValueError(f"unknown protocol {value!r}")
        return Match((Field("l4proto"),), "!=" if neg else "==", ((Atom(num),),), text=text)
    return Match((), text=f"-m conntrack {text}", unsupported=f"conntrack {opt} is not modelled")


def _m_state(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    if opt != "--state":
        raise ValueError(f"unknown option {opt}")
    bits = _names_to_bits(_one(args), CT_STATE_BITS, "state")
    return Match((Field("ctstate"),), "!bits" if neg else "bits", ((Atom(bits),),), text=text)


def _m_addrtype(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    if opt in ("--limit-iface-in", "--limit-iface-out"):
        return Effect("addrtype-limit", "iif" if opt.endswith("in") else "oif")
    if opt not in ("--src-type", "--dst-type"):
        raise ValueError(f"unknown option {opt}")
    types = []
    for name in _one(args).split(","):
        if name.upper() not in ADDRTYPES:
            raise ValueError(f"unknown address type {name!r}")
        types.append((Atom(ADDRTYPES[name.upper()]),))
    key = "fib.saddr.type" if opt == "--src-type" else "fib.daddr.type"
    return Match((Field(key),), "!=" if neg else "==", tuple(types), text=text)


def _mark_match(field: str) -> ModuleHandler:
    """``-m mark --mark V[/M]`` and ``-m connmark --mark V[/M]``: the same test on the packet's
    mark or its connection's."""

    def handler(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
        if opt != "--mark":
            raise ValueError(f"unknown option {opt}")
        v, m = mask_value(_one(args))
        return Match(
            (Field(field, mask=m if m != MASK32 else None),),
            "!=" if neg else "==",
            ((Atom(v & m),),),
            text=text,
        )

    return handler


_m_mark = _mark_match("mark")
_m_connmark = _mark_match("ctmark")


def _m_comment(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    if opt != "--comment":
        raise ValueError(f"unknown option {opt}")
    return Effect("comment", " ".join(args))


def _m_physdev(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    op = "!=" if neg else "=="
    if opt in ("--physdev-in", "--physdev-out"):
        key = "physdev.in" if opt == "--physdev-in" else "physdev.out"
        return Match((Field(key),), op, ((iface_atom(_one(args)),),), text=text)
    flags = {
        "--physdev-is-in": "physdev.is-in",
        "--physdev-is-out": "physdev.is-out",
        "--physdev-is-bridged": "physdev.is-bridged",
    }
    if opt in flags:
        return Match((Field(flags[opt]),), op, ((Atom(1),),), text=text)
    raise ValueError(f"unknown option {opt}")


def _m_set(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    if opt in ("--match-set", "--set"):
        if len(args) < 2:
            raise ValueError("--match-set needs a set name and directions")
        dirs = args[1].split(",")
        for d in dirs:
            if d not in ("src", "dst"):
                raise ValueError(f"bad set direction {d!r}")
        fields = tuple(Field("set.elem", arg=d) for d in dirs)
        return Match(fields, "!=" if neg else "==", set_name=args[0], text=text)
    return Effect("set-option", text)


def _m_statistic(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    if opt == "--probability":
        return Match(
            (Field("statistic.random", arg=_one(args)),),
            "!=" if neg else "==",
            ((Atom(1),),),
            text=text,
        )
    if opt in ("--every", "--packet"):
        return Match((), text=text, unsupported=stateful.NTH)
    if opt == "--mode":
        return None
    raise ValueError(f"unknown option {opt}")


def _m_iprange(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    if opt not in ("--src-range", "--dst-range"):
        raise ValueError(f"unknown option {opt}")
    lo, _, hi = _one(args).partition("-")
    _, atom = range_atom(lo, hi or lo)
    key = "saddr" if opt == "--src-range" else "daddr"
    return Match((Field(key),), "!=" if neg else "==", ((atom,),), text=text)


def _m_pkttype(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    if opt != "--pkt-type":
        raise ValueError(f"unknown option {opt}")
    value = _one(args).lower()
    if value not in PKTTYPES:
        raise ValueError(f"unknown packet type {value!r}")
    return Match((Field("pkttype"),), "!=" if neg else "==", ((Atom(PKTTYPES[value]),),), text=text)


def _uncertain(reason: str) -> ModuleHandler:
    def handler(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
        return Match((), text=text, unsupported=reason)

    return handler


MODULES: dict[str, ModuleHandler] = {
    "tcp": _m_tcp,
    "udp": _m_tcp,
    "sctp": _m_tcp,
    "udplite": _m_tcp,
    "dccp": _m_tcp,
    "multiport": _m_multiport,
    "icmp": _m_icmp,
    "icmp6": _m_icmp,
    "icmpv6": _m_icmp,
    "conntrack": _m_conntrack,
    "state": _m_state,
    "addrtype": _m_addrtype,
    "mark": _m_mark,
    "connmark": _m_connmark,
    "comment": _m_comment,
    "physdev": _m_physdev,
    "set": _m_set,
    "statistic": _m_statistic,
    "iprange": _m_iprange,
    "pkttype": _m_pkttype,
    "limit": _uncertain(stateful.LIMIT),
    "hashlimit": hashlimit.m_hashlimit,
    "recent": stateful.m_recent,
    "connlimit": stateful.m_connlimit,
    "owner": m_owner,
    "socket": _uncertain(f"socket: the namespace's sockets ({STATE})"),
    "rpfilter": _uncertain(f"rpfilter: a reverse route lookup ({STATE})"),
    "length": m_length,
    "ttl": m_ttl,
    "hl": m_ttl,
    "tos": m_tos,
    "dscp": m_dscp,
    "ecn": m_ecn,
    "tcpmss": m_tcpmss,
    "string": _uncertain("string: the payload is not known"),
    "u32": _uncertain("u32: raw packet bytes are not known"),
    "bpf": _uncertain("bpf: a BPF program decides"),
    "cgroup": m_cgroup,
    "time": m_time,
    "quota": stateful.m_quota,
    "helper": _uncertain("helper: depends on a conntrack helper"),
    "policy": _uncertain("policy: IPsec policy is not modelled"),
    "devgroup": _uncertain("devgroup: device groups are not known"),
    "realm": _uncertain(f"realm: the route's realm ({STATE})"),
    "mac": m_mac,
    "cpu": _uncertain(f"cpu: the CPU that handles the packet ({STATE})"),
    "ipvs": _uncertain(f"ipvs: IPVS services are not read ({STATE})"),
    "rateest": _uncertain("rateest: a rate estimator (stateful)"),
    "connbytes": m_connbytes,
    "nfacct": _uncertain("nfacct: accounting objects are not modelled"),
    "frag": m_exthdr("frag"),
    "rt": m_exthdr("rt"),
    "dst": m_exthdr("dst"),
    "hbh": m_exthdr("hbh"),
    "srh": m_exthdr("srh"),
    "mh": m_proto_header("mh"),
    "ipcomp": m_proto_header("ipcomp"),
    "ipv6header": _uncertain("ipv6header: extension headers are not modelled"),
    "esp": m_proto_header("esp"),
    "ah": m_proto_header("ah"),
}
