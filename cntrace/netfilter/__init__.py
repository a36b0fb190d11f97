"""The netfilter model: parse every firewall back end of a namespace and walk packets through it.

Public API (for the path predictor, discovery and ``cntrace rules``)::

    load(ruleset) -> Netfilter                 # parse all back ends; cached per Ruleset
    facts_for(netns) -> NetnsFacts             # local addresses and interfaces, for matches
    evaluate_hook(nf, hook, packet, facts, iif=..., oif=...) -> HookResult
    walk(nf, packet, facts, kind=..., iif=..., oif=..., route=...) -> Walk
    rules_touching(nf, addresses=..., interfaces=..., ports=...) -> {hook: [RuleRef]}

All of it is pure: it reads a Snapshot's values, never the system.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from cntrace.model import Netns, Ruleset
from cntrace.netfilter import ipset as _ipset
from cntrace.netfilter import iptables_save, nft_json, stateful
from cntrace.netfilter.evaluate import evaluate_hook, walk
from cntrace.netfilter.model import NamedSet, Netfilter, Table
from cntrace.netfilter.query import hooks_reaching, rules_by_hook, rules_touching
from cntrace.netfilter.results import ChainVisit, Conntrack, HookResult, Nat, NetnsFacts, Walk
from cntrace.netfilter.values import RulesetError, no_gc

__all__ = [
    "ChainVisit",
    "Conntrack",
    "HookResult",
    "Nat",
    "Netfilter",
    "NetnsFacts",
    "RulesetError",
    "Walk",
    "evaluate_hook",
    "facts_for",
    "hooks_reaching",
    "load",
    "rules_by_hook",
    "rules_touching",
    "walk",
]

_SOURCES = (
    ("iptables_legacy", "iptables-legacy", "ip"),
    ("ip6tables_legacy", "iptables-legacy", "ip6"),
    ("iptables_nft", "iptables-nft", "ip"),
    ("ip6tables_nft", "iptables-nft", "ip6"),
)


def load(ruleset: Ruleset) -> Netfilter:
    """Parse every back end of ``ruleset`` into one model (cached: Rulesets never change).

    Raises RulesetError (a BadInput) with the source and line number when a text is malformed.
    """
    return _load(ruleset)


@lru_cache(maxsize=256)
def _load(ruleset: Ruleset) -> Netfilter:
    with no_gc():
        return _parse_all(ruleset)


def _parse_all(ruleset: Ruleset) -> Netfilter:
    tables: list[Table] = []
    warnings: list[str] = [f"while reading the ruleset: {e}" for e in ruleset.errors]
    skip: set[tuple[str, str]] = set()
    with_rules: dict[str, int] = {}
    for attr, backend, family in _SOURCES:
        text = getattr(ruleset, attr)
        if not text:
            continue
        parsed = iptables_save.parse(text, backend=backend, family=family, source=attr)
        tables.extend(parsed.tables)
        warnings.extend(parsed.warnings)
        count = sum(len(c.rules) for t in parsed.tables for c in t.chains.values())
        with_rules[parsed.backend] = with_rules.get(parsed.backend, 0) + count
        if parsed.backend == "iptables-nft":
            skip.update((parsed.family, t.name) for t in parsed.tables)
    ignored: list[str] = []
    if ruleset.nft_json:
        parsed_nft = nft_json.parse(ruleset.nft_json, skip=skip, source="nft_json")
        if parsed_nft.skipped_handles:
            tables = [_with_handles(t, parsed_nft.skipped_handles) for t in tables]
        tables.extend(parsed_nft.tables)
        warnings.extend(parsed_nft.warnings)
        ignored.extend(parsed_nft.ignored)
        count = sum(len(c.rules) for t in parsed_nft.tables for c in t.chains.values())
        with_rules["nftables"] = with_rules.get("nftables", 0) + count
    if with_rules.get("iptables-legacy") and with_rules.get("iptables-nft"):
        warnings.append(
            f"both iptables back ends hold rules (legacy: {with_rules['iptables-legacy']}, "
            f"nf_tables: {with_rules['iptables-nft']}); the kernel runs both, and `iptables` "
            "shows only one of them"
        )
    ipsets: dict[str, NamedSet] = {}
    if ruleset.ipsets:
        ipsets = _ipset.parse(ruleset.ipsets, source="ipsets")
    return Netfilter(
        tables=tuple(tables),
        warnings=tuple(dict.fromkeys(warnings)),
        ignored=tuple(ignored),
        ipsets=ipsets,
        kernel=stateful.parse(ruleset),
    )


def _with_handles(
    table: Table, handles: dict[tuple[str, str], tuple[int | None, dict[str, int | None]]]
) -> Table:
    """An iptables-nft table with the nft handles of the same table (its registration order)."""
    if table.backend != "iptables-nft" or (table.family, table.name) not in handles:
        return table
    thandle, chandles = handles[(table.family, table.name)]
    chains = {n: replace(c, handle=chandles.get(n)) for n, c in table.chains.items()}
    return replace(table, chains=chains, handle=thandle)


def facts_for(netns: Netns) -> NetnsFacts:
    """What matches need to know about ``netns``: its addresses, interfaces and bridge ports."""
    local: set[str] = set()
    broadcast: set[str] = set()
    addrs: dict[str, tuple[str, ...]] = {}
    nets: dict[str, tuple[str, ...]] = {}
    kinds: dict[str, str] = {}
    by_index = {link.ifindex: link.name for link in netns.links}
    bridge_of: dict[str, str] = {}
    for link in netns.links:
        ordered = sorted(link.addresses, key=lambda a: 0 if a.scope == "global" else 1)
        addrs[link.name] = tuple(a.address for a in ordered)
        nets[link.name] = tuple(a.cidr for a in ordered)
        kinds[link.name] = link.kind
        local.update(a.address for a in link.addresses)
        broadcast.update(a.broadcast for a in link.addresses if a.broadcast)
        if link.master is not None and link.master in by_index:
            bridge_of[link.name] = by_index[link.master]
    for route in netns.routes:
        dst, _, plen = route.dst.partition("/")
        host = plen in ("", "32") if route.family == 4 else plen in ("", "128")
        if route.type == "local" and host:
            local.add(dst)
        elif route.type == "broadcast" and host:
            broadcast.add(dst)
    return NetnsFacts(
        local_addresses=frozenset(local),
        iface_addresses=addrs,
        iface_networks=nets,
        iface_kinds=kinds,
        bridge_of=bridge_of,
        broadcast_addresses=frozenset(broadcast),
        known=bool(netns.links),
    )
