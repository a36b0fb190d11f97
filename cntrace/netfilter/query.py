"""Questions about a ruleset that need no packet: which hooks reach a chain, which rules mention X.

``rules_touching`` is how discovery attributes rules to a container (the DNAT of its published
ports, the MASQUERADE/SNAT of its egress, the filter rules naming its address or bridge) and what
``cntrace rules <container>`` lists.
"""

from __future__ import annotations

from collections.abc import Iterable

from cntrace.model import RuleRef
from cntrace.netfilter.model import HOOKS, Chain, Netfilter, Rule, Table
from cntrace.netfilter.steps import Atom, Match, NatSpec, Verdict, VerdictMap
from cntrace.netfilter.values import ip_to_int

_ADDR_KEYS = {
    "saddr",
    "daddr",
    "ct.orig.saddr",
    "ct.orig.daddr",
    "ct.reply.saddr",
    "ct.reply.daddr",
}
_IFACE_KEYS = {"iifname", "oifname", "physdev.in", "physdev.out"}
_PORT_KEYS = {"sport", "dport", "port", "ct.orig.dport", "ct.orig.sport"}
# A prefix this wide (or wider) covers too much to say it "touches" one address.
_WIDEST = {4: 1 << 24, 6: 1 << 112}


def _targets(chain: Chain, table: Table) -> set[str]:
    out: set[str] = set()
    for rule in chain.rules:
        for step in rule.steps:
            if isinstance(step, Verdict) and step.target:
                out.add(step.target)
            elif isinstance(step, VerdictMap):
                if step.map_name is not None:
                    named = table.sets.get(step.map_name)
                    data = named.data if named is not None else ()
                    out.update(d.target for d in data if isinstance(d, Verdict) and d.target)
                out.update(v.target for _, v in step.elements if v.target)
    return out


def hooks_reaching(nf: Netfilter) -> dict[tuple[str, str, str, str], list[str]]:
    """For every chain (backend, family, table, name): the hooks whose base chains reach it."""
    reach: dict[tuple[str, str, str, str], list[str]] = {}
    for table in nf.tables:
        for base in table.chains.values() if not table.dormant else ():
            if base.hook not in HOOKS:
                continue
            hook = str(base.hook)
            todo = [base]
            seen: set[str] = set()
            while todo:
                c = todo.pop()
                if c.name in seen:
                    continue
                seen.add(c.name)
                hooks = reach.setdefault((c.backend, c.family, c.table, c.name), [])
                if hook not in hooks:
                    hooks.append(hook)
                for name in _targets(c, table):
                    nxt = table.chains.get(name)
                    if nxt is not None:
                        todo.append(nxt)
    for hooks in reach.values():
        hooks.sort(key=HOOKS.index)
    return reach


def rules_by_hook(nf: Netfilter) -> dict[str, list[Rule]]:
    """Every rule under each hook that can reach it (a chain reached from two hooks shows twice)."""
    reach = hooks_reaching(nf)
    out: dict[str, list[Rule]] = {h: [] for h in HOOKS}
    for hook in HOOKS:
        for ipver in (4, 6):
            for base in nf.base_chains(hook, ipver):
                for rule in _walk_rules(nf, base, reach, hook):
                    if rule not in out[hook]:
                        out[hook].append(rule)
    return out


def _walk_rules(
    nf: Netfilter, base: Chain, reach: dict[tuple[str, str, str, str], list[str]], hook: str
) -> list[Rule]:
    """Rules of a base chain followed by those of the chains it reaches (first reached first)."""
    table = nf.table_of(base)
    ordered: list[Rule] = []
    seen: set[str] = set()
    todo = [base]
    while todo:
        c = todo.pop(0)
        if c.name in seen:
            continue
        seen.add(c.name)
        ordered.extend(c.rules)
        for name in sorted(_targets(c, table)):
            nxt = table.chains.get(name)
            if nxt is not None and nxt.name not in seen:
                todo.append(nxt)
    return ordered


def rules_touching(
    nf: Netfilter,
    *,
    addresses: Iterable[str] = (),
    interfaces: Iterable[str] = (),
    ports: Iterable[int] = (),
) -> dict[str, list[RuleRef]]:
    """Rules that mention any of these addresses, interfaces or ports, by hook.

    An address counts when a positive match covers it with a prefix no wider than /8 (IPv4) or
    /16 (IPv6), when any match names exactly that address, when a named set or map key holds it,
    or when NAT translates to it. Interfaces count in any match (negated too: ``! -i docker0``
    is about docker0) and as verdict-map keys; ports in port matches, map keys and NAT targets.
    """
    addrs: list[tuple[int, int, str]] = []
    for a in addresses:
        try:
            ver, value = ip_to_int(a)
        except ValueError:
            continue
        addrs.append((ver, value, a))
    names = list(interfaces)
    port_set = set(ports)
    reach = hooks_reaching(nf)
    out: dict[str, list[RuleRef]] = {}
    for table in nf.tables:
        for chain in table.chains.values():
            hooks = reach.get((chain.backend, chain.family, chain.table, chain.name))
            if not hooks:
                continue
            for rule in chain.rules:
                if _touches(rule, table, addrs, names, port_set):
                    ref = rule.ref()
                    for h in hooks:
                        out.setdefault(h, []).append(ref)
    return {h: out[h] for h in HOOKS if h in out}


def _atom_has_addr(atom: Atom, ver: int, value: int, exact_only: bool) -> bool:
    if isinstance(atom.lo, str) or not atom.contains(value):
        return False
    if atom.hi is None:
        return True
    if exact_only:
        return False
    return (atom.hi - atom.lo + 1) <= _WIDEST[ver]


def _touches(
    rule: Rule,
    table: Table,
    addrs: list[tuple[int, int, str]],
    names: list[str],
    ports: set[int],
) -> bool:
    for step in rule.steps:
        if isinstance(step, Match):
            if _match_touches(step, table, addrs, names, ports):
                return True
        elif isinstance(step, NatSpec):
            if step.addr and any(a == step.addr for _, _, a in addrs):
                return True
            if step.port is not None and any(
                step.port <= p <= (step.port_hi or step.port) for p in ports
            ):
                return True
        elif isinstance(step, VerdictMap):
            elements: list[tuple[Atom, ...]] = [k for k, _ in step.elements]
            if step.map_name is not None:
                named = table.sets.get(step.map_name)
                if named is not None and named.elements:
                    elements.extend(named.elements)
            if _elements_touch(step.fields, elements, addrs, names, ports):
                return True
    return False


def _match_touches(
    m: Match,
    table: Table,
    addrs: list[tuple[int, int, str]],
    names: list[str],
    ports: set[int],
) -> bool:
    values: list[tuple[Atom, ...]] = list(m.values)
    if m.set_name is not None:
        named = table.sets.get(m.set_name)
        if named is not None and named.elements:
            values.extend(named.elements)
    return _elements_touch(m.fields, values, addrs, names, ports, negated=m.op == "!=")


def _elements_touch(
    fields: tuple[object, ...],
    values: list[tuple[Atom, ...]],
    addrs: list[tuple[int, int, str]],
    names: list[str],
    ports: set[int],
    negated: bool = False,
) -> bool:
    for i, f in enumerate(fields):
        key = getattr(f, "key", "")
        for tup in values:
            if i >= len(tup):
                continue
            atom = tup[i]
            if key in _ADDR_KEYS and addrs:
                if any(_atom_has_addr(atom, v, x, negated) for v, x, _ in addrs):
                    return True
            elif key in _IFACE_KEYS and names:
                if isinstance(atom.lo, str) and any(atom.contains(n) for n in names):
                    return True
            elif (
                key in _PORT_KEYS
                and ports
                and not negated
                and not isinstance(atom.lo, str)
                and any(atom.contains(p) for p in ports)
            ):
                return True
    return False
