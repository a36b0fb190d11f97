"""Walk a packet through every netfilter back end of one namespace, as the kernel would.

At each hook every base chain of every table (iptables-legacy, iptables-nft, native nftables) runs
in priority order; ``accept`` ends only that base chain, ``drop``/``reject``/``queue`` end the
packet. nat-type chains share one slot per hook (the kernel's nat core sits at -100 for
prerouting/output and 100 for postrouting/input and calls them in their own priority order), run
only for the first packet of a connection, and stop as soon as one of them sets up a binding.
Later packets get the connection's NAT from conntrack instead (``Conntrack``).

A match the evaluator cannot decide (a rate limit, a random choice, a match module it does not
model) is *assumed to hold* and the rule is listed in ``uncertain`` with the reason: the answer is
then one possible outcome, clearly labelled, never a silent guess.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cntrace.errors import BadInput
from cntrace.model import Packet, RuleRef
from cntrace.netfilter.model import (
    CT_STATE_BITS,
    HOOKS,
    PORT_PROTOS,
    PROTO_NUMBERS,
    Atom,
    Chain,
    Effect,
    Field,
    Mangle,
    Match,
    NamedSet,
    NatSpec,
    Netfilter,
    Rule,
    Step,
    Table,
    Unsupported,
    Verdict,
    VerdictMap,
)
from cntrace.netfilter.values import ip_to_int, prefix_atom

_MASK32 = 0xFFFFFFFF
_UNKNOWN = object()
_CONNTRACK_PRIORITY = -200  # NF_IP_PRI_CONNTRACK: chains before it see no conntrack entry yet
_MAX_DEPTH = 64
_DST_HOOKS = ("prerouting", "output")  # where the kernel does destination NAT
_KINDS = ("input", "forward", "output", "local-output")
_STATUS_KNOWN = 8 | 2 | 16 | 32  # confirmed, seen-reply, snat, dnat


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class NetnsFacts:
    """What matches need to know about the namespace beyond the packet.

    ``iface_addresses`` maps an interface to its addresses, primary first (MASQUERADE and
    REDIRECT pick from it); ``iface_networks`` holds the same as CIDRs. ``known`` is False when
    nothing is known about the namespace: address-type matches are then uncertain.
    """

    local_addresses: frozenset[str]
    iface_addresses: Mapping[str, tuple[str, ...]]
    iface_networks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    iface_kinds: Mapping[str, str] = field(default_factory=dict)
    bridge_of: Mapping[str, str] = field(default_factory=dict)  # bridge port -> bridge
    broadcast_addresses: frozenset[str] = frozenset()
    known: bool = True

    @staticmethod
    def unknown() -> NetnsFacts:
        return NetnsFacts(frozenset(), {}, known=False)


@dataclass(frozen=True, slots=True)
class Conntrack:
    """A connection's tuples: its first packet before NAT (``original``) and after (``nated``).

    Later packets of either direction get the same translation from it, as conntrack does.
    """

    original: Packet
    nated: Packet


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Nat:
    """A translation applied at a hook."""

    kind: str  # dnat | snat | masquerade | redirect | conntrack (established/reply)
    before: Packet
    after: Packet
    rule: RuleRef | None
    hook: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ChainVisit:
    """What one base chain did at a hook."""

    backend: str
    family: str
    table: str
    chain: str
    priority: int
    type: str
    verdict: str | None  # accept | drop | reject | queue; None when skipped
    rule: RuleRef | None = None  # the rule whose verdict ended the chain; None: policy
    skipped: str | None = None
    matched: tuple[RuleRef, ...] = ()  # rules of this chain (and chains it jumped to) that matched


@dataclass(frozen=True, slots=True)
class HookResult:
    """The outcome of one hook for one packet."""

    hook: str
    verdict: str  # accept | drop | reject | queue
    packet: Packet  # after any NAT at this hook
    matched: tuple[RuleRef, ...] = ()
    deciding: RuleRef | None = None
    policy: str | None = None  # e.g. "iptables-nft ip filter FORWARD policy drop"
    nat: Nat | None = None
    uncertain: tuple[tuple[RuleRef, str], ...] = ()
    chains: tuple[ChainVisit, ...] = ()
    iif: str | None = None
    oif: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Walk:
    """A packet's way through the hooks of one namespace."""

    kind: str  # input | forward | output | local-output (after any re-routing)
    hooks: tuple[HookResult, ...]
    verdict: str  # accept | drop | reject | queue
    deciding: RuleRef | None
    packet_before: Packet
    packet_after: Packet
    nats: tuple[Nat, ...]
    uncertain: tuple[tuple[RuleRef, str], ...]
    iif: str | None = None
    oif: str | None = None
    policy: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def certain(self) -> bool:
        return not self.uncertain

    def conntrack(self) -> Conntrack:
        """The connection this (first) packet set up, for walking its later or reply packets."""
        return Conntrack(self.packet_before, self.packet_after)


# --------------------------------------------------------------------------- state


class _State:
    """The mutable state of one packet's walk (kept out of the frozen results)."""

    def __init__(
        self,
        nf: Netfilter,
        packet: Packet,
        facts: NetnsFacts,
        *,
        ctstate: str,
        ctmark: int,
        conntrack: Conntrack | None,
        physdev_in: str | None,
        physdev_out: str | None,
    ) -> None:
        self.nf = nf
        self.facts = facts
        self.packet = packet
        self.original = packet
        self.ctstate = ctstate.lower()
        if self.ctstate not in CT_STATE_BITS or self.ctstate in ("snat", "dnat"):
            raise BadInput(
                f"unknown conntrack state {ctstate!r} (new, established, related, invalid, "
                "untracked)"
            )
        self.ctmark = ctmark
        self.conntrack = conntrack
        self.direction = 0
        if conntrack is not None and self.ctstate != "new":
            self.direction = _direction(packet, conntrack)
        self.physdev_in = physdev_in
        self.physdev_out = physdev_out
        self.untracked = self.ctstate == "untracked"
        self.ct_attached = False
        self.nat_done: set[str] = set()  # manip types bound: "dst", "src"
        self.snat = conntrack is not None and _differs_src(conntrack)
        self.dnat = conntrack is not None and _differs_dst(conntrack)
        self.iif: str | None = None
        self.oif: str | None = None
        self.prio = 0
        self.cache: dict[Field, object] = {}
        self.local = _local_ints(facts)

    def set_packet(self, packet: Packet) -> None:
        self.packet = packet
        self.cache.clear()


def _local_ints(facts: NetnsFacts) -> set[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for a in facts.local_addresses:
        try:
            out.add(ip_to_int(a))
        except ValueError:
            continue
    return out


def _direction(p: Packet, ct: Conntrack) -> int:
    o, n = ct.original, ct.nated
    if (p.src, p.dst, p.sport, p.dport) == (o.src, o.dst, o.sport, o.dport):
        return 0
    if (p.src, p.dst, p.sport, p.dport) == (n.dst, n.src, n.dport, n.sport):
        return 1
    return 0


def _differs_src(ct: Conntrack) -> bool:
    return (ct.original.src, ct.original.sport) != (ct.nated.src, ct.nated.sport)


def _differs_dst(ct: Conntrack) -> bool:
    return (ct.original.dst, ct.original.dport) != (ct.nated.dst, ct.nated.dport)


# --------------------------------------------------------------------------- field values


def _proto_num(p: Packet) -> int:
    proto = p.proto.lower()
    if proto == "icmp" and p.family == 6:
        return 58
    num = PROTO_NUMBERS.get(proto)
    if num is not None:
        return num
    return int(proto) if proto.isdigit() else -1


def _addr_type(st: _State, addr: str, iface: str | None) -> str:
    ver, value = ip_to_int(addr)
    if iface is not None:
        local = addr in st.facts.iface_addresses.get(iface, ())
    else:
        local = (ver, value) in st.local
        if not local and ver == 4 and (value >> 24) == 127:
            local = True
        if not local and ver == 6 and value == 1:
            local = True
    if local:
        return "local"
    if ver == 4:
        if value == _MASK32 or addr in st.facts.broadcast_addresses:
            return "broadcast"
        if (value >> 28) == 0xE:
            return "multicast"
    elif (value >> 120) == 0xFF:
        return "multicast"
    return "unicast"


def _value(st: _State, f: Field) -> object:
    """The field's value for the current packet; None when absent, _UNKNOWN when unknowable."""
    cached = st.cache.get(f, st)
    if cached is not st:
        return cached
    v = _compute(st, f)
    if f.mask is not None and isinstance(v, int):
        v &= f.mask
    st.cache[f] = v
    return v


def _compute(st: _State, f: Field) -> object:
    p = st.packet
    key = f.key
    if f.family is not None and f.family != p.family:
        return None
    if f.proto is not None and _proto_num(p) != f.proto:
        return None
    if key == "saddr":
        return ip_to_int(p.src)[1]
    if key == "daddr":
        return ip_to_int(p.dst)[1]
    if key == "l4proto":
        return _proto_num(p)
    if key in ("sport", "dport"):
        if _proto_num(p) not in PORT_PROTOS:
            return None
        return p.sport if key == "sport" else p.dport
    if key == "iifname":
        return st.iif or ""
    if key == "oifname":
        return st.oif or ""
    if key == "mark":
        return p.mark
    if key == "ctmark":
        return st.ctmark
    if key == "ctstate":
        return _ct_state_bit(st)
    if key == "ctstate.x":
        bit = _ct_state_bit(st)
        if bit in (2, 4, 8):  # only tracked connections carry the virtual SNAT/DNAT states
            bit |= (256 if st.snat else 0) | (512 if st.dnat else 0)
        return bit
    if key == "ctstatus":
        status = (16 if st.snat else 0) | (32 if st.dnat else 0)
        if st.ctstate in ("established", "related") and st.conntrack is not None:
            status |= 8 | 2
        return status
    if key == "ctdirection":
        return st.direction
    if key.startswith("fib.") and key.endswith(".type"):
        if not st.facts.known:
            return _UNKNOWN
        addr = p.dst if key == "fib.daddr.type" else p.src
        iface = None
        if f.arg == "iif":
            iface = st.iif
        elif f.arg == "oif":
            iface = st.oif
        return _addr_type(st, addr, iface)
    if key == "icmp.type":
        return p.icmp_type if p.icmp_type is not None else _UNKNOWN
    if key == "icmp.code":
        return _UNKNOWN
    if key in ("nfproto", "ethertype"):
        return p.family
    if key == "pkttype":
        t = _addr_type(st, p.dst, None) if st.facts.known else "unicast"
        return t if t in ("broadcast", "multicast") else "host"
    if key == "physdev.in":
        return st.physdev_in or ""
    if key == "physdev.out":
        return st.physdev_out or ""
    if key == "physdev.is-in":
        return 1 if st.physdev_in else 0
    if key == "physdev.is-out":
        return 1 if st.physdev_out else 0
    if key == "physdev.is-bridged":
        return 1 if st.physdev_out else 0
    if key.startswith("ct.orig.") or key.startswith("ct.reply."):
        return _ct_tuple(st, key)
    return _UNKNOWN


def _ct_state_bit(st: _State) -> int:
    if st.untracked:
        return CT_STATE_BITS["untracked"]
    if not st.ct_attached:
        return CT_STATE_BITS["invalid"]
    return CT_STATE_BITS[st.ctstate]


def _ct_tuple(st: _State, key: str) -> object:
    if st.conntrack is not None:
        orig, nated = st.conntrack.original, st.conntrack.nated
    else:
        orig, nated = st.original, st.packet
    _, direction, what = key.split(".")
    if direction == "orig":
        src, dst, sport, dport = orig.src, orig.dst, orig.sport, orig.dport
    else:
        src, dst, sport, dport = nated.dst, nated.src, nated.dport, nated.sport
    if what == "saddr":
        return ip_to_int(src)[1]
    if what == "daddr":
        return ip_to_int(dst)[1]
    return sport if what == "sport" else dport


# --------------------------------------------------------------------------- matching


def _hit(values: tuple[tuple[Atom, ...], ...], vs: tuple[object, ...]) -> bool:
    if len(vs) == 1:
        v = vs[0]
        return any(tup[0].contains(v) for tup in values)
    return any(all(a.contains(x) for a, x in zip(tup, vs, strict=False)) for tup in values)


def _set_values(
    st: _State, m: Match, table: Table | None
) -> tuple[tuple[tuple[Atom, ...], ...] | None, str | None]:
    """The elements of a named set (nft set of the rule's table, or an ipset)."""
    name = m.set_name or ""
    if m.fields and m.fields[0].key == "set.elem":
        s = st.nf.ipsets.get(name)
        if s is None or s.elements is None:
            return None, f"the contents of ipset {name!r} are not known"
        return s.elements, None
    named = table.sets.get(name) if table is not None else None
    if named is None:
        return None, f"set @{name} is not in the ruleset"
    if named.elements is None:
        return None, f"the contents of set @{name} are not known"
    return named.elements, None


def _ipset_values(st: _State, m: Match, s: NamedSet) -> tuple[object, ...] | str:
    vals: list[object] = []
    p = st.packet
    for i, f in enumerate(m.fields):
        kind = s.key_types[i] if i < len(s.key_types) else "ip"
        src = f.arg == "src"
        if kind in ("ip", "net"):
            vals.append(ip_to_int(p.src if src else p.dst)[1])
        elif kind == "port":
            if _proto_num(p) not in PORT_PROTOS:
                return "ipset port component on a packet without ports"
            vals.append(p.sport if src else p.dport)
        elif kind == "iface":
            vals.append((st.iif if src else st.oif) or "")
        elif kind == "mark":
            vals.append(p.mark)
        else:
            return f"ipset type component {kind!r} is not modelled"
    return tuple(vals)


def _match(st: _State, m: Match, table: Table | None) -> bool | str:
    """True/False, or the reason it cannot be decided."""
    if m.unsupported:
        return m.unsupported
    fields = m.fields
    if m.set_name is not None:
        values, why = _set_values(st, m, table)
        if values is None:
            return why or "unknown set"
        if fields and fields[0].key == "set.elem":
            s = st.nf.ipsets[m.set_name]
            vs = _ipset_values(st, m, s)
            if isinstance(vs, str):
                return vs
            hit = _hit(values, vs)
            return hit if m.op == "==" else not hit
    else:
        values = m.values
    if len(fields) == 1:
        f = fields[0]
        key = f.key
        if key == "statistic.random":
            prob = float(f.arg or "0")
            if prob >= 1.0:
                return m.op == "=="
            if prob <= 0.0:
                return m.op != "=="
            return f"statistic: matches at random with probability {f.arg}"
        if key.startswith("numgen."):
            if key == "numgen.random" and f.mask == 1:
                v: object = int(f.arg or "0")
            else:
                return f"{key.replace('.', ' ')} mod {f.mask}: the kernel picks at random"
        elif key == "port":
            both = [
                _value(st, Field("sport", proto=f.proto)),
                _value(st, Field("dport", proto=f.proto)),
            ]
            if both[0] is None:
                return False
            hit = any(_hit(values, (x,)) for x in both)
            return hit if m.op == "==" else not hit
        else:
            v = _value(st, f)
        if v is None:
            return False
        if v is _UNKNOWN:
            return f"{key} is not known for this packet"
        op = m.op
        if op == "==":
            return _hit(values, (v,))
        if op == "!=":
            return not _hit(values, (v,))
        if op in ("bits", "!bits"):
            bits = 0
            for (a,) in values:
                bits |= int(a.lo)
            if key == "ctstatus" and bits & ~_STATUS_KNOWN:
                return "conntrack status bits other than snat/dnat/confirmed/seen-reply"
            hit = isinstance(v, int) and bool(v & bits)
            return hit if op == "bits" else not hit
        ref = values[0][0].lo
        if not isinstance(v, int) or not isinstance(ref, int):
            return f"cannot compare {key} with {op}"
        return {"<": v < ref, ">": v > ref, "<=": v <= ref, ">=": v >= ref}[op]
    vs2 = []
    for f in fields:
        x = _value(st, f)
        if x is None:
            return False
        if x is _UNKNOWN:
            return f"{f.key} is not known for this packet"
        vs2.append(x)
    hit = _hit(values, tuple(vs2))
    return hit if m.op == "==" else not hit


def _vmap(st: _State, vm: VerdictMap, table: Table | None) -> tuple[Verdict | None, str | None]:
    """The verdict a verdict map gives (None: no element matched), and any uncertainty."""
    if vm.unsupported:
        return None, vm.unsupported
    if vm.map_name is not None:
        named = table.sets.get(vm.map_name) if table is not None else None
        if named is None or named.elements is None:
            return None, f"verdict map @{vm.map_name} is not known"
        pairs = [
            (k, d)
            for k, d in zip(named.elements, named.data, strict=False)
            if isinstance(d, Verdict)
        ]
    else:
        pairs = list(vm.elements)
    why = None
    vs: list[object] = []
    for f in vm.fields:
        if f.key.startswith("numgen."):
            if f.key == "numgen.random" and f.mask == 1:
                vs.append(int(f.arg or "0"))
                continue
            why = f"numgen {f.key.split('.')[1]} mod {f.mask}: the kernel picks at random"
            vs.append(int(f.arg or "0"))  # assume the first choice
            continue
        x = _value(st, f)
        if x is None:
            return None, None
        if x is _UNKNOWN:
            return None, f"{f.key} is not known for this packet"
        vs.append(x)
    key = tuple(vs)
    for atoms, verdict in pairs:
        if all(a.contains(x) for a, x in zip(atoms, key, strict=False)):
            return verdict, why
    return None, why


# --------------------------------------------------------------------------- NAT


def _usable_source(addr: str, family: int) -> bool:
    """Addresses MASQUERADE may pick: universe scope (not loopback or link-local)."""
    if (":" in addr) != (family == 6):
        return False
    if family == 4:
        return not addr.startswith("127.")
    return addr != "::1" and not addr.lower().startswith("fe80:")


def _primaries(st: _State, iface: str) -> list[tuple[str, Atom | None]]:
    """The interface's primary addresses in kernel order, with their subnets when known.

    An address in the subnet of an earlier one on the same interface is a secondary.
    """
    out: list[tuple[str, Atom | None]] = []
    nets = st.facts.iface_networks.get(iface, ())
    if not nets:
        return [(a, None) for a in st.facts.iface_addresses.get(iface, ())]
    for cidr in nets:
        addr, _, plen = cidr.partition("/")
        try:
            ver = ip_to_int(addr)[0]
            atom = prefix_atom(f"{addr}/{plen}")[1] if plen else None
        except ValueError:
            continue
        if any(a is not None and a == atom and ip_to_int(x)[0] == ver for x, a in out):
            continue  # secondary
        out.append((addr, atom))
    return out


def _masq_source(st: _State, iface: str | None, nexthop: str) -> str | None:
    """The source MASQUERADE picks (inet_select_addr): a primary address of ``iface`` in the
    next hop's subnet, else its first usable primary, else the first usable address of any
    interface (a device without one, like lo, borrows)."""
    fam = st.packet.family
    if iface is not None:
        cands = [(a, n) for a, n in _primaries(st, iface) if _usable_source(a, fam)]
        _, hop = ip_to_int(nexthop)
        for a, n in cands:
            if n is not None and n.contains(hop):
                return a
        if cands:
            return cands[0][0]
    for name in st.facts.iface_addresses:
        for a, _ in _primaries(st, name):
            if _usable_source(a, fam):
                return a
    return None


def _first_address(st: _State, iface: str | None) -> str | None:
    """REDIRECT's new destination: the first address of the input device."""
    if iface is None:
        return None
    fam = st.packet.family
    for a in st.facts.iface_addresses.get(iface, ()):
        if (":" in a) == (fam == 6):
            return a
    return None


def _port_in(spec: NatSpec, port: int | None) -> bool:
    if spec.port is None or port is None:
        return True
    hi = spec.port_hi if spec.port_hi is not None else spec.port
    return spec.port <= port <= hi


def _apply_nat(
    st: _State, spec: NatSpec, rule: Rule, hook: str
) -> tuple[str, Nat | None, str | None]:
    """Apply a NAT rule: (verdict, the translation, an uncertainty reason)."""
    p = st.packet
    ref = rule.ref()
    if spec.unsupported:
        return "accept", None, spec.unsupported
    dst_hook = hook in _DST_HOOKS
    notes: list[str] = []
    why: str | None = None
    if spec.kind in ("dnat", "redirect") and not dst_hook:
        return "accept", None, f"{spec.kind} at {hook} is not possible"
    if spec.kind in ("snat", "masquerade") and dst_hook:
        return "accept", None, f"{spec.kind} at {hook} is not possible"
    if spec.kind == "dnat":
        addr = spec.addr or p.dst
        if spec.addr_hi:
            why = f"DNAT to the range {spec.addr}-{spec.addr_hi}: the kernel picks an address"
        port = p.dport
        if spec.port is not None and p.dport is not None:
            if spec.port_hi is None:
                port = spec.port
            elif not _port_in(spec, p.dport):
                port = spec.port
                why = f"DNAT to ports {spec.port}-{spec.port_hi}: the kernel picks a port"
        after = p.rewritten(dst=addr, dport=port)
    elif spec.kind == "redirect":
        if hook == "output":
            addr = "::1" if p.family == 6 else "127.0.0.1"
        else:
            chosen = _first_address(st, st.iif)
            if chosen is None:
                if st.iif not in st.facts.iface_addresses:
                    return (
                        "accept",
                        None,
                        (
                            f"REDIRECT: the addresses of {st.iif or 'the input interface'} "
                            "are not known"
                        ),
                    )
                return "drop", None, None  # the kernel drops when the device has no address
            addr = chosen
        port = p.dport
        if spec.port is not None and p.dport is not None:
            port = spec.port if spec.port_hi is None or not _port_in(spec, p.dport) else p.dport
        after = p.rewritten(dst=addr, dport=port)
    else:  # snat, masquerade
        if spec.kind == "snat":
            addr = spec.addr or p.src
            if spec.addr_hi:
                why = f"SNAT to the range {spec.addr}-{spec.addr_hi}: the kernel picks an address"
        else:
            chosen = _masq_source(st, st.oif, p.dst)
            if chosen is None:
                if not st.facts.known:
                    return (
                        "accept",
                        None,
                        (
                            f"MASQUERADE: the addresses of {st.oif or 'the output interface'} are "
                            "not known"
                        ),
                    )
                return "drop", None, None  # the kernel drops when the device has no address
            addr = chosen
        port = p.sport
        if spec.port is not None and p.sport is not None and not _port_in(spec, p.sport):
            port = spec.port
            notes.append(f"source port chosen from {spec.port}-{spec.port_hi or spec.port}")
        if "random" in spec.flags or "random-fully" in spec.flags:
            notes.append("source port chosen at random by the kernel")
        after = p.rewritten(src=addr, sport=port)
    if dst_hook:
        st.dnat = st.dnat or (after.dst, after.dport) != (p.dst, p.dport)
        st.nat_done.add("dst")
    else:
        st.snat = st.snat or (after.src, after.sport) != (p.src, p.sport)
        st.nat_done.add("src")
    st.set_packet(after)
    return "accept", Nat(spec.kind, p, after, ref, hook, "; ".join(notes) or None), why


def _conntrack_nat(st: _State, hook: str) -> Nat | None:
    """Translation of a later packet from its connection's tuples (no nat chains run)."""
    ct = st.conntrack
    if ct is None:
        return None
    p = st.packet
    o, n = ct.original, ct.nated
    after = p
    if hook in _DST_HOOKS:
        if st.direction == 0 and (p.dst, p.dport) == (o.dst, o.dport):
            after = p.rewritten(dst=n.dst, dport=n.dport)
        elif st.direction == 1 and (p.dst, p.dport) == (n.src, n.sport):
            after = p.rewritten(dst=o.src, dport=o.sport)
    elif st.direction == 0 and (p.src, p.sport) == (o.src, o.sport):
        after = p.rewritten(src=n.src, sport=n.sport)
    elif st.direction == 1 and (p.src, p.sport) == (n.dst, n.dport):
        after = p.rewritten(src=o.dst, sport=o.dport)
    if after == p:
        return None
    st.set_packet(after)
    return Nat("conntrack", p, after, None, hook, "translated by the connection's NAT binding")


# --------------------------------------------------------------------------- chains


class _Hook:
    """Evaluation of one hook: collects matched rules, uncertainty and notes."""

    def __init__(self, st: _State, hook: str) -> None:
        self.st = st
        self.hook = hook
        self.matched: list[RuleRef] = []
        self.uncertain: list[tuple[RuleRef, str]] = []
        self.notes: list[str] = []
        self.nat: Nat | None = None
        self.tables = _table_index(st.nf)

    def run_chain(self, base: Chain) -> tuple[str, Rule | None]:
        """Run a base chain: (verdict, deciding rule or None for the policy)."""
        table = self.tables.get((base.backend, base.family, base.table))
        stack: list[tuple[Chain, int]] = []
        cur = base
        idx = 0
        while True:
            rules = cur.rules
            if idx >= len(rules):
                if not stack:
                    return (base.policy or "accept"), None
                cur, idx = stack.pop()
                continue
            rule = rules[idx]
            idx += 1
            outcome = self.run_rule(rule, table)
            if outcome is None:
                continue
            kind = outcome.kind
            if kind in ("accept", "drop", "reject", "queue"):
                return kind, rule
            if kind == "continue":
                continue
            if kind == "return":
                if not stack:
                    return (base.policy or "accept"), None
                cur, idx = stack.pop()
                continue
            target = table.chains.get(outcome.target or "") if table is not None else None
            if target is None:
                self.uncertain.append((rule.ref(), f"{kind} to unknown chain {outcome.target}"))
                continue
            if kind == "jump":
                if len(stack) >= _MAX_DEPTH:
                    self.uncertain.append((rule.ref(), "chain jumps nested too deep (a loop?)"))
                    return (base.policy or "accept"), None
                stack.append((cur, idx))
            cur, idx = target, 0

    def run_rule(self, rule: Rule, table: Table | None) -> Verdict | None:
        """Run one rule's steps; the verdict it gives, or None to go on with the next rule."""
        st = self.st
        uncertain: list[str] = []
        verdict: Verdict | None = None
        step: Step
        for step in rule.steps:
            if isinstance(step, Match):
                res = _match(st, step, table)
                if res is False:
                    return None
                if res is not True:
                    uncertain.append(str(res))
            elif isinstance(step, Verdict):
                verdict = step
                break
            elif isinstance(step, Effect):
                if step.kind == "notrack" and not st.ct_attached:
                    st.untracked = True
                    st.cache.clear()
            elif isinstance(step, Mangle):
                self.mangle(step)
            elif isinstance(step, NatSpec):
                kind, nat, why = _apply_nat(st, step, rule, self.hook)
                if why:
                    uncertain.append(why)
                if nat is not None:
                    self.nat = nat
                verdict = Verdict(kind)
                break
            elif isinstance(step, VerdictMap):
                v, why = _vmap(st, step, table)
                if why:
                    uncertain.append(why)
                if v is None:
                    if why:
                        self.record(rule, uncertain)
                    return None
                verdict = v
                break
            elif isinstance(step, Unsupported):
                uncertain.append(step.reason)
        self.record(rule, uncertain)
        return verdict

    def record(self, rule: Rule, uncertain: list[str]) -> None:
        ref = rule.ref()
        self.matched.append(ref)
        for why in uncertain:
            self.uncertain.append((ref, why))

    def mangle(self, m: Mangle) -> None:
        st = self.st
        old = st.packet.mark if m.dest == "mark" else st.ctmark
        src = 0
        if m.src == "mark":
            src = st.packet.mark
        elif m.src == "ctmark":
            src = st.ctmark
        new = ((old & m.keep) ^ (src & m.src_mask) ^ m.xor) & _MASK32
        if m.dest == "mark":
            if new != st.packet.mark:
                st.set_packet(st.packet.rewritten(mark=new))
        else:
            st.ctmark = new
            st.cache.clear()


def _table_index(nf: Netfilter) -> dict[tuple[str, str, str], Table]:
    idx = nf._index
    if not idx:
        for t in nf.tables:
            idx[(t.backend, t.family, t.name)] = t
    return idx


def _run_hook(st: _State, hook: str) -> HookResult:
    if hook not in HOOKS:
        raise BadInput(f"unknown hook {hook!r} (one of {', '.join(HOOKS)})")
    h = _Hook(st, hook)
    st.cache.clear()
    manip = "dst" if hook in _DST_HOOKS else "src"
    visits: list[ChainVisit] = []
    verdict = "accept"
    deciding: Rule | None = None
    last_rule: Rule | None = None
    last_filter_rule: Rule | None = None
    policy: str | None = None
    new_conn = st.ctstate in ("new", "related")
    conntracked = False
    ct_on = st.nf.conntrack_enabled(st.packet.family)
    for chain in st.nf.base_chains(hook, st.packet.family):
        prio = chain.priority if chain.priority is not None else 0
        ctype = chain.type or "filter"
        if not conntracked and prio > _CONNTRACK_PRIORITY:
            conntracked = True
            if not st.untracked and ct_on:
                st.ct_attached = True
                st.cache.clear()
        skip = None
        if ctype == "nat":
            if not ct_on:
                skip = "no rule enables connection tracking here, so nat chains do not run"
            elif st.untracked:
                skip = "untracked packets are not NATed"
            elif not new_conn:
                skip = "nat chains see only the first packet of a connection"
            elif manip in st.nat_done:
                skip = "NAT for this connection is already set up"
        if skip:
            visits.append(_visit(chain, None, None, skip))
            continue
        first = len(h.matched)
        v, rule = h.run_chain(chain)
        visits.append(_visit(chain, v, rule.ref() if rule else None, None, h.matched[first:]))
        if rule is not None:
            last_rule = rule
            if ctype != "nat":
                last_filter_rule = rule
        if v != "accept":
            verdict = v
            deciding = rule
            if rule is None:
                policy = f"{chain.label} policy {v}"
            break
        if rule is None and chain.policy == "accept" and chain.rules:
            policy = f"{chain.label} policy accept"
    if not conntracked and not st.untracked and ct_on:
        st.ct_attached = True
    if verdict == "accept":
        deciding = last_rule
        if last_filter_rule is not None:
            deciding = last_filter_rule
        if deciding is not None:
            policy = None
        # Any nat slot pass sets up a (possibly null) binding for its manip type.
        if hook != "forward" and new_conn and not st.untracked and ct_on:
            st.nat_done.add(manip)
        if hook != "forward" and not new_conn and st.conntrack is not None and h.nat is None:
            h.nat = _conntrack_nat(st, hook)
    return HookResult(
        hook=hook,
        verdict=verdict,
        packet=st.packet,
        matched=tuple(h.matched),
        deciding=deciding.ref() if deciding else None,
        policy=policy,
        nat=h.nat,
        uncertain=tuple(h.uncertain),
        chains=tuple(visits),
        iif=st.iif,
        oif=st.oif,
        notes=tuple(h.notes),
    )


def _visit(
    chain: Chain,
    verdict: str | None,
    rule: RuleRef | None,
    skipped: str | None,
    matched: list[RuleRef] | None = None,
) -> ChainVisit:
    return ChainVisit(
        backend=chain.backend,
        family=chain.family,
        table=chain.table,
        chain=chain.name,
        priority=chain.priority if chain.priority is not None else 0,
        type=chain.type or "filter",
        verdict=verdict,
        rule=rule,
        skipped=skipped,
        matched=tuple(matched or ()),
    )


# --------------------------------------------------------------------------- public API


def evaluate_hook(
    nf: Netfilter,
    hook: str,
    packet: Packet,
    facts: NetnsFacts,
    *,
    iif: str | None,
    oif: str | None,
    ctstate: str = "NEW",
    physdev_in: str | None = None,
    physdev_out: str | None = None,
    ctmark: int = 0,
    conntrack: Conntrack | None = None,
    original: Packet | None = None,
) -> HookResult:
    """Run one hook for one packet.

    Without ``original`` the connection is fresh (nothing NATed yet). Callers that run the hooks
    of one namespace one by one pass the packet as it was at the first hook: NAT already done
    on the way then shows in conntrack matches (``--ctstate DNAT``, ``ct status dnat``), and a
    hook whose NAT binding is already set up skips its nat chains.
    """
    st = _State(
        nf,
        packet,
        facts,
        ctstate=ctstate,
        ctmark=ctmark,
        conntrack=conntrack,
        physdev_in=physdev_in,
        physdev_out=physdev_out,
    )
    st.iif, st.oif = iif, oif
    if hook not in ("prerouting", "output"):
        st.ct_attached = nf.conntrack_enabled(packet.family)  # ran at an earlier hook
    if original is not None and conntrack is None:
        st.original = original
        if (original.dst, original.dport) != (packet.dst, packet.dport):
            st.dnat = True
            st.nat_done.add("dst")
        if (original.src, original.sport) != (packet.src, packet.sport):
            st.snat = True
            st.nat_done.add("src")
        if hook in ("postrouting", "input", "forward") and st.ctstate in ("new", "related"):
            st.nat_done.add("dst")  # the destination binding was made at prerouting/output
    return _run_hook(st, hook)


def walk(
    nf: Netfilter,
    packet: Packet,
    facts: NetnsFacts,
    *,
    kind: str,
    iif: str | None = None,
    oif: str | None = None,
    route: Callable[[Packet], str | None] | None = None,
    ctstate: str = "NEW",
    ctmark: int = 0,
    conntrack: Conntrack | None = None,
    physdev_in: str | None = None,
    physdev_out: str | None = None,
) -> Walk:
    """The hooks a packet of this ``kind`` meets, in order, re-routing after DNAT.

    kinds: ``input`` (arrives on ``iif`` for this namespace), ``forward`` (``iif`` -> ``oif``),
    ``output`` (sent from here out of ``oif``), ``local-output`` (sent from here to an address of
    this namespace, over lo). ``route(packet)`` names the output interface for a packet whose
    destination DNAT changed (None: no route). ``conntrack`` (from ``Walk.conntrack()`` of the
    first packet) lets later and reply packets get the connection's NAT.

    Devices are what the kernel passes each hook: prerouting and input see only the input
    device, output only the output device, forward both, postrouting the output device and, for
    forwarded packets, the input device.
    """
    if kind not in _KINDS:
        raise BadInput(f"unknown walk kind {kind!r} (one of {', '.join(_KINDS)})")
    st = _State(
        nf,
        packet,
        facts,
        ctstate=ctstate,
        ctmark=ctmark,
        conntrack=conntrack,
        physdev_in=physdev_in,
        physdev_out=physdev_out,
    )
    results: list[HookResult] = []
    notes: list[str] = []
    plan = _plan(kind)
    cur = kind
    in_dev = iif if kind in ("input", "forward") else None
    out_dev = oif if kind in ("forward", "output") else ("lo" if kind == "local-output" else None)
    looped = False  # local-output: after postrouting the packet comes back in over lo
    i = 0
    while i < len(plan):
        hook = plan[i]
        if hook == "prerouting" and cur == "local-output":
            in_dev, looped = "lo", True
        if hook in ("prerouting", "input"):
            st.iif, st.oif = in_dev, None
        elif hook == "forward":
            st.iif, st.oif = in_dev, out_dev
        elif hook == "output":
            st.iif, st.oif = None, out_dev
        else:  # postrouting
            st.iif, st.oif = (in_dev if cur == "forward" else None), out_dev
        before = st.packet
        res = _run_hook(st, hook)
        results.append(res)
        if res.verdict != "accept":
            break
        moved = (st.packet.dst, st.packet.dport) != (before.dst, before.dport)
        if moved and hook == "prerouting" and not looped:
            cur, plan, out_dev, note = _reroute_in(st, route, cur, plan, i, out_dev)
            notes.append(note)
        elif moved and hook == "output":
            cur, plan, out_dev, note = _reroute_out(st, route, cur, plan, i, out_dev)
            notes.append(note)
        i += 1
    last = results[-1]
    deciding = last.deciding
    policy = last.policy
    if last.verdict == "accept":
        deciding, policy = _accepting_rule(results)
    nats = tuple(r.nat for r in results if r.nat is not None)
    uncertain = tuple(u for r in results for u in r.uncertain)
    return Walk(
        kind=cur,
        hooks=tuple(results),
        verdict=last.verdict,
        deciding=deciding,
        packet_before=packet,
        packet_after=st.packet,
        nats=nats,
        uncertain=uncertain,
        iif=iif if kind in ("input", "forward") else None,
        oif=out_dev if cur in ("forward", "output") else None,
        policy=policy,
        notes=tuple(n for n in notes if n),
    )


def _accepting_rule(results: list[HookResult]) -> tuple[RuleRef | None, str | None]:
    """The rule that let an accepted packet through: the last filter-type chain decided by a
    rule (a NAT rule only when no filter rule spoke), else the last policy that applied."""
    fallback: RuleRef | None = None
    for r in reversed(results):
        for v in reversed(r.chains):
            if v.rule is None:
                continue
            if v.type != "nat":
                return v.rule, None
            fallback = fallback or v.rule
    if fallback is not None:
        return fallback, None
    for r in reversed(results):
        if r.policy:
            return None, r.policy
    return None, None


def _plan(kind: str) -> list[str]:
    return {
        "input": ["prerouting", "input"],
        "forward": ["prerouting", "forward", "postrouting"],
        "output": ["output", "postrouting"],
        "local-output": ["output", "postrouting", "prerouting", "input"],
    }[kind]


def _is_local(st: _State, addr: str) -> bool:
    return _addr_type(st, addr, None) == "local"


def _reroute_in(
    st: _State,
    route: Callable[[Packet], str | None] | None,
    kind: str,
    plan: list[str],
    i: int,
    out_dev: str | None,
) -> tuple[str, list[str], str | None, str]:
    """After DNAT at prerouting the kernel routes again: local delivery or forwarding."""
    p = st.packet
    if st.facts.known and _is_local(st, p.dst):
        if kind == "input":
            return kind, plan, None, f"DNAT to {p.dst}: delivered locally"
        return "input", [*plan[: i + 1], "input"], None, f"DNAT to {p.dst}: delivered locally"
    new_plan = [*plan[: i + 1], "forward", "postrouting"]
    if route is not None:
        oif = route(p)
        note = (
            f"DNAT to {p.dst}: routed out of {oif}"
            if oif
            else f"DNAT to {p.dst}: no route known; output interface unknown"
        )
        return "forward", new_plan, oif, note
    if kind == "forward" and out_dev is not None:
        return (
            "forward",
            new_plan,
            out_dev,
            (f"DNAT to {p.dst}: assumed to leave through {out_dev} (no route lookup given)"),
        )
    return "forward", new_plan, None, f"DNAT to {p.dst}: no route known; output interface unknown"


def _reroute_out(
    st: _State,
    route: Callable[[Packet], str | None] | None,
    kind: str,
    plan: list[str],
    i: int,
    out_dev: str | None,
) -> tuple[str, list[str], str | None, str]:
    """After DNAT at output the kernel routes again (ip_route_me_harder)."""
    p = st.packet
    if st.facts.known and _is_local(st, p.dst):
        note = f"DNAT to {p.dst}: delivered locally over lo"
        if kind == "local-output":
            return kind, plan, "lo", note
        return "local-output", [*plan[: i + 1], "postrouting", "prerouting", "input"], "lo", note
    oif = route(p) if route is not None else (out_dev if kind == "output" else None)
    note = (
        f"DNAT to {p.dst}: routed out of {oif}"
        if oif
        else f"DNAT to {p.dst}: output interface unknown"
    )
    return "output", [*plan[: i + 1], "postrouting"], oif, note
