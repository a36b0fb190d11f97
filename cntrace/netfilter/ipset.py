"""Parse ``ipset save`` output, so ``-m set --match-set`` rules can be evaluated on set contents.

Only what set matches need is kept: each set's key components (``hash:ip,port`` -> ip, port) and
its members as atoms. Set types whose members cannot be compared here (``list:set``, ``bitmap``
with MACs) keep ``elements=None``, which makes rules that use them uncertain.
"""

from __future__ import annotations

from cntrace.netfilter.model import NamedSet
from cntrace.netfilter.steps import Atom
from cntrace.netfilter.values import RulesetError, port_number, prefix_atom, range_atom

_COMPONENTS = {"ip", "net", "port", "iface", "mark"}


def parse(text: str, source: str = "ipset") -> dict[str, NamedSet]:
    """Sets by name, with their members."""
    specs: dict[str, tuple[str, ...] | None] = {}
    members: dict[str, list[tuple[Atom, ...]]] = {}
    families: dict[str, str] = {}
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if parts[0] == "create" and len(parts) >= 3:
            name, typ = parts[1], parts[2]
            comps = tuple(typ.split(":", 1)[1].split(",")) if ":" in typ else ()
            usable = typ.startswith("hash:") and comps and all(k in _COMPONENTS for k in comps)
            specs[name] = comps if usable else None
            members[name] = []
            families[name] = "ip6" if "inet6" in parts else "ip"
        elif parts[0] == "add" and len(parts) >= 3:
            name = parts[1]
            if name not in specs:
                raise RulesetError(f"member of undeclared set {name!r}", lineno, source=source)
            spec = specs[name]
            if spec is None:
                continue
            try:
                members[name].append(_member(parts[2], spec))
            except (ValueError, KeyError) as exc:
                raise RulesetError(f"set {name}: {exc}", lineno, source=source) from None
        elif parts[0] in ("flush", "destroy", "swap", "rename"):
            continue
        else:
            raise RulesetError(f"unexpected line {line[:60]!r}", lineno, source=source)
    out: dict[str, NamedSet] = {}
    for name, kinds in specs.items():
        out[name] = NamedSet(
            name=name,
            family=families[name],
            table="ipset",
            key_types=kinds or (),
            elements=tuple(members[name]) if kinds is not None else None,
        )
    return out


def _member(text: str, kinds: tuple[str, ...]) -> tuple[Atom, ...]:
    parts = text.split(",")
    if len(parts) != len(kinds):
        raise ValueError(f"member {text!r} does not fit {','.join(kinds)}")
    atoms: list[Atom] = []
    for part, kind in zip(parts, kinds, strict=True):
        if kind in ("ip", "net"):
            if "-" in part and "/" not in part:
                lo, hi = part.split("-", 1)
                atoms.append(range_atom(lo, hi)[1])
            else:
                atoms.append(prefix_atom(part)[1])
        elif kind == "port":
            port = part.split(":", 1)[1] if ":" in part else part
            lo, _, hi = port.partition("-")
            a = port_number(lo)
            b = port_number(hi) if hi else None
            atoms.append(Atom(a, b if b != a else None))
        elif kind == "iface":
            atoms.append(Atom(part.removeprefix("physdev:")))
        else:
            atoms.append(Atom(int(part, 0)))
    return tuple(atoms)
