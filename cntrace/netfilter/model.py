"""netfilter's own rule model: one shape for iptables (legacy and nf_tables) and native nftables.

Tables hold chains, chains hold rules, and a rule is a sequence of steps (steps.py) run in order,
as nftables does; an iptables rule is simply "all matches, then the target". A rule keeps its
source and compiles it on first use (``RuleForm``); ``Netfilter`` is everything one namespace
holds, with the kernel's order of the base chains on each hook.

Everything is a value, cached by the Ruleset it came from; the only thing that changes is a
rule's compiled form, filled in once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cntrace.model import RuleRef
from cntrace.netfilter.steps import Effect, Field, Mangle, Match, NatSpec, Verdict, VerdictMap

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cntrace.netfilter.stateful import KernelState
    from cntrace.netfilter.steps import Atom, Step

HOOKS = ("prerouting", "input", "forward", "output", "postrouting")

# Standard base-chain priorities of the iptables tables (NF_IP_PRI_*), which iptables-nft reuses.
TABLE_PRIORITY = {"raw": -300, "mangle": -150, "nat": -100, "filter": 0, "security": 50}
NAT_PRIORITY_SRC = 100  # nat chains at postrouting/input run in the SNAT slot

# Which hooks each iptables built-in chain hangs on.
BUILTIN_HOOK = {
    "PREROUTING": "prerouting",
    "INPUT": "input",
    "FORWARD": "forward",
    "OUTPUT": "output",
    "POSTROUTING": "postrouting",
}

# Conntrack state bits as the kernel uses them (NF_CT_STATE_*_BIT), plus xt_conntrack's virtual
# SNAT/DNAT states, which are only meaningful to iptables' --ctstate.
CT_STATE_BITS = {
    "invalid": 1,
    "established": 2,
    "related": 4,
    "new": 8,
    "untracked": 64,
    "snat": 256,
    "dnat": 512,
}
# Conntrack status bits (IPS_*) that rules test.
CT_STATUS_BITS = {
    "expected": 1,
    "seen-reply": 2,
    "assured": 4,
    "confirmed": 8,
    "snat": 16,
    "dnat": 32,
    "dying": 512,
}

PROTO_NUMBERS = {
    "all": 0,
    "ip": 0,
    "icmp": 1,
    "igmp": 2,
    "tcp": 6,
    "udp": 17,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "icmpv6": 58,
    "ipv6-icmp": 58,
    "sctp": 132,
    "udplite": 136,
    "dccp": 33,
}
# Protocols with ports, by name (what ``tcp dport`` and ``-m tcp --dport`` imply) and number.
PORT_PROTO_NUMBERS = {n: PROTO_NUMBERS[n] for n in ("tcp", "udp", "sctp", "udplite", "dccp")}
PORT_PROTOS = frozenset(PORT_PROTO_NUMBERS.values())


@dataclass(frozen=True, slots=True)
class Compiled:
    """A rule's compiled form: the steps the evaluator runs and the comment the rule carries."""

    steps: tuple[Step, ...]
    comment: str | None = None


class RuleForm(ABC):
    """A rule as its parser recorded it, compiled on first use (and then kept).

    Loading keeps only the source (a line of iptables-save text, a list of nft JSON statements),
    so a 10,000-rule ruleset loads in a few tens of milliseconds and a packet walk compiles only
    the rules it meets. Each parser subclasses this with its own source; compiling malformed
    source raises RulesetError with its line. The text is what the tool printed (iptables) or
    is rendered from the source when first read (nft, whose JSON carries none).
    """

    __slots__ = ("_compiled", "_text")

    _compiled: Compiled | None
    _text: str | None

    @abstractmethod
    def _compile(self) -> Compiled:
        """Lower the source into steps (called once)."""

    @abstractmethod
    def _render(self) -> str:
        """The rule's text from its source (called once, when no text was recorded)."""

    @abstractmethod
    def _source_text(self) -> str:
        """The source as text, for cheap looks before compiling."""

    def compiled(self) -> Compiled:
        c = self._compiled
        if c is None:
            c = self._compiled = self._compile()
        return c

    def text(self) -> str:
        t = self._text
        if t is None:
            t = self._text = self._render()
        return t

    def may_need_conntrack(self) -> bool:
        """False only when the rule surely needs no conntrack; a look at the source spares
        compiling (compiled rules are looked at exactly by the caller)."""
        if self._compiled is not None:
            return True
        text = self._source_text()
        return any(m in text for m in _CT_MARKERS)


_CT_MARKERS = (
    "conntrack", "state", "connmark", "CONNMARK", "DNAT", "SNAT", "MASQUERADE", "REDIRECT",
    "NETMAP", "-j CT", "'ct'", "'dnat'", "'snat'", "'masquerade'", "'redirect'", "connbytes",
    "connlimit", "connlabel", "-m helper", "-m cluster",
)  # fmt: skip


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """One rule, with where it lives, its counters and its (lazily) compiled form."""

    backend: str
    family: str  # ip | ip6 | inet | bridge | arp | netdev
    table: str
    chain: str
    position: int  # 1-based within its chain
    handle: int | None
    counters: tuple[int, int] | None  # packets, bytes
    line: int | None  # line of the source text (iptables-save)
    form: RuleForm = field(repr=False)

    @property
    def steps(self) -> tuple[Step, ...]:
        c = self.form._compiled  # the evaluator's hot path: no call once compiled
        return (c if c is not None else self.form.compiled()).steps

    @property
    def text(self) -> str:
        t = self.form._text
        return t if t is not None else self.form.text()

    @property
    def comment(self) -> str | None:
        return self.form.compiled().comment

    @property
    def matches(self) -> tuple[Match, ...]:
        return tuple(s for s in self.steps if isinstance(s, Match))

    @property
    def target(self) -> Step | None:
        """The step that decides what a matching packet does (verdict, NAT, vmap, mangle)."""
        for step in reversed(self.steps):
            if not isinstance(step, (Match, Effect)):
                return step
        return None

    def ref(self) -> RuleRef:
        verdict = None
        target = self.target
        if isinstance(target, Verdict):
            verdict = target.kind if target.target is None else f"{target.kind} {target.target}"
        elif isinstance(target, NatSpec):
            verdict = target.kind
        elif isinstance(target, VerdictMap):
            verdict = "vmap"
        return RuleRef(
            backend=self.backend,
            table=self.table,
            chain=self.chain,
            position=self.position,
            text=self.text,
            handle=self.handle,
            family=self.family,
            verdict=verdict,
            counters=self.counters,
        )


@dataclass(frozen=True, slots=True)
class Chain:
    """A chain; base chains carry their hook, priority, type and policy."""

    backend: str
    family: str
    table: str
    name: str
    rules: tuple[Rule, ...] = ()
    hook: str | None = None
    priority: int | None = None
    type: str | None = None  # filter | nat | route
    policy: str | None = None  # accept | drop (base chains only)
    counters: tuple[int, int] | None = None  # the policy's counters (iptables-save -c)
    handle: int | None = None
    devices: tuple[str, ...] = ()  # netdev (and inet ingress) base chains: the devices bound

    @property
    def is_base(self) -> bool:
        return self.hook is not None

    @property
    def label(self) -> str:
        return f"{self.backend} {self.family} {self.table} {self.name}"


@dataclass(frozen=True, slots=True)
class NamedSet:
    """An nft set or map, or an ipset, with its elements when they could be read.

    For maps, ``data`` holds each element's value (a Verdict for verdict maps, else text), and
    ``values`` the same values as atoms (None where one could not be read) for the statements
    that look a value up (``meta mark set ... map @m``, ``dnat to ... map @m``).
    ``elements`` None means the contents are unknown (e.g. an ipset that was not dumped).
    """

    name: str
    family: str
    table: str
    key_types: tuple[str, ...]
    elements: tuple[tuple[Atom, ...], ...] | None = ()
    data: tuple[Verdict | str, ...] = ()
    map_type: str | None = None  # "verdict", "ipv4_addr" ... for maps
    flags: tuple[str, ...] = ()
    handle: int | None = None
    values: tuple[tuple[Atom, ...] | None, ...] = ()


@dataclass(frozen=True, slots=True)
class Table:
    """A table of one back end; chains and sets by name."""

    backend: str
    family: str
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, NamedSet] = field(default_factory=dict)
    handle: int | None = None
    comment: str | None = None
    # nft `flags dormant`: the kernel unregisters the table's base chains (nf_tables_table_disable)
    # so no packet meets them; its rules, sets and counters stay.
    dormant: bool = False

    @property
    def label(self) -> str:
        return f"{self.backend} {self.family} {self.name}"


_CT_KEYS = ("ctstate", "ctstatus", "ctmark", "ctdirection", "ct.", "h:ct.")
# xt matches whose module turns conntrack on (nf_ct_netns_get) though cntrace cannot evaluate them.
_CT_MODULES = ("connlimit", "helper", "match module 'connlabel'", "match module 'cluster'")


def _needs_conntrack(step: object) -> bool:
    if isinstance(step, NatSpec):
        return True
    if isinstance(step, Match):
        if step.unsupported and step.unsupported.startswith(_CT_MODULES):
            return True
        return any(f.key.startswith(_CT_KEYS) for f in step.fields)
    if isinstance(step, Mangle):
        keys = step.value.key if step.value is not None else ()
        return "ctmark" in (step.dest, step.src) or any(
            isinstance(k, Field) and k.key == "ctmark" for k in keys
        )
    if isinstance(step, Effect):
        return step.kind == "ct"
    return False


def ip_families(family: str) -> tuple[int, ...]:
    """The IP versions a table family sees (inet sees both; bridge/arp/netdev see neither here)."""
    return {"ip": (4,), "ip6": (6,), "inet": (4, 6)}.get(family, ())


@dataclass(frozen=True, slots=True)
class Netfilter:
    """Every table of every back end found in one namespace's Ruleset.

    ``ignored`` names nft tables left out because iptables-nft manages them and the snapshot holds
    the iptables-save view of the same table (that view wins: it is what users wrote and read).
    """

    tables: tuple[Table, ...]
    warnings: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    ipsets: dict[str, NamedSet] = field(default_factory=dict)
    kernel: KernelState | None = None  # what stateful matches read (stateful.parse)
    _index: dict[tuple[str, str, str], Table] = field(
        default_factory=dict, compare=False, repr=False
    )
    _order: dict[tuple[str, int], tuple[Chain, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    _ct: dict[int, bool] = field(default_factory=dict, compare=False, repr=False)

    @property
    def backends(self) -> tuple[str, ...]:
        seen: list[str] = []
        for t in self.tables:
            if t.backend not in seen and any(c.rules or c.is_base for c in t.chains.values()):
                seen.append(t.backend)
        return tuple(seen)

    def chains(self) -> Iterator[Chain]:
        for t in self.tables:
            yield from t.chains.values()

    def rules(self) -> Iterator[Rule]:
        for c in self.chains():
            yield from c.rules

    def table_index(self) -> dict[tuple[str, str, str], Table]:
        """Tables by (backend, family, name), built once."""
        idx = self._index
        if not idx:
            for t in self.tables:
                idx[(t.backend, t.family, t.name)] = t
        return idx

    def table_of(self, chain: Chain) -> Table:
        for t in self.tables:
            if (t.backend, t.family, t.name) == (chain.backend, chain.family, chain.table):
                return t
        raise KeyError(chain.label)

    def base_chains(self, hook: str, ipver: int) -> tuple[Chain, ...]:
        """Base chains at ``hook`` that see IPv``ipver`` packets, in kernel order.

        Filter-type chains run by priority. All nat-type chains share one slot (the kernel's nat
        core hooks at -100 for prerouting/output and 100 for postrouting/input) and are ordered
        among themselves by their own priority. For equal priorities the kernel runs the chain
        registered last first; registration order is estimated: iptables-legacy tables are the
        oldest, nft chains (iptables-nft's too) are ordered by table handle, then chain handle.
        """
        key = (hook, ipver)
        cached = self._order.get(key)
        if cached is not None:
            return cached
        entries: list[tuple[tuple[int, int, tuple[int, int, int]], Chain]] = []
        for t in self.tables:
            if ipver not in ip_families(t.family) or t.dormant:
                continue
            for c in t.chains.values():
                if c.hook != hook:
                    continue
                prio = c.priority if c.priority is not None else 0
                slot = prio
                if c.type == "nat":
                    slot = NAT_PRIORITY_SRC if hook in ("postrouting", "input") else -100
                if c.backend == "iptables-legacy":
                    rank = (1, 0, 0)
                else:
                    rank = (0, -(t.handle or 0), -(c.handle or 0))
                entries.append(((slot, prio, rank), c))
        entries.sort(key=lambda e: e[0])
        result = tuple(e[1] for e in entries)
        self._order[key] = result
        return result

    def conntrack_enabled(self, ipver: int) -> bool:
        """Whether connection tracking runs for IPv``ipver`` in this namespace.

        The kernel enables it per namespace only for rules that need it (NAT statements and
        targets, ct/conntrack/state/connmark matches, CT targets); without it nat chains never
        run and nothing is NATed.
        """
        cached = self._ct.get(ipver)
        if cached is not None:
            return cached
        on = False
        for t in self.tables:
            if ipver not in ip_families(t.family):
                continue
            for c in t.chains.values():
                for r in c.rules:
                    if r.form.may_need_conntrack() and any(_needs_conntrack(s) for s in r.steps):
                        on = True
                        break
                if on:
                    break
            if on:
                break
        self._ct[ipver] = on
        return on

    def check(self) -> None:
        """Compile every rule now (RulesetError, with its line, for the first malformed one)."""
        for rule in self.rules():
            _ = rule.steps

    @property
    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.chains())
