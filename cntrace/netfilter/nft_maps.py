"""Statement values the packet decides: map lookups, hashes and bit operations.

``meta mark set tcp dport map { 80 : 2 }``, ``ct mark set jhash ip saddr mod 4``, ``meta mark set
ct mark >> 8``, ``dnat ip to ip daddr . tcp dport map @z``: nft computes these per packet, so the
walk does too. ``lower_value`` turns the JSON into a Lookup; ``lookup`` gives its value for the
packet (or None on a miss, which ends the rule as the kernel's NFT_BREAK does), computing
``jhash`` exactly as the kernel (lib/jhash.h over the source registers). ``symhash`` is keyed by
the kernel's boot-time random secret, and a jhash loaded without a seed by a random one: both are
said so, not guessed.
"""

from __future__ import annotations

from typing import Any

from cntrace.netfilter.nft_atoms import Malformed, element
from cntrace.netfilter.nft_fields import fields_of, kind_of, lhs_field
from cntrace.netfilter.probe_fields import UNKNOWN
from cntrace.netfilter.probe_headers import STATE, Why
from cntrace.netfilter.state import State, value
from cntrace.netfilter.steps import MASK32, Atom, Field, Hash, Lookup

_HASHES = ("jhash", "symhash")


def lower_value(expr: Any, family: str, data_kinds: tuple[str, ...]) -> Lookup | str:
    """A statement value as a Lookup, or the reason it cannot be one (a construct no packet
    field stands for). ``data_kinds`` are the atom kinds of an anonymous map's values."""
    if isinstance(expr, dict) and len(expr) == 1 and "map" in expr:
        body = expr["map"]
        if not isinstance(body, dict):
            raise Malformed("map must be an object")
        key = _key(body.get("key"), family)
        if isinstance(key, str):
            return key
        data = body.get("data")
        if isinstance(data, str) and data.startswith("@"):
            return Lookup(key, map_name=data[1:])
        if not (isinstance(data, dict) and "set" in data):
            raise Malformed("map data must be a set or @map")
        kinds = tuple("int" if isinstance(k, Hash) else kind_of(k) for k in key)
        elems = []
        for pair in data["set"]:
            if not isinstance(pair, list) or len(pair) != 2:
                raise Malformed("map elements must be [key, value] pairs")
            elems.append((element(pair[0], kinds), _data(pair[1], data_kinds)))
        return Lookup(key, tuple(elems))
    key = _key(expr, family)
    if isinstance(key, str):
        return key
    if len(key) != 1:
        raise Malformed("a concatenation is not a value")
    return Lookup(key, mapped=False)


def _data(val: Any, kinds: tuple[str, ...]) -> tuple[Atom, ...]:
    """A map value: a concatenation takes as many of ``kinds`` as it has parts."""
    parts = val["concat"] if isinstance(val, dict) and "concat" in val else [val]
    if len(parts) > len(kinds):
        raise Malformed("map value does not fit the statement")
    return element(val, kinds[: len(parts)])


def _key(expr: Any, family: str) -> tuple[Field | Hash, ...] | str:
    parts = expr["concat"] if isinstance(expr, dict) and "concat" in expr else [expr]
    if not isinstance(parts, list) or not parts:
        raise Malformed("bad concat expression")
    out: list[Field | Hash] = []
    for p in parts:
        if isinstance(p, dict) and len(p) == 1 and next(iter(p)) in _HASHES:
            out.append(_hash(p, family))
            continue
        f = lhs_field(p, family)
        if f.key.startswith("unsupported:"):
            return f"{f.key.split(':', 1)[1]} is not modelled"
        out.append(f)
    return tuple(out)


def _hash(expr: dict[str, Any], family: str) -> Hash:
    ((kind, v),) = expr.items()
    if not isinstance(v, dict):
        raise Malformed(f"bad {kind} expression")
    mod, offset, seed = v.get("mod"), v.get("offset", 0), v.get("seed")
    if not isinstance(mod, int) or mod < 1 or not isinstance(offset, int):
        raise Malformed(f"{kind} needs a positive mod")
    fields = fields_of(v["expr"], family) if kind == "jhash" else ()
    return Hash(kind, fields, mod, seed if isinstance(seed, int) else None, offset)


# --------------------------------------------------------------------------- evaluation


def lookup(
    st: State, lk: Lookup, sets: dict[str, Any] | None
) -> tuple[tuple[Atom, ...] | None, str | None]:
    """The value for the packet: (atoms, None); (None, None) on a miss or an absent key field
    (the rule ends); (None, reason) when it cannot be known."""
    key: list[int | str] = []
    for part in lk.key:
        x = _hash_value(st, part) if isinstance(part, Hash) else _field(st, part)
        if x is None or isinstance(x, Why):
            return None, x.why if x is not None else None
        key.append(x)
    if not lk.mapped:
        return (Atom(key[0]),), None
    if lk.map_name is not None:
        named = sets.get(lk.map_name) if sets is not None else None
        if named is None or named.elements is None:
            return None, f"map @{lk.map_name} is not known"
        pairs = list(zip(named.elements, named.values or (None,) * len(named.elements),
                         strict=False))  # fmt: skip
    else:
        pairs = list(lk.elements)
    for atoms, data in pairs:
        if all(a.contains(x) for a, x in zip(atoms, key, strict=False)):
            if data is None:
                return None, f"a value of map @{lk.map_name} is not understood"
            return data, None
    return None, None


def _field(st: State, f: Field) -> int | str | Why | None:
    """A key field's value; None when absent, a Why when unknowable."""
    if f.key.startswith("numgen."):
        if f.key == "numgen.random" and f.mask == 1:
            return int(f.arg or "0")
        return Why(f"{f.key.replace('.', ' ')} mod {f.mask}: the kernel's counter or random choice")
    x = value(st, f)
    if x is UNKNOWN:
        return Why(f"{f.key} is not known for this packet")
    if x is None or isinstance(x, (int, str, Why)):
        return x
    return Why(f"{f.key} cannot be a key")


def _hash_value(st: State, h: Hash) -> int | Why | None:
    if h.mod == 1:
        return h.offset  # reciprocal_scale(x, 1) is 0 whatever the hash
    if h.kind == "symhash":
        return Why(f"symhash: keyed by the kernel's boot-time random secret ({STATE})")
    if h.seed is None:
        return Why("jhash without a seed: the kernel drew a random seed when the rule was loaded")
    data = b""
    for f in h.fields:
        raw = _register_bytes(st, f)
        if not isinstance(raw, bytes):
            return raw
        data += raw + bytes(-len(raw) % 4) if len(h.fields) > 1 else raw
    return ((jhash(data, h.seed) * h.mod) >> 32) + h.offset  # reciprocal_scale


def _register_bytes(st: State, f: Field) -> bytes | Why | None:
    """The bytes an nft source expression leaves in its register (payload in network order,
    meta and ct marks in host order, little-endian here)."""
    x = _field(st, f)
    if x is None or isinstance(x, Why):
        return x
    if isinstance(x, str):
        if f.key in ("iifname", "oifname"):
            return x.encode()[:16].ljust(16, b"\0")
    elif f.key in ("saddr", "daddr"):
        return x.to_bytes(16 if st.packet.family == 6 else 4, "big")
    elif f.key in ("sport", "dport"):
        return x.to_bytes(2, "big")
    elif f.key == "l4proto":
        return x.to_bytes(1, "big")
    elif f.key in ("mark", "ctmark"):
        return (x & MASK32).to_bytes(4, "little")
    return Why(f"jhash over {f.key} is not modelled")


def _rol(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & MASK32


def jhash(data: bytes, initval: int) -> int:
    """Linux's jhash (lib/jhash.h, Bob Jenkins' lookup3) of ``data``."""
    a = b = c = (0xDEADBEEF + len(data) + initval) & MASK32
    k, n = data, len(data)
    while n > 12:
        a = (a + int.from_bytes(k[0:4], "little")) & MASK32
        b = (b + int.from_bytes(k[4:8], "little")) & MASK32
        c = (c + int.from_bytes(k[8:12], "little")) & MASK32
        a, b, c = _mix(a, b, c)
        k, n = k[12:], n - 12
    if n == 0:
        return c
    tail = k.ljust(12, b"\0")
    a = (a + int.from_bytes(tail[0:4], "little")) & MASK32
    b = (b + int.from_bytes(tail[4:8], "little")) & MASK32
    c = (c + int.from_bytes(tail[8:12], "little")) & MASK32
    return _final(a, b, c)


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    m = MASK32
    a = (a - c) & m
    a ^= _rol(c, 4)
    c = (c + b) & m
    b = (b - a) & m
    b ^= _rol(a, 6)
    a = (a + c) & m
    c = (c - b) & m
    c ^= _rol(b, 8)
    b = (b + a) & m
    a = (a - c) & m
    a ^= _rol(c, 16)
    c = (c + b) & m
    b = (b - a) & m
    b ^= _rol(a, 19)
    a = (a + c) & m
    c = (c - b) & m
    c ^= _rol(b, 4)
    b = (b + a) & m
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    m = MASK32
    c ^= b
    c = (c - _rol(b, 14)) & m
    a ^= c
    a = (a - _rol(c, 11)) & m
    b ^= a
    b = (b - _rol(a, 25)) & m
    c ^= b
    c = (c - _rol(b, 16)) & m
    a ^= c
    a = (a - _rol(c, 4)) & m
    b ^= a
    b = (b - _rol(a, 14)) & m
    c ^= b
    c = (c - _rol(b, 24)) & m
    return c
