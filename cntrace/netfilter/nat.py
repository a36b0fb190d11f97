"""NAT: what a dnat/snat/masquerade/redirect step does to the packet, and what conntrack does to
the later packets of a NATed connection.

The source MASQUERADE picks and the address REDIRECT sends to follow the kernel's choices
(inet_select_addr, the input device's first address); ranges and random ports make the answer
one possible outcome, said so.
"""

from __future__ import annotations

from dataclasses import replace

from cntrace.netfilter.model import Rule, Table
from cntrace.netfilter.nft_maps import lookup
from cntrace.netfilter.results import Nat
from cntrace.netfilter.state import State
from cntrace.netfilter.steps import MASK32, Atom, NatSpec
from cntrace.netfilter.values import int_address, ip_to_int, prefix_atom

DST_HOOKS = ("prerouting", "output")  # where the kernel does destination NAT


def _usable_source(addr: str, family: int) -> bool:
    """Addresses MASQUERADE may pick: universe scope (not loopback or link-local)."""
    if (":" in addr) != (family == 6):
        return False
    if family == 4:
        return not addr.startswith("127.")
    return addr != "::1" and not addr.lower().startswith("fe80:")


def _primaries(st: State, iface: str) -> list[tuple[str, Atom | None]]:
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


def _masq_source(st: State, iface: str | None, nexthop: str) -> str | None:
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


def _first_address(st: State, iface: str | None) -> str | None:
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


def _no_address(kind: str, device: str, known: bool) -> tuple[str, Nat | None, str | None]:
    """The device has no address to NAT to: the kernel drops, unless its addresses are unknown."""
    if not known:
        return "accept", None, f"{kind}: the addresses of {device} are not known"
    return "drop", None, None


def _looked_up(st: State, spec: NatSpec, table: Table | None) -> NatSpec | str | None:
    """The NAT statement with the address/port its map gives this packet (None: no element,
    the rule ends; a str: why the value is not known)."""
    assert spec.lookup is not None
    found, why = lookup(st, spec.lookup, table.sets if table is not None else None)
    if found is None:
        return why
    addr = addr_hi = None
    port, port_hi = spec.port, spec.port_hi
    fam = st.packet.family
    for what, a in zip(spec.into, found, strict=False):
        if not isinstance(a.lo, int):
            return f"{spec.kind}: the map gives {a.lo!r}"
        if what == "addr":
            addr = int_address(a.lo, fam)
            addr_hi = int_address(a.hi, fam) if a.hi is not None else None
        else:
            port, port_hi = a.lo, a.hi
    return replace(spec, addr=addr, addr_hi=addr_hi, port=port, port_hi=port_hi, lookup=None)


def _netmap(spec: NatSpec, old: str) -> str:
    """nft ``snat ip prefix to ...`` (NF_NAT_RANGE_NETMAP): the prefix's network bits, the old
    address's host bits."""
    _, lo = ip_to_int(spec.addr or old)
    _, hi = ip_to_int(spec.addr_hi or spec.addr or old)
    ver, cur = ip_to_int(old)
    full = MASK32 if ver == 4 else (1 << 128) - 1
    keep = ~(lo ^ hi) & full
    return int_address((cur & ~keep & full) | (lo & keep), ver)


def apply_nat(
    st: State, spec: NatSpec, rule: Rule, hook: str, table: Table | None = None
) -> tuple[str, Nat | None, str | None]:
    """Apply a NAT rule: (verdict, the translation, an uncertainty reason); verdict "break"
    when the statement's map has no element for the packet (the rule ends, the walk goes on)."""
    p = st.packet
    ref = rule.ref()
    if spec.unsupported:
        return "accept", None, spec.unsupported
    if spec.lookup is not None:
        got = _looked_up(st, spec, table)
        if got is None:
            return "break", None, None
        if isinstance(got, str):
            return "accept", None, got
        spec = got
    if "netmap" in spec.flags and spec.addr:
        old = p.dst if spec.kind == "dnat" else p.src
        if (":" in old) == (":" in spec.addr):
            spec = replace(spec, addr=_netmap(spec, old), addr_hi=None)
    dst_hook = hook in DST_HOOKS
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
                known = st.iif in st.facts.iface_addresses
                return _no_address("REDIRECT", st.iif or "the input interface", known)
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
                return _no_address("MASQUERADE", st.oif or "the output interface", st.facts.known)
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


def conntrack_nat(st: State, hook: str) -> Nat | None:
    """Translation of a later packet from its connection's tuples (no nat chains run)."""
    ct = st.conntrack
    if ct is None:
        return None
    p = st.packet
    o, n = ct.original, ct.nated
    after = p
    if hook in DST_HOOKS:
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
