"""nft JSON statements lowered to steps: verdicts, NAT, verdict maps, mark rewrites, effects.

Statements the evaluator cannot model become Unsupported steps (or unsupported matches) with the
reason, never dropped; a statement nft never prints raises Malformed.
"""

from __future__ import annotations

from typing import Any

from cntrace.netfilter import stateful
from cntrace.netfilter.nft_expr import (
    Malformed,
    element,
    fields_of,
    kind_of,
    lower_match,
    lower_verdict,
)
from cntrace.netfilter.nft_maps import lower_value
from cntrace.netfilter.nft_text import expr_text, stmt_text, value_text
from cntrace.netfilter.probe_headers import STATE
from cntrace.netfilter.steps import (
    MASK32,
    Effect,
    Mangle,
    Match,
    NatSpec,
    Step,
    Unsupported,
    Verdict,
    VerdictMap,
)
from cntrace.netfilter.values import int_address, int_value, ip_to_int, port_number, prefix_atom


def _affine(expr: Any) -> tuple[str | None, int, int]:
    """A mark expression as (source, and-mask, xor): value = (source & and) ^ xor."""
    if isinstance(expr, int) and not isinstance(expr, bool):
        return None, 0, expr & MASK32
    if isinstance(expr, str):
        return None, 0, int_value(expr) & MASK32
    if isinstance(expr, dict) and len(expr) == 1:
        ((k, v),) = expr.items()
        if k == "meta" and v.get("key") == "mark":
            return "mark", MASK32, 0
        if k == "ct" and v.get("key") == "mark" and not v.get("dir"):
            return "ctmark", MASK32, 0
        if k in ("&", "|", "^") and isinstance(v, list) and len(v) == 2:
            src, a, x = _affine(v[0])
            src2, _, m = _affine(v[1])
            if src2 is not None:
                raise Malformed("mark arithmetic with two sources")
            if k == "&":
                return src, a & m, x & m
            if k == "|":
                return src, a & ~m & MASK32, x | m
            return src, a, x ^ m
    raise Malformed(f"mark expression not modelled: {expr!r}")


def _is_map(x: Any) -> bool:
    return isinstance(x, dict) and len(x) == 1 and next(iter(x)) in ("map", "jhash", "symhash")


def _nat_lookup(
    kind: str, v: dict[str, Any], expr: Any, flags: tuple[str, ...], family: str
) -> NatSpec:
    """NAT to an address (and port), or a port alone, looked up for each packet."""
    into = ("addr", "port") if "addr" in v else ("port",)
    kinds = ("addr", "port") if into == ("addr", "port") else ("port",)
    if "addr" in v and _is_map(v.get("port")):
        return NatSpec(kind, flags=flags, unsupported=f"{kind} port from a second map")
    fixed = v.get("port")
    port = port_number(fixed) if isinstance(fixed, (int, str)) else None
    lk = lower_value(expr, family, kinds)
    if isinstance(lk, str):
        return NatSpec(kind, flags=flags, unsupported=f"{kind} from a map: {lk}")
    return NatSpec(kind, port=port, flags=flags, lookup=lk, into=into)


def _nat(kind: str, v: Any, family: str) -> NatSpec:
    if v is None:
        return NatSpec(kind)
    if not isinstance(v, dict):
        raise Malformed(f"{kind}: expected an object")
    flags_raw = v.get("flags", [])
    flags = tuple([flags_raw] if isinstance(flags_raw, str) else flags_raw)
    flags = tuple("random-fully" if f == "fully-random" else f for f in flags)
    addr = addr_hi = None
    unsupported = None
    a = v.get("addr")
    p = v.get("port")
    if _is_map(a) or (a is None and _is_map(p)):
        return _nat_lookup(kind, v, a if a is not None else p, flags, family)
    if isinstance(a, str):
        ip_to_int(a)
        addr = a
    elif isinstance(a, dict) and "range" in a:
        lo, hi = a["range"]
        ip_to_int(str(lo))
        ip_to_int(str(hi))
        addr, addr_hi = str(lo), str(hi)
    elif isinstance(a, dict) and "prefix" in a:  # "snat to 192.168.3.0/24": its range
        pre = a["prefix"]
        ver, span = prefix_atom(f"{pre['addr']}/{pre['len']}")
        hi = span.hi if span.hi is not None else span.lo
        addr, addr_hi = int_address(int(span.lo), ver), int_address(int(hi), ver)
    elif a is not None:
        unsupported = f"{kind} address from {expr_text(a)} is not modelled"
    port = port_hi = None
    if isinstance(p, (int, str)) and not isinstance(p, bool):
        port = port_number(p)
    elif isinstance(p, dict) and "range" in p:
        port, port_hi = port_number(p["range"][0]), port_number(p["range"][1])
    elif p is not None:
        unsupported = f"{kind} port from {expr_text(p)} is not modelled"
    return NatSpec(kind, addr, addr_hi, port, port_hi, flags, unsupported)


def lower_statement(k: str, v: Any, family: str) -> Step:
    """One JSON statement as a Step."""
    if k == "match":
        return lower_match(v, family)
    if k in ("accept", "drop", "continue", "return"):
        return Verdict(k)
    if k in ("jump", "goto"):
        return lower_verdict({k: v})
    if k == "reject":
        detail = None
        if isinstance(v, dict):
            detail = " ".join(str(x) for x in (v.get("type"), v.get("expr")) if x)
        return Verdict("reject", detail=detail)
    if k == "queue":
        return Verdict("queue", detail=value_text(v.get("num")) if isinstance(v, dict) else None)
    if k == "counter":
        return Effect("counter")
    if k == "log":
        return Effect("log", stmt_text(k, v))
    if k == "notrack":
        return Effect("notrack")
    if k in ("dnat", "snat", "masquerade", "redirect"):
        return _nat(k, v, family)
    if k == "vmap":
        if not isinstance(v, dict):
            raise Malformed("vmap must be an object")
        fields = fields_of(v.get("key"), family)
        text = ""
        bad = [f.key.split(":", 1)[1] for f in fields if f.key.startswith("unsupported:")]
        if bad:
            text = stmt_text("vmap", v)
            return VerdictMap(fields, text=text, unsupported=f"{', '.join(bad)} is not modelled")
        data = v.get("data")
        if isinstance(data, str) and data.startswith("@"):
            return VerdictMap(fields, map_name=data[1:], text=text)
        if isinstance(data, dict) and "set" in data:
            kinds = tuple(kind_of(f) for f in fields)
            elems = []
            for pair in data["set"]:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise Malformed("vmap elements must be [key, verdict] pairs")
                elems.append((element(pair[0], kinds), lower_verdict(pair[1])))
            return VerdictMap(fields, tuple(elems), text=text)
        raise Malformed("vmap data must be a set or @map")
    if k == "mangle":
        if not isinstance(v, dict):
            raise Malformed("mangle must be an object")
        key = v.get("key")
        dest = None
        if isinstance(key, dict) and key.get("meta", {}).get("key") == "mark":
            dest = "mark"
        elif isinstance(key, dict) and "ct" in key and key["ct"].get("key") == "mark":
            dest = "ctmark"
        text = stmt_text(k, v)
        if dest is None:
            if isinstance(key, dict) and "payload" in key:
                fld = key["payload"].get("field")
                if fld in ("saddr", "daddr", "sport", "dport"):
                    return Unsupported(text, "rewriting packet addresses or ports is not modelled")
            return Effect("mangle", text)
        try:
            src, a, x = _affine(v.get("value"))
        except Malformed as exc:
            try:
                lk = lower_value(v.get("value"), family, ("int",))
            except Malformed:
                return Unsupported(text, str(exc))
            if isinstance(lk, str):
                return Unsupported(text, f"{dest} from {lk}")
            return Mangle(dest, keep=0, value=lk)
        if src == dest:
            return Mangle(dest, keep=a, xor=x)
        return Mangle(dest, keep=0, xor=x, src=src, src_mask=a if src else 0)
    if k in ("limit", "quota", "ct count"):
        return stateful.nft_statement(k, v, stmt_text(k, v))
    if k == "xt":
        name = v.get("name") if isinstance(v, dict) else v
        typ = v.get("type") if isinstance(v, dict) else "match"
        reason = f"iptables extension {name!r} (read the iptables-save view for this table)"
        if typ == "match":
            return Match((), text=f"xt {name}", unsupported=reason)
        return Unsupported(f"xt target {name}", reason)
    if k in ("set", "map", "flow", "secmark", "ct helper", "ct timeout", "ct expectation"):
        return Effect(k, stmt_text(k, v))
    if k in (
        "dup",
        "reset",
    ):  # a copy sent elsewhere / a TCP option stripped: no say in the verdict
        return Effect(k, stmt_text(k, v))
    if k == "tproxy":
        return Unsupported(stmt_text(k, v), f"tproxy: needs a matching socket ({STATE})")
    if k in ("synproxy", "fwd"):
        return Unsupported(stmt_text(k, v), f"{k} is not modelled")
    raise Malformed(f"unknown statement {k!r}")
