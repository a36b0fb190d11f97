"""Whether a match holds for the packet, and which verdict a verdict map gives.

A match that cannot be decided answers with the reason instead of True/False; the caller assumes
it holds and records the rule as uncertain.
"""

from __future__ import annotations

from cntrace.netfilter import stateful
from cntrace.netfilter.model import PORT_PROTOS, NamedSet, Table
from cntrace.netfilter.probe_fields import UNKNOWN
from cntrace.netfilter.probe_headers import Why, proto_num
from cntrace.netfilter.state import State, value
from cntrace.netfilter.steps import Atom, Field, Match, Verdict, VerdictMap
from cntrace.netfilter.values import ip_to_int

_STATUS_KNOWN = 8 | 2 | 16 | 32  # confirmed, seen-reply, snat, dnat


def _hit(values: tuple[tuple[Atom, ...], ...], vs: tuple[object, ...]) -> bool:
    if len(vs) == 1:
        v = vs[0]
        return any(tup[0].contains(v) for tup in values)
    return any(all(a.contains(x) for a, x in zip(tup, vs, strict=False)) for tup in values)


def _set_values(
    st: State, m: Match, table: Table | None
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


def _ipset_values(st: State, m: Match, s: NamedSet) -> tuple[object, ...] | str:
    vals: list[object] = []
    p = st.packet
    for i, f in enumerate(m.fields):
        kind = s.key_types[i] if i < len(s.key_types) else "ip"
        src = f.arg == "src"
        if kind in ("ip", "net"):
            vals.append(ip_to_int(p.src if src else p.dst)[1])
        elif kind == "port":
            if proto_num(p) not in PORT_PROTOS:
                return "ipset port component on a packet without ports"
            vals.append(p.sport if src else p.dport)
        elif kind == "iface":
            vals.append((st.iif if src else st.oif) or "")
        elif kind == "mark":
            vals.append(p.mark)
        else:
            return f"ipset type component {kind!r} is not modelled"
    return tuple(vals)


def match_holds(st: State, m: Match, table: Table | None) -> bool | str:
    """True/False, or the reason it cannot be decided."""
    if m.unsupported:
        return m.unsupported
    fields = m.fields
    if fields and fields[0].key[:3] == "st:":
        return stateful.holds(st, m, table, match_holds)
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
                return stateful.numgen_reason(key, f.mask)
        elif key == "port":
            both = [
                value(st, Field("sport", proto=f.proto)),
                value(st, Field("dport", proto=f.proto)),
            ]
            if both[0] is None:
                return False
            hit = any(_hit(values, (x,)) for x in both)
            return hit if m.op == "==" else not hit
        else:
            v = value(st, f)
        if v is None:
            return False
        if v is UNKNOWN:
            return f"{key} is not known for this packet"
        if isinstance(v, Why):
            return v.why
        op = m.op
        if op == "==":
            return _hit(values, (v,))
        if op == "!=":
            return not _hit(values, (v,))
        if op in ("bits", "!bits"):
            bits = 0
            for (a,) in values:
                bits |= int(a.lo)
            if key == "ctstatus" and bits & ~_STATUS_KNOWN and st.ctstate != "new":
                return "conntrack status bits other than snat/dnat/confirmed/seen-reply"
            hit = isinstance(v, int) and bool(v & bits)
            return hit if op == "bits" else not hit
        ref = values[0][0].lo
        if not isinstance(v, int) or not isinstance(ref, int):
            return f"cannot compare {key} with {op}"
        return {"<": v < ref, ">": v > ref, "<=": v <= ref, ">=": v >= ref}[op]
    vs2 = []
    for f in fields:
        x = value(st, f)
        if x is None:
            return False
        if x is UNKNOWN:
            return f"{f.key} is not known for this packet"
        if isinstance(x, Why):
            return x.why
        vs2.append(x)
    hit = _hit(values, tuple(vs2))
    return hit if m.op == "==" else not hit


def vmap_verdict(
    st: State, vm: VerdictMap, table: Table | None
) -> tuple[Verdict | None, str | None]:
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
            why = stateful.numgen_reason(f.key, f.mask)
            vs.append(int(f.arg or "0"))  # assume the first choice
            continue
        x = value(st, f)
        if x is None:
            return None, None
        if x is UNKNOWN:
            return None, f"{f.key} is not known for this packet"
        if isinstance(x, Why):
            return None, x.why
        vs.append(x)
    key = tuple(vs)
    for atoms, verdict in pairs:
        if all(a.contains(x) for a, x in zip(atoms, key, strict=False)):
            return verdict, why
    return None, why
