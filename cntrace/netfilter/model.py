"""netfilter's own rule model: one shape for iptables (legacy and nf_tables) and native nftables.

Both parsers lower their input into the same small vocabulary, close to what the kernel evaluates:
a rule is a sequence of *steps* (matches and statements) run in order, as nftables does; an
iptables rule is simply "all matches, then the target". A match compares one or more packet
*fields* (a concatenation, for nft's ``ip daddr . meta l4proto . th dport``) against *atoms*
(exact values, inclusive ranges, interface-name prefixes). Addresses are stored as integers so the
evaluator compares numbers, not strings; prefixes become ranges.

Everything is frozen: a parsed ruleset is a value, cached by the Ruleset it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cntrace.model import RuleRef

if TYPE_CHECKING:
    from collections.abc import Iterator

HOOKS = ("prerouting", "input", "forward", "output", "postrouting")

BACKENDS = ("iptables-legacy", "iptables-nft", "nftables")

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
PORT_PROTOS = frozenset({6, 17, 132, 136, 33})


@dataclass(frozen=True, slots=True)
class Atom:
    """One value a field may take: exact (``hi`` None), an inclusive range, or a name prefix.

    Strings are interface names and symbolic values (fib types, pkttypes); ``wildcard`` marks an
    interface prefix (iptables ``veth+``, nft ``"veth*"``).
    """

    lo: int | str
    hi: int | None = None
    wildcard: bool = False

    def contains(self, value: object) -> bool:
        lo = self.lo
        if isinstance(lo, str):
            if not isinstance(value, str):
                return False
            return value.startswith(lo) if self.wildcard else value == lo
        if not isinstance(value, int):
            return False
        if self.hi is None:
            return value == lo
        return lo <= value <= self.hi


@dataclass(frozen=True, slots=True)
class Field:
    """A value read from the packet or its context (see docs/netfilter.md for the names).

    ``mask`` is applied before comparing (nft ``meta mark & 0x4000``, iptables ``--mark v/m``);
    ``family`` and ``proto`` are the implicit dependencies nft adds for ``ip saddr`` (nfproto
    ipv4) and ``tcp dport`` (l4proto tcp): when they do not hold, the match is false.
    """

    key: str
    mask: int | None = None
    family: int | None = None
    proto: int | None = None
    arg: str | None = None  # extra selector, e.g. the ipset direction ("src,dst")


@dataclass(frozen=True, slots=True)
class Match:
    """A condition: ``fields`` compared with ``values`` (any-of) or a named set, by ``op``.

    ops: ``==`` (any value holds), ``!=`` (none holds), ``bits`` / ``!bits`` (flag intersection,
    nft ``in`` on flag types and iptables ``--ctstate``), ``<`` ``<=`` ``>`` ``>=``.
    ``unsupported`` names why it cannot be evaluated: the evaluator then records the rule as
    uncertain (and assumes the match holds, saying so) instead of guessing silently.
    """

    fields: tuple[Field, ...]
    op: str = "=="
    values: tuple[tuple[Atom, ...], ...] = ()
    set_name: str | None = None
    text: str = ""
    unsupported: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A verdict statement: accept, drop, reject, queue, return, continue, jump, goto."""

    kind: str
    target: str | None = None  # chain for jump/goto
    detail: str | None = None  # reject type, queue number ...


@dataclass(frozen=True, slots=True)
class NatSpec:
    """A NAT statement/target: dnat, snat, masquerade or redirect.

    Addresses stay text (they become the packet's new address); ``addr_hi`` / ``port_hi`` are the
    inclusive ends of ranges. ``flags`` holds random, random-fully, persistent.
    """

    kind: str
    addr: str | None = None
    addr_hi: str | None = None
    port: int | None = None
    port_hi: int | None = None
    flags: tuple[str, ...] = ()
    unsupported: str | None = None  # e.g. a map lookup for the address


@dataclass(frozen=True, slots=True)
class Mangle:
    """Rewrite the packet mark or the connection mark.

    new ``dest`` = (old dest & ``keep``) ^ (``src`` & ``src_mask``) ^ ``xor``; this covers iptables
    MARK/CONNMARK (--set-xmark, --save-mark, --restore-mark) and nft ``meta mark set ...``.
    """

    dest: str  # mark | ctmark
    keep: int
    xor: int = 0
    src: str | None = None
    src_mask: int = 0


@dataclass(frozen=True, slots=True)
class VerdictMap:
    """nft ``<key> vmap { ... }`` or ``vmap @name``: look the key up, apply the element's verdict.

    A miss ends the rule (the kernel's NFT_BREAK), like a failed match.
    """

    fields: tuple[Field, ...]
    elements: tuple[tuple[tuple[Atom, ...], Verdict], ...] = ()
    map_name: str | None = None
    text: str = ""
    unsupported: str | None = None


@dataclass(frozen=True, slots=True)
class Effect:
    """A statement with no say in the verdict: counter, log, comment, notrack, set update ..."""

    kind: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A statement the evaluator cannot model; it makes the rule's outcome uncertain."""

    text: str
    reason: str


Step = Match | Verdict | NatSpec | Mangle | VerdictMap | Effect | Unsupported


Compiler = Callable[["Rule"], tuple[tuple[Step, ...], "str | None"]]


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """One rule, with where it lives and how the tool printed it.

    A rule is compiled into steps (and, for nft, its text rendered) on first use: a 10,000-rule
    ruleset is loaded in a few tens of milliseconds and a packet walk compiles only the rules it
    meets. ``Rule.of`` builds one already compiled. Compiling malformed text raises RulesetError
    with the line; ``Netfilter.check()`` compiles everything up front.
    """

    backend: str
    family: str  # ip | ip6 | inet | bridge | arp | netdev
    table: str
    chain: str
    position: int  # 1-based within its chain
    handle: int | None = None
    counters: tuple[int, int] | None = None  # packets, bytes
    line: int | None = None  # line of the source text (iptables-save)
    # [raw source, compiler(rule) -> (steps, comment), steps, text, comment, renderer(rule) ->
    # text]: steps and comment are filled on first use, the text (nft renders it) separately.
    _lazy: list[Any] = field(default_factory=list, repr=False)

    @classmethod
    def of(
        cls,
        backend: str,
        family: str,
        table: str,
        chain: str,
        position: int,
        text: str,
        steps: tuple[Step, ...],
        *,
        handle: int | None = None,
        counters: tuple[int, int] | None = None,
        comment: str | None = None,
        line: int | None = None,
    ) -> Rule:
        return cls(
            backend, family, table, chain, position, handle, counters, line,
            [None, None, steps, text, comment, None],
        )  # fmt: skip

    def _compiled(self) -> list[Any]:
        lazy = self._lazy
        if lazy[2] is None:
            lazy[2], lazy[4] = lazy[1](self)
        return lazy

    @property
    def steps(self) -> tuple[Step, ...]:
        steps = self._lazy[2]
        if steps is None:
            steps = self._compiled()[2]
        return steps  # type: ignore[no-any-return]

    @property
    def text(self) -> str:
        lazy = self._lazy
        if lazy[3] is None:
            lazy[3] = lazy[5](self)
        return lazy[3]  # type: ignore[no-any-return]

    @property
    def comment(self) -> str | None:
        return self._compiled()[4]  # type: ignore[no-any-return]

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

    @property
    def is_base(self) -> bool:
        return self.hook is not None

    @property
    def label(self) -> str:
        return f"{self.backend} {self.family} {self.table} {self.name}"


@dataclass(frozen=True, slots=True)
class NamedSet:
    """An nft set or map, or an ipset, with its elements when they could be read.

    For maps, ``data`` holds each element's value (a Verdict for verdict maps, else text).
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

    @property
    def label(self) -> str:
        return f"{self.backend} {self.family} {self.name}"


_CT_KEYS = ("ctstate", "ctstatus", "ctmark", "ctdirection", "ct.")


def _needs_conntrack(step: object) -> bool:
    if isinstance(step, NatSpec):
        return True
    if isinstance(step, Match):
        return any(f.key.startswith(_CT_KEYS) for f in step.fields)
    if isinstance(step, Mangle):
        return "ctmark" in (step.dest, step.src)
    if isinstance(step, Effect):
        return step.kind == "ct"
    return False


_CT_MARKERS = (
    "conntrack", "state", "connmark", "CONNMARK", "DNAT", "SNAT", "MASQUERADE", "REDIRECT",
    "NETMAP", "-j CT", "'ct'", "'dnat'", "'snat'", "'masquerade'", "'redirect'",
)  # fmt: skip


def _maybe_conntrack(rule: Rule) -> bool:
    """A cheap look at a rule's source before compiling it (compiled rules are exact)."""
    lazy = rule._lazy
    if lazy[2] is not None or not lazy[0]:
        return True
    src = lazy[0][0]
    text = src if isinstance(src, str) else repr(src)
    return any(m in text for m in _CT_MARKERS)


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
            if ipver not in ip_families(t.family):
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
                    if _maybe_conntrack(r) and any(_needs_conntrack(s) for s in r.steps):
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
