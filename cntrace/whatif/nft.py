"""``nft`` commands and ``nft -f`` files, applied to the ``nft -j list ruleset`` document a
namespace's Ruleset holds.

nft's text syntax is turned into the JSON ``nft -j`` would list for it, so the existing JSON parser
(cntrace.netfilter.nft_json) reads the result like any recorded ruleset. The common rule language
is covered: payload, meta, ct and fib matches with values, prefixes, ranges, lists and anonymous
sets; counter, verdicts, jump/goto, reject, log, NAT, comment, mark setting. Anything else is
refused with one line rather than guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from cntrace.errors import BadInput
from cntrace.model import Netns, Snapshot
from cntrace.whatif.change import Reader, with_netns
from cntrace.whatif.nft_rule import Rule, number, tokens, unquote

FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class NftOp:
    """One or more nft commands (a file is a list of them), each a (verb, object, args) triple."""

    commands: tuple[tuple[str, str, tuple[str, ...]], ...]
    kind: str = "nft"
    needs_netns: bool = True

    def apply(self, snap: Snapshot, ns: Netns | None) -> Snapshot:
        assert ns is not None
        doc = _Doc(ns)
        for verb, obj, args in self.commands:
            doc.run(verb, obj, list(args))
        return with_netns(snap, replace(ns, ruleset=replace(ns.ruleset, nft_json=doc.render())))


class _Doc:
    def __init__(self, ns: Netns) -> None:
        text = ns.ruleset.nft_json
        self.items: list[dict[str, Any]] = []
        if text:
            try:
                self.items = list(json.loads(text).get("nftables", []))
            except (ValueError, AttributeError):
                raise BadInput(f"what-if: the nft ruleset of {ns.label} is not readable") from None
        if not self.items:
            self.items = [{"metainfo": {"json_schema_version": 1}}]
        self.iptables = _iptables_tables(ns)

    def render(self) -> str:
        return json.dumps({"nftables": self.items})

    def _of(self, kind: str, family: str, table: str) -> list[int]:
        return [
            k
            for k, it in enumerate(self.items)
            if kind in it and it[kind].get("family") == family
            and it[kind].get("table" if kind != "table" else "name") == table
        ]  # fmt: skip

    def _table(self, family: str, name: str) -> int | None:
        found = self._of("table", family, name)
        return found[0] if found else None

    def _next_handle(self, family: str, table: str) -> int:
        handles = [
            it[k].get("handle", 0)
            for it in self.items
            for k in ("chain", "rule", "set", "map")
            if k in it and it[k].get("family") == family and it[k].get("table") == table
        ]
        return int(max([0, *handles])) + 1

    def _chain(self, family: str, table: str, name: str) -> int | None:
        for k in self._of("chain", family, table):
            if self.items[k]["chain"]["name"] == name:
                return k
        return None

    def _rules(self, family: str, table: str, chain: str) -> list[int]:
        return [
            k for k in self._of("rule", family, table) if self.items[k]["rule"]["chain"] == chain
        ]

    def run(self, verb: str, obj: str, args: list[str]) -> None:
        if obj == "ruleset":
            if verb != "flush":
                raise BadInput(f"what-if: nft {verb} ruleset changes nothing")
            self.items = [it for it in self.items if "metainfo" in it]
            return
        family = args.pop(0) if args and args[0] in FAMILIES else "ip"
        if not args:
            raise BadInput(f"what-if: nft {verb} {obj} needs a name")
        table = args.pop(0)
        if (family, table) in self.iptables:
            raise BadInput(
                f"what-if: table {family} {table} is managed by iptables-nft here; "
                "write the change as an iptables command"
            )
        if obj == "table":
            self.table_cmd(verb, family, table)
            return
        if self._table(family, table) is None:
            raise BadInput(f"what-if: nft: no table {family} {table}")
        if obj == "chain":
            self.chain_cmd(verb, family, table, args)
        elif obj == "rule":
            self.rule_cmd(verb, family, table, args)
        elif obj == "element":
            self.element_cmd(verb, family, table, args)
        else:
            raise BadInput(f"what-if: nft {verb} {obj} is not supported")

    def table_cmd(self, verb: str, family: str, table: str) -> None:
        at = self._table(family, table)
        if verb in ("add", "create"):
            if at is None:
                self.items.append({"table": {"family": family, "name": table, "handle": 0}})
            elif verb == "create":
                raise BadInput(f"what-if: nft create table {family} {table}: it exists")
        elif verb in ("delete", "destroy", "flush"):
            if at is None:
                if verb == "destroy":
                    return
                raise BadInput(f"what-if: nft: no table {family} {table}")
            kinds = ("rule",) if verb == "flush" else ("rule", "chain", "set", "map", "table")
            self.items = [
                it
                for it in self.items
                if not any(
                    k in it and it[k].get("family") == family
                    and it[k].get("table" if k != "table" else "name") == table
                    for k in kinds
                )
            ]  # fmt: skip
        else:
            raise BadInput(f"what-if: nft {verb} table is not supported")

    def chain_cmd(self, verb: str, family: str, table: str, args: list[str]) -> None:
        if not args:
            raise BadInput("what-if: nft chain needs a name")
        name, spec = args[0], args[1:]
        at = self._chain(family, table, name)
        if verb in ("add", "create"):
            body: dict[str, Any] = {"family": family, "table": table, "name": name}
            body.update(_chain_spec(spec))
            if at is None:
                body["handle"] = self._next_handle(family, table)
                self.items.append({"chain": body})
            elif verb == "create":
                raise BadInput(f"what-if: nft create chain {name}: it exists")
            else:
                self.items[at]["chain"].update(body)
            return
        if at is None:
            if verb == "destroy":
                return
            raise BadInput(f"what-if: nft: no chain {family} {table} {name}")
        rules = set(self._rules(family, table, name))
        if verb == "flush":
            self.items = [it for k, it in enumerate(self.items) if k not in rules]
        elif verb in ("delete", "destroy"):
            if rules:
                raise BadInput(f"what-if: nft delete chain {name}: it is not empty")
            del self.items[at]
        else:
            raise BadInput(f"what-if: nft {verb} chain is not supported")

    def rule_cmd(self, verb: str, family: str, table: str, args: list[str]) -> None:
        if not args:
            raise BadInput("what-if: nft rule needs a chain")
        chain, rest = args[0], args[1:]
        if self._chain(family, table, chain) is None:
            raise BadInput(f"what-if: nft: no chain {family} {table} {chain}")
        rules = self._rules(family, table, chain)
        where: tuple[str, int] | None = None
        if len(rest) >= 2 and rest[0] in ("position", "handle", "index"):
            where = (rest[0], number(rest[1]))
            rest = rest[2:]
        if verb in ("delete", "destroy", "replace"):
            if where is None or where[0] != "handle":
                raise BadInput(f"what-if: nft {verb} rule needs `handle N`")
            hit = [k for k in rules if self.items[k]["rule"].get("handle") == where[1]]
            if not hit:
                raise BadInput(f"what-if: nft {verb} rule: no rule with handle {where[1]}")
            if verb == "replace":
                old = self.items[hit[0]]["rule"]
                self.items[hit[0]] = {"rule": _rule_item(family, table, chain, old["handle"], rest)}
            else:
                del self.items[hit[0]]
            return
        if verb not in ("add", "insert", "create"):
            raise BadInput(f"what-if: nft {verb} rule is not supported")
        item = {"rule": _rule_item(family, table, chain, self._next_handle(family, table), rest)}
        if where is not None and where[0] in ("position", "handle"):
            hit = [k for k in rules if self.items[k]["rule"].get("handle") == where[1]]
            if not hit:
                raise BadInput(f"what-if: nft {verb} rule: no rule with handle {where[1]}")
            at = hit[0] + (1 if verb != "insert" else 0)
        elif where is not None:  # index N: before (insert) or after (add) the N-th rule
            if not 0 <= where[1] < len(rules):
                raise BadInput(f"what-if: nft {verb} rule: no rule at index {where[1]}")
            at = rules[where[1]] + (1 if verb != "insert" else 0)
        elif verb == "insert" and rules:
            at = rules[0]
        elif rules:
            at = rules[-1] + 1
        else:
            at = len(self.items)
        self.items.insert(at, item)

    def element_cmd(self, verb: str, family: str, table: str, args: list[str]) -> None:
        if not args or verb not in ("add", "delete", "create"):
            raise BadInput("what-if: nft add|delete element FAMILY TABLE SET { ELEMENTS }")
        name, rest = args[0], args[1:]
        for it in self.items:
            for k in ("set", "map"):
                body = it.get(k)
                if (
                    body
                    and body.get("family") == family
                    and body.get("table") == table
                    and body.get("name") == name
                ):
                    parser = Rule(rest)
                    values = parser.value({})
                    elems = (
                        values["set"] if isinstance(values, dict) and "set" in values else [values]
                    )
                    have = list(body.get("elem", []))
                    if verb == "delete":
                        have = [e for e in have if e not in elems]
                    else:
                        have += [e for e in elems if e not in have]
                    body["elem"] = have
                    return
        raise BadInput(f"what-if: nft: no set {family} {table} {name}")


def _rule_item(
    family: str, table: str, chain: str, handle: int, words: list[str]
) -> dict[str, Any]:
    parser = Rule([w for w in words if w != "\n"], family)
    expr = parser.parse()
    if not expr:
        raise BadInput("what-if: nft: an empty rule")
    body: dict[str, Any] = {"family": family, "table": table, "chain": chain, "handle": handle}
    if parser.comment is not None:
        body["comment"] = parser.comment
    body["expr"] = expr
    return body


def _chain_spec(words: list[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    ws = [w for w in words if w not in ("{", "}", ";", "\n")]
    i = 0
    while i < len(ws):
        w = ws[i]
        if w in ("type", "hook", "priority", "policy") and i + 1 < len(ws):
            value = ws[i + 1]
            if w == "priority":
                spec["prio"] = _priority(value, ws[i + 2 : i + 4])
                if i + 3 < len(ws) and ws[i + 2] in ("+", "-"):
                    i += 2
            elif w == "hook":
                spec["hook"] = value
                if i + 3 < len(ws) and ws[i + 2] == "device":
                    spec["dev"] = unquote(ws[i + 3])
                    i += 2
            else:
                spec[w] = value
            i += 2
        elif w == "comment" and i + 1 < len(ws):
            i += 2
        else:
            raise BadInput(f"what-if: nft chain: {w!r} is not supported")
    if "hook" in spec:
        spec.setdefault("type", "filter")
        spec.setdefault("policy", "accept")
    return spec


_NAMED_PRIO = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50,
               "srcnat": 100}  # fmt: skip


def _priority(value: str, after: list[str]) -> int:
    if value.lstrip("-").isdigit():
        return int(value)
    base = _NAMED_PRIO.get(value)
    if base is None:
        raise BadInput(f"what-if: nft: unknown priority {value!r}")
    if len(after) == 2 and after[0] in ("+", "-") and after[1].isdigit():
        return base + int(after[1]) * (1 if after[0] == "+" else -1)
    return base


def _iptables_tables(ns: Netns) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for attr, family in (("iptables_nft", "ip"), ("ip6tables_nft", "ip6")):
        text = getattr(ns.ruleset, attr) or ""
        out.update((family, line[1:].strip()) for line in text.split("\n") if line.startswith("*"))
    return out


# --------------------------------------------------------------------------- parsing


_VERBS = ("add", "create", "insert", "replace", "delete", "destroy", "flush")
_OBJECTS = ("table", "chain", "rule", "element", "ruleset", "set", "map")


def _commands(toks: list[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """Top-level statements: commands, and ``table F N { ... }`` blocks."""
    out: list[tuple[str, str, tuple[str, ...]]] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t in ("\n", ";"):
            i += 1
            continue
        if t == "table" or (
            t in ("add", "create") and toks[i + 1 : i + 2] == ["table"] and "{" in _line(toks, i)
        ):
            if t != "table":
                i += 1
            i = _table_block(toks, i, out)
            continue
        stmt, i = _statement(toks, i)
        if len(stmt) < 2 or stmt[0] not in _VERBS or stmt[1] not in _OBJECTS:
            raise BadInput(f"what-if: nft: {' '.join(stmt)!r} is not a change cntrace models")
        out.append((stmt[0], stmt[1], tuple(stmt[2:])))
    return out


def _line(toks: list[str], i: int) -> list[str]:
    out = []
    while i < len(toks) and toks[i] != "\n":
        out.append(toks[i])
        i += 1
    return out


def _statement(toks: list[str], i: int) -> tuple[list[str], int]:
    """Tokens up to the end of the line, `;` or an unopened `}` (left for the caller), braces
    kept together (a chain spec, a set)."""
    out: list[str] = []
    depth = 0
    while i < len(toks):
        t = toks[i]
        if depth == 0 and t in ("\n", ";"):
            return out, i + 1
        if depth == 0 and t == "}":
            return out, i
        depth += {"{": 1, "}": -1}.get(t, 0)
        out.append(t)
        i += 1
    return out, i


def _table_block(toks: list[str], i: int, out: list[tuple[str, str, tuple[str, ...]]]) -> int:
    # table [FAMILY] NAME { chain NAME { ...; rules } ... }
    i += 1
    head: list[str] = []
    while i < len(toks) and toks[i] != "{":
        head.append(toks[i])
        i += 1
    if i >= len(toks) or len(head) not in (1, 2):
        raise BadInput("what-if: nft: table FAMILY NAME { ... }")
    out.append(("add", "table", tuple(head)))
    i += 1
    while i < len(toks) and toks[i] != "}":
        t = toks[i]
        if t in ("\n", ";"):
            i += 1
            continue
        if t != "chain" or i + 2 >= len(toks) or toks[i + 2] != "{":
            raise BadInput(f"what-if: nft: {t!r} inside a table is not supported (chains only)")
        name = toks[i + 1]
        i += 3
        spec: list[str] = []
        rules: list[list[str]] = []
        while i < len(toks) and toks[i] != "}":
            stmt, i = _statement(toks, i)
            if not stmt:
                continue
            if stmt[0] in ("type", "policy"):
                spec += stmt
            else:
                rules.append(stmt)
        i += 1
        out.append(("add", "chain", (*head, name, *spec)))
        out.extend(("add", "rule", (*head, name, *r)) for r in rules)
    return i + 1


def parse_command(words: list[str], read: Reader) -> NftOp:
    args = list(words)
    while args and args[0].startswith("-") and args[0] not in ("-f", "--file"):
        if args[0] in ("-c", "--check", "-j", "--json", "-e", "--echo", "-a", "--handle"):
            args = args[1:]
            continue
        raise BadInput(f"what-if: nft {args[0]} is not supported")
    if args[:1] in (["-f"], ["--file"]):
        if len(args) < 2:
            raise BadInput("what-if: nft -f FILE")
        return parse_text(read(args[1]))
    return parse_text(" ".join(_requote(w) for w in args))


def _requote(word: str) -> str:
    if word and (any(c.isspace() for c in word) or word == ""):
        return '"' + word.replace('"', '\\"') + '"'
    return word


def parse_text(text: str) -> NftOp:
    cmds = _commands(tokens(text))
    if not cmds:
        raise BadInput("what-if: nft: no command")
    # Lower each rule once now, so a bad rule fails at parse time with its text.
    for verb, obj, args in cmds:
        if obj == "rule" and verb in ("add", "insert", "create", "replace"):
            rest = list(args[1:] if args and args[0] in FAMILIES else args)[2:]
            if rest[:1] in (["position"], ["handle"], ["index"]):
                rest = rest[2:]
            Rule([w for w in rest if w != "\n"]).parse()
    return NftOp(tuple(cmds))
