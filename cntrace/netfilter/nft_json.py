"""Parse ``nft -j list ruleset`` (libnftables JSON) into the rule model.

Expressions are lowered to the same fields and atoms the iptables parser produces, so one evaluator
serves both. Each rule also gets its text back in ``nft list`` syntax (the JSON carries none),
because a user finds a rule again by reading it. Anything the evaluator cannot model is kept as an
``unsupported`` step with the reason, never dropped.

Tables that iptables-nft manages also appear here; ``parse`` skips those the caller names (when the
snapshot holds the iptables-save view of the same table, that view wins).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cntrace.netfilter.model import (
    CT_STATE_BITS,
    CT_STATUS_BITS,
    PROTO_NUMBERS,
    Atom,
    Chain,
    Effect,
    Field,
    Mangle,
    Match,
    NamedSet,
    NatSpec,
    Rule,
    Step,
    Table,
    Unsupported,
    Verdict,
    VerdictMap,
)
from cntrace.netfilter.values import (
    ICMP_TYPES,
    ICMPV6_TYPES,
    PKTTYPES_ALL,
    RulesetError,
    int_value,
    ip_to_int,
    port_number,
    prefix_atom,
)

_MASK32 = 0xFFFFFFFF
HOOK_NAMES = {"prerouting", "input", "forward", "output", "postrouting", "ingress", "egress"}
IPTABLES_TABLES = {"filter", "nat", "mangle", "raw", "security"}
_PORT_PROTOS = {"tcp": 6, "udp": 17, "sctp": 132, "udplite": 136, "dccp": 33}
# Meta keys nft prints without the "meta" keyword.
_BARE_META = {
    "iif",
    "oif",
    "iifname",
    "oifname",
    "iiftype",
    "oiftype",
    "skuid",
    "skgid",
    "nftrace",
    "rtclassid",
    "ibrname",
    "obrname",
    "cpu",
    "iifgroup",
    "oifgroup",
    "cgroup",
    "ipsec",
}
_VERDICT_KEYS = ("accept", "drop", "continue", "return", "jump", "goto", "queue")


class _Bad(ValueError):
    """A structural problem in one JSON object; turned into a RulesetError with its position."""

    index: int | None = None


@dataclass
class ParsedNft:
    """What one nft JSON document held."""

    tables: list[Table] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    # (family, table) -> (table handle, {chain: handle}) of the skipped tables: they tell the
    # evaluator when iptables-nft registered its chains.
    skipped_handles: dict[tuple[str, str], tuple[int | None, dict[str, int | None]]] = field(
        default_factory=dict
    )
    warnings: list[str] = field(default_factory=list)
    version: str | None = None


def parse(
    text: str | bytes, *, skip: Iterable[tuple[str, str]] = (), source: str = "nft"
) -> ParsedNft:
    """Parse ``nft -j list ruleset``; ``skip`` holds (family, table) pairs to leave out."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RulesetError(
            f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno, source=source
        ) from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise RulesetError(f"not valid JSON: {exc}", 1, source=source) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("nftables"), list):
        raise RulesetError('expected an object with an "nftables" list', 1, source=source)
    items = doc["nftables"]
    skip_set = set(skip)
    out = ParsedNft()
    try:
        _Builder(out, skip_set, text, source).build(items)
    except _Bad as exc:
        index = exc.index
        line = _line_of_item(text, index) if index is not None else 1
        where = f"nftables[{index}]: " if index is not None else ""
        raise RulesetError(f"{where}{exc}", line, source=source) from None
    return out


def _line_of_item(text: str | bytes, index: int) -> int:
    """The line on which the index-th element of the "nftables" array starts (error path only)."""
    s = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    start = s.find('"nftables"')
    if start < 0:
        return 1
    pos = s.find("[", start)
    depth = 0
    count = -1
    in_str = False
    esc = False
    i = pos + 1
    expecting = True
    while i < len(s):
        ch = s[i]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
            if depth == 0 and expecting:
                count += 1
                expecting = False
                if count == index:
                    return s.count("\n", 0, i) + 1
        elif ch in "[{":
            if depth == 0 and expecting:
                count += 1
                expecting = False
                if count == index:
                    return s.count("\n", 0, i) + 1
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth < 0:
                break
        elif ch == "," and depth == 0:
            expecting = True
        elif depth == 0 and expecting and not ch.isspace():
            count += 1
            expecting = False
            if count == index:
                return s.count("\n", 0, i) + 1
        i += 1
    return s.count("\n") + 1


# --------------------------------------------------------------------------- building


class _Builder:
    def __init__(
        self, out: ParsedNft, skip: set[tuple[str, str]], text: str | bytes = "", source: str = ""
    ) -> None:
        self.out = out
        self.skip = skip
        self.text = text
        self.source = source
        self.index = 0
        self.tables: dict[tuple[str, str], dict[str, Any]] = {}
        self.order: list[tuple[str, str]] = []

    def build(self, items: list[Any]) -> None:
        for index, item in enumerate(items):
            self.index = index
            try:
                self.item(item)
            except _Bad as exc:
                exc.index = index
                raise
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
                bad = _Bad(f"{type(exc).__name__}: {exc}")
                bad.index = index
                raise bad from None
        for key in self.order:
            t = self.tables[key]
            if key in self.skip:
                self.out.skipped_handles[key] = (
                    t["handle"],
                    {name: c.get("handle") for name, c in t["chains"].items()},
                )
                self.out.ignored.append(
                    f"nft table {key[0]} {key[1]} (managed by iptables-nft; the iptables-save "
                    "view is used)"
                )
                continue
            chains: dict[str, Chain] = {}
            for name, c in t["chains"].items():
                rules = tuple(
                    Rule(
                        "nftables",
                        key[0],
                        key[1],
                        name,
                        pos,
                        r[1],
                        r[2],
                        None,
                        [r[0], self.compile, None, None, r[3], _render],
                    )
                    for pos, r in enumerate(t["rules"].get(name, []), 1)
                )
                chains[name] = Chain(
                    backend="nftables",
                    family=key[0],
                    table=key[1],
                    name=name,
                    rules=rules,
                    hook=c.get("hook"),
                    priority=c.get("prio"),
                    type=c.get("type"),
                    policy=c.get("policy") if c.get("hook") else None,
                    handle=c.get("handle"),
                )
            if key[1] in IPTABLES_TABLES and key[0] in ("ip", "ip6") and t["xt"]:
                self.out.warnings.append(
                    f"nft table {key[0]} {key[1]} holds iptables-nft rules (xt extensions) but no "
                    "iptables-save view was given; rules using extensions are uncertain"
                )
            for c in chains.values():
                if c.hook in ("ingress", "egress") and c.rules:
                    self.out.warnings.append(
                        f"{key[0]} {key[1]} {c.name}: {c.hook} chains are not evaluated"
                    )
            if key[0] in ("bridge", "arp", "netdev") and any(c.rules for c in chains.values()):
                self.out.warnings.append(
                    f"nft table {key[0]} {key[1]}: {key[0]} family tables are listed but not "
                    "evaluated"
                )
            self.out.tables.append(
                Table(
                    backend="nftables",
                    family=key[0],
                    name=key[1],
                    chains=chains,
                    sets=t["sets"],
                    handle=t["handle"],
                    comment=t["comment"],
                )
            )

    def table(self, family: Any, name: Any) -> dict[str, Any]:
        if not isinstance(family, str) or not isinstance(name, str):
            raise _Bad("family and table must be strings")
        key = (family, name)
        t = self.tables.get(key)
        if t is None:
            t = {
                "chains": {},
                "rules": {},
                "sets": {},
                "handle": None,
                "comment": None,
                "xt": False,
            }
            self.tables[key] = t
            self.order.append(key)
        return t

    def item(self, item: Any) -> None:
        if not isinstance(item, dict) or len(item) != 1:
            raise _Bad("each element must be an object with one key")
        ((kind, body),) = item.items()
        if kind == "metainfo":
            if isinstance(body, dict):
                self.out.version = str(body.get("version")) if body.get("version") else None
            return
        if not isinstance(body, dict):
            raise _Bad(f"{kind}: expected an object")
        if kind == "table":
            t = self.table(body.get("family"), body.get("name"))
            t["handle"] = _opt_int(body.get("handle"))
            t["comment"] = body.get("comment") if isinstance(body.get("comment"), str) else None
        elif kind == "chain":
            self.chain(body)
        elif kind == "rule":
            self.rule(body)
        elif kind in ("set", "map"):
            self.named_set(kind, body)
        # flowtable, counter, quota, ct helper ... objects do not change a verdict

    def chain(self, body: dict[str, Any]) -> None:
        t = self.table(body.get("family"), body.get("table"))
        name = body.get("name")
        if not isinstance(name, str):
            raise _Bad("chain without a name")
        hook = body.get("hook")
        if hook is not None and hook not in HOOK_NAMES:
            raise _Bad(f"chain {name}: unknown hook {hook!r}")
        prio = body.get("prio")
        if hook is not None and not isinstance(prio, int):
            raise _Bad(f"chain {name}: base chain without a numeric priority")
        policy = body.get("policy", "accept" if hook else None)
        if policy not in (None, "accept", "drop"):
            raise _Bad(f"chain {name}: unknown policy {policy!r}")
        t["chains"][name] = {
            "hook": hook,
            "prio": prio if hook else None,
            "type": body.get("type"),
            "policy": policy,
            "handle": _opt_int(body.get("handle")),
        }
        t["rules"].setdefault(name, [])

    def rule(self, body: dict[str, Any]) -> None:
        """Record a rule cheaply; its statements are lowered (and its text rendered) on use."""
        family = body.get("family")
        try:
            t = self.tables[(family, body.get("table"))]  # type: ignore[index]
        except (KeyError, TypeError):
            t = self.table(family, body.get("table"))
        chain = body.get("chain")
        rules = t["rules"].get(chain) if isinstance(chain, str) else None
        if rules is None:
            raise _Bad(f"rule for unknown chain {chain!r}")
        exprs = body.get("expr")
        if type(exprs) is not list:
            raise _Bad(f"rule in {chain}: expr must be a list")
        counters = None
        for e in exprs:
            if type(e) is not dict or len(e) != 1:
                raise _Bad(f"rule in {chain}: each statement must be an object with one key")
            c = e.get("counter")
            if c is not None:
                if counters is None and type(c) is dict:
                    p, b = c.get("packets", 0), c.get("bytes", 0)
                    if type(p) is not int or type(b) is not int:
                        raise _Bad(f"rule in {chain}: counter values must be numbers")
                    counters = (p, b)
            elif "xt" in e:
                t["xt"] = True
        comment = body.get("comment")
        if type(comment) is not str:
            comment = None
        handle = body.get("handle")
        if type(handle) is not int or handle < 0:  # nft never prints one; a damaged file may
            handle = None
        rules.append(((exprs, self.index, family, comment), handle, counters, comment))

    def compile(self, rule: Rule) -> tuple[tuple[Step, ...], str | None]:
        """Lower a rule's statements (once, on first use)."""
        exprs, index, family, comment = rule._lazy[0]
        try:
            steps = tuple(lower_statement(k, v, family) for e in exprs for k, v in e.items())
        except _Bad as exc:
            raise RulesetError(
                f"nftables[{index}]: {exc}", _line_of_item(self.text, index), source=self.source
            ) from None
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as exc:
            raise RulesetError(
                f"nftables[{index}]: {type(exc).__name__}: {exc}",
                _line_of_item(self.text, index),
                source=self.source,
            ) from None
        return steps, comment

    def named_set(self, kind: str, body: dict[str, Any]) -> None:
        t = self.table(body.get("family"), body.get("table"))
        name = body.get("name")
        if not isinstance(name, str):
            raise _Bad(f"{kind} without a name")
        key_types = _key_types(body.get("type"))
        kinds = tuple(_TYPE_KIND.get(k, "raw") for k in key_types)
        elems: list[tuple[Atom, ...]] = []
        data: list[Verdict | str] = []
        map_type = body.get("map") if kind == "map" else None
        for el in body.get("elem", []) or []:
            if kind == "map":
                if not isinstance(el, list) or len(el) != 2:
                    raise _Bad(f"map {name}: elements must be [key, value] pairs")
                key, val = el
                elems.append(_element(key, kinds))
                data.append(_verdict(val) if map_type == "verdict" else _plain_text(val))
            else:
                elems.append(_element(el, kinds))
        flags = body.get("flags", [])
        t["sets"][name] = NamedSet(
            name=name,
            family=str(body.get("family")),
            table=str(body.get("table")),
            key_types=key_types,
            elements=tuple(elems),
            data=tuple(data),
            map_type=str(map_type) if isinstance(map_type, str) else None,
            flags=tuple(flags) if isinstance(flags, list) else (str(flags),),
            handle=_opt_int(body.get("handle")),
        )


def _render(rule: Rule) -> str:
    """A rule's text in ``nft list`` syntax (rendered only when someone reads it)."""
    exprs, _, _, comment = rule._lazy[0]
    try:
        texts = [stmt_text(k, v) for e in exprs for k, v in e.items()]
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError):
        texts = [json.dumps(exprs)]
    text = " ".join(x for x in texts if x)
    if comment:
        text += f' comment "{comment}"'
    return text


def _opt_int(v: Any) -> int | None:
    """A handle or counter: a non-negative int (anything else is a damaged document)."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _key_types(t: Any) -> tuple[str, ...]:
    if isinstance(t, str):
        return (t,)
    if isinstance(t, list) and all(isinstance(x, str) for x in t):
        return tuple(t)
    if isinstance(t, dict) and "typeof" in t:
        exprs = t["typeof"]
        parts = exprs["concat"] if isinstance(exprs, dict) and "concat" in exprs else [exprs]
        return tuple(_typeof_kind(p) for p in parts)
    raise _Bad(f"unknown set type {t!r}")


def _typeof_kind(expr: Any) -> str:
    try:
        f = _field(expr)
    except _Bad:
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


_TYPE_KIND = {
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
}


# --------------------------------------------------------------------------- expressions


_FIELD_CACHE: dict[tuple[str, ...], Field] = {}


def _field(expr: Any, family: str = "") -> Field:
    """A left-hand expression as a Field (raises _Bad for shapes nft never prints)."""
    if not isinstance(expr, dict) or len(expr) != 1:
        raise _Bad(f"bad expression {expr!r}")
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
            raise _Bad("bad payload expression")
        proto = v.get("protocol")
        fld = v.get("field")
        if proto in ("ip", "ip6") and fld in ("saddr", "daddr"):
            return Field(fld, family=4 if proto == "ip" else 6)
        if (proto, fld) in (("ip", "protocol"), ("ip6", "nexthdr")):
            return Field("l4proto", family=4 if proto == "ip" else 6)
        if fld in ("sport", "dport") and proto in _PORT_PROTOS:
            return Field(fld, proto=_PORT_PROTOS[proto])
        if proto == "th" and fld in ("sport", "dport"):
            return Field(fld)
        if proto in ("icmp", "icmpv6") and fld in ("type", "code"):
            return Field(f"icmp.{fld}", proto=1 if proto == "icmp" else 58)
        where = f"{proto} {fld}" if proto else "raw payload"
        return Field(f"unsupported:{where}")
    if k == "meta":
        key = v.get("key") if isinstance(v, dict) else None
        if key in ("iifname", "oifname", "l4proto", "mark", "pkttype", "nfproto"):
            return Field("mark" if key == "mark" else str(key))
        if key in ("iif", "oif"):
            return Field(f"{key}name")
        if key == "protocol":
            return Field("ethertype")
        return Field(f"unsupported:meta {key}")
    if k == "ct":
        if not isinstance(v, dict):
            raise _Bad("bad ct expression")
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
            raise _Bad("bad fib expression")
        flags = v.get("flags", [])
        flags = [flags] if isinstance(flags, str) else list(flags)
        result = v.get("result")
        if result == "type" and ("daddr" in flags or "saddr" in flags):
            which = "daddr" if "daddr" in flags else "saddr"
            arg = "iif" if "iif" in flags else ("oif" if "oif" in flags else None)
            return Field(f"fib.{which}.type", arg=arg)
        return Field(f"unsupported:fib {' . '.join(flags)} {result}")
    if k == "&":
        if not isinstance(v, list) or len(v) != 2:
            raise _Bad("bad & expression")
        inner = _field(v[0], family)
        mask = v[1]
        if not isinstance(mask, int):
            try:
                mask = int_value(mask)
            except (ValueError, TypeError):
                return Field("unsupported:& with a non-constant mask")
        return Field(inner.key, mask=mask, family=inner.family, proto=inner.proto, arg=inner.arg)
    if k == "numgen":
        if not isinstance(v, dict):
            raise _Bad("bad numgen expression")
        mode = v.get("mode")
        mod = v.get("mod")
        if not isinstance(mod, int) or mod < 1:
            raise _Bad("numgen needs a positive mod")
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
    raise _Bad(f"unknown expression {k!r}")


def _fields(expr: Any, family: str) -> tuple[Field, ...]:
    if isinstance(expr, dict) and "concat" in expr:
        parts = expr["concat"]
        if not isinstance(parts, list) or not parts:
            raise _Bad("bad concat expression")
        return tuple(_field(p, family) for p in parts)
    return (_field(expr, family),)


def _kind_of(f: Field) -> str:
    k = f.key
    if k in ("saddr", "daddr") or k.endswith((".saddr", ".daddr")):
        return "addr"
    if k in ("sport", "dport") or k.endswith((".sport", ".dport")):
        return "port"
    if k == "l4proto":
        return "proto"
    if k in ("iifname", "oifname", "pkttype") or k.startswith("fib."):
        return "str"
    if k == "icmp.type":
        return "icmpv6" if f.proto == 58 else "icmp"
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
    return "int"


def _atom(value: Any, kind: str) -> Atom:
    """A right-hand scalar, prefix or range as an Atom of the field's kind."""
    if isinstance(value, dict):
        if "prefix" in value:
            p = value["prefix"]
            return prefix_atom(f"{p['addr']}/{p['len']}")[1]
        if "range" in value:
            lo, hi = value["range"]
            a, b = _atom(lo, kind), _atom(hi, kind)
            if isinstance(a.lo, str) or isinstance(b.lo, str):
                raise _Bad("range of names")
            return Atom(a.lo, b.lo if b.lo != a.lo else None)
        if "elem" in value:
            return _atom(value["elem"].get("val"), kind)
        raise _Bad(f"unexpected value {value!r}")
    if isinstance(value, bool):
        return Atom(int(value))
    if kind == "addr":
        return prefix_atom(str(value))[1]
    if kind == "port":
        return Atom(port_number(value))
    if kind == "proto":
        if isinstance(value, int):
            return Atom(value)
        num = PROTO_NUMBERS.get(str(value))
        if num is None:
            raise _Bad(f"unknown protocol {value!r}")
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
            raise _Bad(f"unknown ICMP type {value!r}")
        return Atom(names[str(value)])
    if kind in ("ctstate", "ctstatus"):
        table = CT_STATE_BITS if kind == "ctstate" else CT_STATUS_BITS
        if isinstance(value, int):
            return Atom(value)
        if str(value) not in table:
            raise _Bad(f"unknown {kind} {value!r}")
        return Atom(table[str(value)])
    if kind == "ctdirection":
        return Atom(
            {"original": 0, "reply": 1}[str(value)] if isinstance(value, str) else int(value)
        )
    if kind == "nfproto":
        return Atom({"ipv4": 4, "ipv6": 6}.get(str(value), -1) if isinstance(value, str) else value)
    if kind == "ethertype":
        return Atom({"ip": 4, "ip6": 6}.get(str(value), -1) if isinstance(value, str) else value)
    if kind == "raw":
        return Atom(value if isinstance(value, int) else str(value))
    if isinstance(value, int):
        return Atom(value)
    return Atom(int_value(str(value)))


def _element(value: Any, kinds: tuple[str, ...]) -> tuple[Atom, ...]:
    if isinstance(value, dict) and "elem" in value:
        value = value["elem"].get("val")
    if isinstance(value, dict) and "concat" in value:
        parts = value["concat"]
        if len(parts) != len(kinds):
            raise _Bad("concatenation does not fit the key")
        return tuple(_atom(p, k) for p, k in zip(parts, kinds, strict=True))
    if len(kinds) != 1:
        raise _Bad("element does not fit a concatenated key")
    return (_atom(value, kinds[0]),)


def _verdict(value: Any) -> Verdict:
    if not isinstance(value, dict) or len(value) != 1:
        raise _Bad(f"expected a verdict, got {value!r}")
    ((k, v),) = value.items()
    if k in ("jump", "goto"):
        target = v.get("target") if isinstance(v, dict) else None
        if not isinstance(target, str):
            raise _Bad(f"{k} without a target")
        return Verdict(k, target)
    if k in ("accept", "drop", "continue", "return", "queue"):
        return Verdict(k)
    raise _Bad(f"unknown verdict {k!r}")


def _plain_text(value: Any) -> str:
    return value_text(value)


def _values(
    right: Any, fields: tuple[Field, ...]
) -> tuple[tuple[tuple[Atom, ...], ...], str | None]:
    """Right-hand side -> (value tuples, named set)."""
    if isinstance(right, str) and right.startswith("@"):
        return (), right[1:]
    kinds = tuple(_kind_of(f) for f in fields)
    if isinstance(right, dict) and "set" in right:
        items = right["set"]
        if not isinstance(items, list):
            items = [items]
        return tuple(_element(i, kinds) for i in items), None
    if isinstance(right, list):
        return tuple(_element(i, kinds) for i in right), None
    return (_element(right, kinds),), None


_MATCH_CACHE: dict[tuple[object, ...], Match] = {}


def _match(body: Any, family: str) -> Match:
    if not isinstance(body, dict):
        raise _Bad("match must be an object")
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
                m = Match((f,), op, ((_atom(right, _kind_of(f)),),))
                if len(_MATCH_CACHE) < 65536:
                    _MATCH_CACHE[key] = m
                return m
    fields = _fields(left, family)
    text = ""  # rendered only where a message needs it (the rule's text is rendered lazily)
    bad = [f.key.split(":", 1)[1] for f in fields if f.key.startswith("unsupported:")]
    if bad:
        text = stmt_text("match", body)
        return Match(fields, text=text, unsupported=f"{', '.join(bad)} is not modelled")
    if any(f.key.startswith("numgen.") for f in fields) and len(fields) > 1:
        return Match(fields, text=stmt_text("match", body), unsupported="numgen in a concatenation")
    values, set_name = _values(right, fields)
    flag_field = len(fields) == 1 and fields[0].key in ("ctstate", "ctstatus")
    if op == "in" and flag_field:
        bits = 0
        for (a,) in values:
            bits |= int(a.lo)
        return Match(fields, "bits", ((Atom(bits),),), text=text)
    if op == "in":
        op = "=="
    if op not in ("==", "!=", "<", ">", "<=", ">="):
        raise _Bad(f"unknown operator {op!r}")
    if op in ("<", ">", "<=", ">=") and (set_name or len(values) != 1 or len(fields) != 1):
        raise _Bad(f"operator {op} needs one value")
    return Match(fields, op, values, set_name=set_name, text=text)


def _affine(expr: Any) -> tuple[str | None, int, int]:
    """A mark expression as (source, and-mask, xor): value = (source & and) ^ xor."""
    if isinstance(expr, int) and not isinstance(expr, bool):
        return None, 0, expr & _MASK32
    if isinstance(expr, str):
        return None, 0, int_value(expr) & _MASK32
    if isinstance(expr, dict) and len(expr) == 1:
        ((k, v),) = expr.items()
        if k == "meta" and v.get("key") == "mark":
            return "mark", _MASK32, 0
        if k == "ct" and v.get("key") == "mark" and not v.get("dir"):
            return "ctmark", _MASK32, 0
        if k in ("&", "|", "^") and isinstance(v, list) and len(v) == 2:
            src, a, x = _affine(v[0])
            src2, _, m = _affine(v[1])
            if src2 is not None:
                raise _Bad("mark arithmetic with two sources")
            if k == "&":
                return src, a & m, x & m
            if k == "|":
                return src, a & ~m & _MASK32, x | m
            return src, a, x ^ m
    raise _Bad(f"mark expression not modelled: {expr!r}")


def _nat(kind: str, v: Any) -> NatSpec:
    if v is None:
        return NatSpec(kind)
    if not isinstance(v, dict):
        raise _Bad(f"{kind}: expected an object")
    flags_raw = v.get("flags", [])
    flags = tuple([flags_raw] if isinstance(flags_raw, str) else flags_raw)
    flags = tuple("random-fully" if f == "fully-random" else f for f in flags)
    addr = addr_hi = None
    unsupported = None
    a = v.get("addr")
    if isinstance(a, str):
        ip_to_int(a)
        addr = a
    elif isinstance(a, dict) and "range" in a:
        lo, hi = a["range"]
        ip_to_int(str(lo))
        ip_to_int(str(hi))
        addr, addr_hi = str(lo), str(hi)
    elif a is not None:
        unsupported = f"{kind} address from {expr_text(a)} is not modelled"
    port = port_hi = None
    p = v.get("port")
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
        return _match(v, family)
    if k in ("accept", "drop", "continue", "return"):
        return Verdict(k)
    if k in ("jump", "goto"):
        return _verdict({k: v})
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
        return _nat(k, v)
    if k == "vmap":
        if not isinstance(v, dict):
            raise _Bad("vmap must be an object")
        fields = _fields(v.get("key"), family)
        text = ""
        bad = [f.key.split(":", 1)[1] for f in fields if f.key.startswith("unsupported:")]
        if bad:
            text = stmt_text("vmap", v)
            return VerdictMap(fields, text=text, unsupported=f"{', '.join(bad)} is not modelled")
        data = v.get("data")
        if isinstance(data, str) and data.startswith("@"):
            return VerdictMap(fields, map_name=data[1:], text=text)
        if isinstance(data, dict) and "set" in data:
            kinds = tuple(_kind_of(f) for f in fields)
            elems = []
            for pair in data["set"]:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise _Bad("vmap elements must be [key, verdict] pairs")
                elems.append((_element(pair[0], kinds), _verdict(pair[1])))
            return VerdictMap(fields, tuple(elems), text=text)
        raise _Bad("vmap data must be a set or @map")
    if k == "mangle":
        if not isinstance(v, dict):
            raise _Bad("mangle must be an object")
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
        except _Bad as exc:
            return Unsupported(text, str(exc))
        if src == dest:
            return Mangle(dest, keep=a, xor=x)
        return Mangle(dest, keep=0, xor=x, src=src, src_mask=a if src else 0)
    if k in ("limit", "quota", "ct count"):
        return Match((), text=stmt_text(k, v), unsupported=f"{k}: depends on traffic so far")
    if k == "xt":
        name = v.get("name") if isinstance(v, dict) else v
        typ = v.get("type") if isinstance(v, dict) else "match"
        reason = f"iptables extension {name!r} (read the iptables-save view for this table)"
        if typ == "match":
            return Match((), text=f"xt {name}", unsupported=reason)
        return Unsupported(f"xt target {name}", reason)
    if k in ("set", "map", "flow", "secmark", "ct helper", "ct timeout", "ct expectation"):
        return Effect(k, stmt_text(k, v))
    if k in ("tproxy", "synproxy", "fwd", "dup"):
        return Unsupported(stmt_text(k, v), f"{k} is not modelled")
    raise _Bad(f"unknown statement {k!r}")


# --------------------------------------------------------------------------- text (nft syntax)


def expr_text(expr: Any) -> str:
    """A JSON expression in ``nft list`` syntax."""
    if isinstance(expr, dict) and len(expr) == 1:
        ((k, v),) = expr.items()
        if k == "payload" and isinstance(v, dict):
            if "protocol" in v:
                return f"{v['protocol']} {v.get('field')}"
            return f"@{v.get('base')},{v.get('offset')},{v.get('len')}"
        if k == "meta" and isinstance(v, dict):
            key = v.get("key")
            return str(key) if key in _BARE_META else f"meta {key}"
        if k == "ct" and isinstance(v, dict):
            parts = ["ct"]
            if v.get("dir"):
                parts.append(str(v["dir"]))
            parts.append(str(v.get("key")))
            return " ".join(parts)
        if k == "fib" and isinstance(v, dict):
            flags = v.get("flags", [])
            flags = [flags] if isinstance(flags, str) else flags
            return f"fib {' . '.join(flags)} {v.get('result')}"
        if k in ("&", "|", "^", "<<", ">>") and isinstance(v, list) and len(v) == 2:
            return f"{expr_text(v[0])} {k} {value_text(v[1], mark=True)}"
        if k == "concat" and isinstance(v, list):
            return " . ".join(expr_text(x) for x in v)
        if k == "numgen" and isinstance(v, dict):
            off = f" offset {v['offset']}" if v.get("offset") else ""
            return f"numgen {v.get('mode')} mod {v.get('mod')}{off}"
        if k in ("jhash", "symhash"):
            return f"{k} ..."
    if isinstance(expr, dict):
        return json.dumps(expr, sort_keys=True)
    return value_text(expr)


def value_text(value: Any, mark: bool = False) -> str:
    """A JSON right-hand value in ``nft list`` syntax."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "exists" if value else "missing"
    if isinstance(value, int):
        return f"0x{value:08x}" if mark else str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join(value_text(v, mark) for v in value)
    if isinstance(value, dict) and len(value) == 1:
        ((k, v),) = value.items()
        if k == "prefix":
            return f"{v.get('addr')}/{v.get('len')}"
        if k == "range":
            return f"{value_text(v[0])}-{value_text(v[1])}"
        if k == "set":
            items = v if isinstance(v, list) else [v]
            return "{ " + ", ".join(_set_item_text(i) for i in items) + " }"
        if k == "concat":
            return " . ".join(value_text(x) for x in v)
        if k == "elem" and isinstance(v, dict):
            return value_text(v.get("val"))
        if k in _VERDICT_KEYS:
            return _verdict_text(k, v)
        return expr_text(value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _set_item_text(item: Any) -> str:
    if isinstance(item, list) and len(item) == 2:
        return f"{value_text(item[0])} : {value_text(item[1])}"
    return value_text(item)


def _verdict_text(k: str, v: Any) -> str:
    if k in ("jump", "goto") and isinstance(v, dict):
        return f"{k} {v.get('target')}"
    return k


def stmt_text(k: str, v: Any) -> str:
    """A JSON statement in ``nft list`` syntax (close to what ``nft list ruleset`` prints)."""
    if k == "match" and isinstance(v, dict):
        left = v.get("left")
        right = v.get("right")
        op = v.get("op", "==")
        lt = expr_text(left)
        mark = _is_mark(left)
        rt = value_text(right, mark=mark)
        if _is_ifname(left) and isinstance(right, str) and not right.startswith("@"):
            rt = f'"{right}"'
        elif _is_ifname(left) and isinstance(right, dict) and "set" in right:
            rt = (
                "{ "
                + ", ".join(f'"{x}"' if isinstance(x, str) else value_text(x) for x in right["set"])
                + " }"
            )
        binop = isinstance(left, dict) and any(b in left for b in ("&", "|", "^"))
        if op in ("==", "in") and not binop:
            return f"{lt} {rt}"
        return f"{lt} {op} {rt}"
    if k in ("accept", "drop", "continue", "return"):
        return k
    if k in ("jump", "goto") and isinstance(v, dict):
        return f"{k} {v.get('target')}"
    if k == "counter":
        if isinstance(v, dict):
            return f"counter packets {v.get('packets', 0)} bytes {v.get('bytes', 0)}"
        return f"counter name {value_text(v)}"
    if k == "reject":
        if isinstance(v, dict) and v.get("expr") and v.get("expr") != "port-unreachable":
            return f"reject with {v.get('type')} {v.get('expr')}"
        if isinstance(v, dict) and v.get("type") == "tcp reset":
            return "reject with tcp reset"
        return "reject"
    if k in ("dnat", "snat"):
        if not isinstance(v, dict):
            return k
        fam = f" {v['family']}" if v.get("family") else ""
        addr = value_text(v.get("addr")) if v.get("addr") is not None else ""
        port = value_text(v.get("port")) if v.get("port") is not None else ""
        to = addr + (f":{port}" if port else "")
        flags = _flags_text(v.get("flags"))
        return f"{k}{fam} to {to}{flags}"
    if k in ("masquerade", "redirect"):
        if not isinstance(v, dict):
            return k
        port = f" to :{value_text(v.get('port'))}" if v.get("port") is not None else ""
        return f"{k}{port}{_flags_text(v.get('flags'))}"
    if k == "vmap" and isinstance(v, dict):
        key = v.get("key")
        data = v.get("data")
        if isinstance(data, dict) and "set" in data and _is_ifname(key):
            items = ", ".join(
                f'"{p[0]}" : {value_text(p[1])}' if isinstance(p[0], str) else _set_item_text(p)
                for p in data["set"]
            )
            return f"{expr_text(key)} vmap {{ {items} }}"
        return f"{expr_text(key)} vmap {value_text(data)}"
    if k == "mangle" and isinstance(v, dict):
        key = v.get("key")
        return f"{expr_text(key)} set {_mangle_value_text(v.get('value'), _is_mark(key))}"
    if k == "log":
        if isinstance(v, dict) and v.get("prefix") is not None:
            return f'log prefix "{v["prefix"]}"'
        return "log"
    if k == "notrack":
        return "notrack"
    if k == "queue":
        return "queue" + (
            f" num {value_text(v.get('num'))}"
            if isinstance(v, dict) and v.get("num") is not None
            else ""
        )
    if k == "limit" and isinstance(v, dict):
        return f"limit rate {v.get('rate')}/{v.get('per')}"
    if k == "xt":
        if isinstance(v, dict):
            return f"xt {v.get('type')} {v.get('name')}"
        return f"xt {v}"
    if k in ("set", "map") and isinstance(v, dict):
        return f"{k} {v.get('op')} {value_text(v.get('elem'))} {v.get(k)}"
    return f"{k} {value_text(v)}".strip()


def _mangle_value_text(value: Any, mark: bool) -> str:
    if isinstance(value, dict) and len(value) == 1:
        ((k, v),) = value.items()
        if k in ("&", "|", "^") and isinstance(v, list) and len(v) == 2:
            return f"{_mangle_value_text(v[0], mark)} {k} {value_text(v[1], mark=mark)}"
        return expr_text(value)
    return value_text(value, mark=mark)


def _flags_text(flags: Any) -> str:
    if not flags:
        return ""
    items = [flags] if isinstance(flags, str) else list(flags)
    return " " + ",".join(str(f) for f in items)


def _is_mark(expr: Any) -> bool:
    if not isinstance(expr, dict):
        return False
    if "&" in expr and isinstance(expr["&"], list) and expr["&"]:
        return _is_mark(expr["&"][0])
    if "meta" in expr and isinstance(expr["meta"], dict):
        return expr["meta"].get("key") == "mark"
    if "ct" in expr and isinstance(expr["ct"], dict):
        return expr["ct"].get("key") == "mark"
    return False


def _is_ifname(expr: Any) -> bool:
    return (
        isinstance(expr, dict)
        and isinstance(expr.get("meta"), dict)
        and expr["meta"].get("key") in ("iifname", "oifname", "iif", "oif")
    )


__all__ = ["IPTABLES_TABLES", "PKTTYPES_ALL", "ParsedNft", "expr_text", "parse", "stmt_text"]
