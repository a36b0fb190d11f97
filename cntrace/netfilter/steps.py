"""What a rule compiles to: a sequence of *steps* (matches and statements), run in order.

Both parsers lower their input into this small vocabulary, close to what the kernel evaluates. A
match compares one or more packet *fields* (a concatenation, for nft's ``ip daddr . meta l4proto .
th dport``) against *atoms* (exact values, inclusive ranges, interface-name prefixes). Addresses
are integers, so the evaluator compares numbers, not strings; prefixes become ranges. A new kind
of step (say, an opaque one for a construct nobody models) joins the ``Step`` union here and gets
a case in the evaluator's ``run_rule``, in ``Rule.target`` and in ``query``.
"""

from __future__ import annotations

from dataclasses import dataclass

MASK32 = 0xFFFFFFFF  # marks and conntrack marks are 32 bits


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
                return self.wildcard and not lo  # the catch-all matches any value
            return value.startswith(lo) if self.wildcard else value == lo
        if not isinstance(value, int):
            return False
        if self.hi is None:
            return value == lo
        return lo <= value <= self.hi


CATCHALL = Atom("", wildcard=True)
"""nft's catch-all set element ``*`` (and iptables' ``-i +``): any value."""


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
    ops: tuple[tuple[str, int], ...] = ()  # nft bit operations, in order: ("|", 1), (">>", 8)


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
class Hash:
    """nft ``jhash <fields> mod N seed S offset O`` or ``symhash mod N offset O``.

    ``seed`` None: a jhash whose seed the kernel drew at random when the rule was loaded (it
    dumps no seed then).
    """

    kind: str  # jhash | symhash
    fields: tuple[Field, ...] = ()
    mod: int = 1
    seed: int | None = None
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Lookup:
    """A statement's value that the packet decides when the rule runs.

    ``key`` (fields or hashes, a concatenation when several) is looked up in ``elements`` (an
    anonymous map: key atoms -> value atoms) or the named map ``map_name``; with ``mapped``
    False the key's own value is the value (``ct mark >> 8``, ``jhash ip saddr mod 4``). A miss
    ends the rule, as the kernel's NFT_BREAK does.
    """

    key: tuple[Field | Hash, ...]
    elements: tuple[tuple[tuple[Atom, ...], tuple[Atom, ...]], ...] = ()
    map_name: str | None = None
    mapped: bool = True


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
    unsupported: str | None = None  # e.g. a key no packet decides
    # nft ``dnat to ip saddr map { ... }``: the address (and port) looked up for each packet;
    # ``into`` names what the looked-up value's parts set ("addr", "port").
    lookup: Lookup | None = None
    into: tuple[str, ...] = ()


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
    value: Lookup | None = None  # a value the packet decides (a map, a hash): dest = value


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
