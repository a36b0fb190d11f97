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
from typing import Any, TypeVar

from cntrace.netfilter.model import Chain, Compiled, NamedSet, Rule, RuleForm, Table
from cntrace.netfilter.nft_expr import TYPE_KIND, Malformed, element, key_types, lower_verdict
from cntrace.netfilter.nft_statements import lower_statement
from cntrace.netfilter.nft_text import expr_text, stmt_text, value_text
from cntrace.netfilter.steps import CATCHALL, Atom, Step, Unsupported, Verdict
from cntrace.netfilter.values import RulesetError

_T = TypeVar("_T")
HOOK_NAMES = {"prerouting", "input", "forward", "output", "postrouting", "ingress", "egress"}
IPTABLES_TABLES = {"filter", "nat", "mangle", "raw", "security"}


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
    text = _strip_warnings(text)
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
    except Malformed as exc:
        index = exc.index
        line = _line_of_item(text, index) if index is not None else 1
        where = f"nftables[{index}]: " if index is not None else ""
        raise RulesetError(f"{where}{exc}", line, source=source) from None
    return out


def _strip_warnings(text: str | bytes) -> str | bytes:
    """libnftables 1.0.6 prints "warning: stmt ops map have no json callback" into the same
    buffer as the JSON for a few statements: lines before the document are not part of it."""
    head = text[:1]
    if head in ("{", b"{", "", b""):
        return text
    at = text.find(b"\n{") if isinstance(text, bytes) else text.find("\n{")
    return text[at + 1 :] if at >= 0 else text


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
        self.doc = _Document(text, source)
        self.index = 0
        self.tables: dict[tuple[str, str], dict[str, Any]] = {}
        self.order: list[tuple[str, str]] = []

    def build(self, items: list[Any]) -> None:
        for index, item in enumerate(items):
            self.index = index
            try:
                self.item(item)
            except Malformed as exc:
                exc.index = index
                raise
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
                bad = Malformed(f"{type(exc).__name__}: {exc}")
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
                    Rule("nftables", key[0], key[1], name, pos, handle, counters, None, form)
                    for pos, (form, handle, counters) in enumerate(t["rules"].get(name, []), 1)
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
                    devices=c.get("dev", ()),
                )
            if key[1] in IPTABLES_TABLES and key[0] in ("ip", "ip6") and t["xt"]:
                self.out.warnings.append(
                    f"nft table {key[0]} {key[1]} holds iptables-nft rules (xt extensions) but no "
                    "iptables-save view was given; rules using extensions are uncertain"
                )
            if t["dormant"]:
                self.out.ignored.append(
                    f"nft table {key[0]} {key[1]} is dormant: its base chains are not registered, "
                    "so no packet meets its rules"
                )
            for c in chains.values():
                if c.hook in ("ingress", "egress") and c.rules and not c.devices:
                    self.out.warnings.append(
                        f"{key[0]} {key[1]} {c.name}: the device of this {c.hook} chain is not "
                        "known, so it is never evaluated"
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
                    dormant=t["dormant"],
                )
            )

    def table(self, family: Any, name: Any) -> dict[str, Any]:
        if not isinstance(family, str) or not isinstance(name, str):
            raise Malformed("family and table must be strings")
        key = (family, name)
        t = self.tables.get(key)
        if t is None:
            t = {
                "chains": {},
                "rules": {},
                "sets": {},
                "handle": None,
                "comment": None,
                "dormant": False,
                "xt": False,
            }
            self.tables[key] = t
            self.order.append(key)
        return t

    def item(self, item: Any) -> None:
        if not isinstance(item, dict) or len(item) != 1:
            raise Malformed("each element must be an object with one key")
        ((kind, body),) = item.items()
        if kind == "metainfo":
            if isinstance(body, dict):
                self.out.version = str(body.get("version")) if body.get("version") else None
            return
        if not isinstance(body, dict):
            raise Malformed(f"{kind}: expected an object")
        if kind == "table":
            t = self.table(body.get("family"), body.get("name"))
            t["handle"] = _opt_int(body.get("handle"))
            t["comment"] = body.get("comment") if isinstance(body.get("comment"), str) else None
            flags = body.get("flags")
            t["dormant"] = "dormant" in (flags if isinstance(flags, list) else [flags])
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
            raise Malformed("chain without a name")
        hook = body.get("hook")
        if hook is not None and hook not in HOOK_NAMES:
            raise Malformed(f"chain {name}: unknown hook {hook!r}")
        prio = body.get("prio")
        if hook is not None and not isinstance(prio, int):
            raise Malformed(f"chain {name}: base chain without a numeric priority")
        policy = body.get("policy", "accept" if hook else None)
        if policy not in (None, "accept", "drop"):
            raise Malformed(f"chain {name}: unknown policy {policy!r}")
        dev = body.get("dev", ())
        devices: tuple[str, ...] = (dev,) if isinstance(dev, str) else ()
        if isinstance(dev, list):
            devices = tuple(d for d in dev if isinstance(d, str))
        t["chains"][name] = {
            "dev": devices,
            "hook": hook,
            "prio": prio if hook else None,
            "type": body.get("type"),
            "policy": policy,
            "handle": _opt_int(body.get("handle")),
        }
        t["rules"].setdefault(name, [])

    def rule(self, body: dict[str, Any]) -> None:
        """Record a rule cheaply; its statements are lowered (and its text rendered) on use."""
        family: Any = body.get("family")  # a str once its table is found
        try:
            t = self.tables[(family, body.get("table"))]  # type: ignore[index]
        except (KeyError, TypeError):
            t = self.table(family, body.get("table"))
        chain = body.get("chain")
        rules = t["rules"].get(chain) if isinstance(chain, str) else None
        if rules is None:
            raise Malformed(f"rule for unknown chain {chain!r}")
        exprs = body.get("expr")
        if type(exprs) is not list:
            raise Malformed(f"rule in {chain}: expr must be a list")
        counters = None
        for e in exprs:
            if type(e) is str:
                continue  # a statement nft prints as text (e.g. "update @m { ... }"): opaque
            if type(e) is not dict or len(e) != 1:
                raise Malformed(f"rule in {chain}: each statement must be an object with one key")
            c = e.get("counter")
            if c is not None:
                if counters is None and type(c) is dict:
                    p, b = c.get("packets", 0), c.get("bytes", 0)
                    if type(p) is not int or type(b) is not int:
                        raise Malformed(f"rule in {chain}: counter values must be numbers")
                    counters = (p, b)
            elif "xt" in e:
                t["xt"] = True
        comment = body.get("comment")
        if type(comment) is not str:
            comment = None
        handle = body.get("handle")
        if type(handle) is not int or handle < 0:  # nft never prints one; a damaged file may
            handle = None
        rules.append((NftForm(exprs, self.index, family, comment, self.doc), handle, counters))

    def named_set(self, kind: str, body: dict[str, Any]) -> None:
        t = self.table(body.get("family"), body.get("table"))
        name = body.get("name")
        if not isinstance(name, str):
            raise Malformed(f"{kind} without a name")
        try:
            types = key_types(body.get("type"))
        except Malformed:
            types = ("raw",)
        kinds = tuple(TYPE_KIND.get(k, "raw") for k in types)
        elems: list[tuple[Atom, ...]] = []
        data: list[Verdict | str] = []
        values: list[tuple[Atom, ...] | None] = []
        map_type = body.get("map") if kind == "map" else None
        data_kinds = _data_kinds(map_type)
        try:
            for el in body.get("elem", []) or []:
                if kind == "map":
                    if not isinstance(el, list) or len(el) != 2:
                        raise Malformed(f"map {name}: elements must be [key, value] pairs")
                    key, val = el
                    elems.append(element(key, kinds))
                    data.append(lower_verdict(val) if map_type == "verdict" else value_text(val))
                    values.append(_data_value(val, data_kinds))
                else:
                    elems.append(element(el, kinds))
        except (Malformed, ValueError, KeyError, TypeError, IndexError) as exc:
            # one element cntrace cannot read makes this set unknown, not the ruleset unreadable
            self.out.warnings.append(f"{kind} {name}: contents not read ({exc})")
            elements: tuple[tuple[Atom, ...], ...] | None = None
        else:
            elements = _catchall_last(elems, data)
        flags = body.get("flags", [])
        t["sets"][name] = NamedSet(
            name=name,
            family=str(body.get("family")),
            table=str(body.get("table")),
            key_types=types,
            elements=elements,
            data=tuple(data) if elements is None else _data_order(elems, data),
            values=() if elements is None else _data_order(elems, values),
            map_type=str(map_type) if isinstance(map_type, str) else None,
            flags=tuple(flags) if isinstance(flags, list) else (str(flags),),
            handle=_opt_int(body.get("handle")),
        )


@dataclass(frozen=True, slots=True)
class _Document:
    """The text a rule came from, for the line of an error found when it is compiled."""

    text: str | bytes
    source: str


class NftForm(RuleForm):
    """An nft rule as recorded: its JSON statements, lowered and rendered on first use."""

    __slots__ = ("comment", "doc", "exprs", "family", "index")

    def __init__(
        self, exprs: list[Any], index: int, family: str, comment: str | None, doc: _Document
    ) -> None:
        self._compiled = None
        self._text = None
        self.exprs = exprs
        self.index = index  # position in the "nftables" array
        self.family = family
        self.comment = comment
        self.doc = doc

    def _compile(self) -> Compiled:
        """Lower the rule's statements (once, on first use)."""
        index, doc = self.index, self.doc
        try:
            steps = tuple(_lower_one(e, self.family) for e in self.exprs)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as exc:
            raise RulesetError(
                f"nftables[{index}]: {type(exc).__name__}: {exc}",
                _line_of_item(doc.text, index),
                source=doc.source,
            ) from None
        return Compiled(steps, self.comment)

    def _render(self) -> str:
        """The rule in ``nft list`` syntax (rendered only when someone reads it)."""
        try:
            texts = [
                e if isinstance(e, str) else stmt_text(k, v)
                for e in self.exprs
                for k, v in ([("", None)] if isinstance(e, str) else e.items())
            ]
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError):
            texts = [json.dumps(self.exprs)]
        text = " ".join(x for x in texts if x)
        if self.comment:
            text += f' comment "{self.comment}"'
        return text

    def _source_text(self) -> str:
        return repr(self.exprs)


def _lower_one(e: Any, family: str) -> Step:
    """One statement as a Step; a construct not understood is an opaque, uncertain step naming it.

    One unknown statement must not make the whole ruleset unreadable: the rest still evaluates.
    """
    if isinstance(e, str):
        return Unsupported(e, f"statement {e!r} is not modelled (nft prints it only as text)")
    ((k, v),) = e.items()
    try:
        return lower_statement(k, v, family)
    except Malformed as exc:
        try:
            text = stmt_text(k, v)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError):
            text = json.dumps(e)
        return Unsupported(text or k, f"not understood: {exc}")


def _is_catchall(atoms: tuple[Atom, ...]) -> bool:
    return all(a is CATCHALL for a in atoms)


def _catchall_last(
    elems: list[tuple[Atom, ...]], data: list[Verdict | str]
) -> tuple[tuple[Atom, ...], ...]:
    """The elements with the catch-all ``*`` last: the kernel tries it only after the others."""
    return tuple(sorted(elems, key=_is_catchall))


def _data_kinds(map_type: Any) -> tuple[str, ...] | None:
    """The atom kinds of a map's values (None: a verdict map, or a type not read)."""
    if map_type is None or map_type == "verdict":
        return None
    try:
        return tuple(TYPE_KIND.get(k, "int") for k in key_types(map_type))
    except Malformed:
        return None


def _data_value(val: Any, kinds: tuple[str, ...] | None) -> tuple[Atom, ...] | None:
    """One map value as atoms (addresses, ports, marks, ranges), None when not read."""
    if kinds is None:
        return None
    try:
        return element(val, kinds)
    except (Malformed, ValueError, KeyError, TypeError, IndexError):
        return None


def _data_order(elems: list[tuple[Atom, ...]], data: list[_T]) -> tuple[_T, ...]:
    if not data:
        return ()
    pairs = sorted(zip(elems, data, strict=False), key=lambda p: _is_catchall(p[0]))
    return tuple(d for _, d in pairs)


def _opt_int(v: Any) -> int | None:
    """A handle or counter: a non-negative int (anything else is a damaged document)."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


__all__ = ["IPTABLES_TABLES", "ParsedNft", "expr_text", "parse", "stmt_text"]
