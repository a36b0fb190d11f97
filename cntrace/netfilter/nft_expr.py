"""nft JSON ``match`` statements and verdicts lowered to the model.

Left-hand sides are read by nft_fields.py, right-hand sides by nft_atoms.py; this module joins
them into a Match (with the fast path for the common field-against-scalar shape).
"""

from __future__ import annotations

from typing import Any

from cntrace.netfilter.nft_atoms import (
    ARP_OPS,
    ETHERTYPE_NUMBERS,
    ETHERTYPES,
    FLAG_KINDS,
    TYPE_KIND,
    Malformed,
    atom,
    element,
)
from cntrace.netfilter.nft_fields import L2_FIELDS, fields_of, key_types, kind_of, lhs_field
from cntrace.netfilter.nft_text import stmt_text
from cntrace.netfilter.steps import Atom, Field, Match, Verdict

__all__ = [
    "ARP_OPS", "ETHERTYPES", "ETHERTYPE_NUMBERS", "L2_FIELDS", "TYPE_KIND", "Malformed",
    "element", "fields_of", "key_types", "kind_of", "lower_match", "lower_verdict",
]  # fmt: skip


def lower_verdict(value: Any) -> Verdict:
    if not isinstance(value, dict) or len(value) != 1:
        raise Malformed(f"expected a verdict, got {value!r}")
    ((k, v),) = value.items()
    if k in ("jump", "goto"):
        target = v.get("target") if isinstance(v, dict) else None
        if not isinstance(target, str):
            raise Malformed(f"{k} without a target")
        return Verdict(k, target)
    if k in ("accept", "drop", "continue", "return", "queue"):
        return Verdict(k)
    raise Malformed(f"unknown verdict {k!r}")


def _values(
    right: Any, fields: tuple[Field, ...]
) -> tuple[tuple[tuple[Atom, ...], ...], str | None]:
    """Right-hand side -> (value tuples, named set)."""
    if isinstance(right, str) and right.startswith("@"):
        return (), right[1:]
    kinds = tuple(kind_of(f) for f in fields)
    if isinstance(right, dict) and "set" in right:
        items = right["set"]
        if not isinstance(items, list):
            items = [items]
        return tuple(element(i, kinds) for i in items), None
    if isinstance(right, list):
        if len(kinds) == 1 and kinds[0] in FLAG_KINDS:
            return ((atom(right, kinds[0]),),), None
        return tuple(element(i, kinds) for i in right), None
    return (element(right, kinds),), None


_MATCH_CACHE: dict[tuple[object, ...], Match] = {}


def lower_match(body: Any, family: str) -> Match:
    if not isinstance(body, dict):
        raise Malformed("match must be an object")
    op = body.get("op", "==")
    left = body.get("left")
    right = body.get("right")
    # Fast path: a plain field against one scalar, the bulk of every large ruleset.
    if (
        op in ("==", "!=")
        and isinstance(right, (str, int))
        and not isinstance(right, bool)
        and isinstance(left, dict)
        and len(left) == 1
    ):
        ((lk, lv),) = left.items()
        if lk in ("payload", "meta") and isinstance(lv, dict):
            key = (op, lk, *lv.values(), right)
            hit = _MATCH_CACHE.get(key)
            if hit is not None:
                return hit
            f = lhs_field(left, family)
            if not f.key.startswith(("unsupported:", "numgen.", "h:")) and not (
                isinstance(right, str) and right.startswith("@")
            ):
                m = Match((f,), op, ((atom(right, kind_of(f)),),))
                if len(_MATCH_CACHE) < 65536:
                    _MATCH_CACHE[key] = m
                return m
    fields = fields_of(left, family)
    text = ""  # rendered only where a message needs it (the rule's text is rendered lazily)
    bad = [f.key.split(":", 1)[1] for f in fields if f.key.startswith("unsupported:")]
    if bad:
        text = stmt_text("match", body)
        return Match(fields, text=text, unsupported=f"{', '.join(bad)} is not modelled")
    if any(f.key.startswith("numgen.") for f in fields) and len(fields) > 1:
        return Match(fields, text=stmt_text("match", body), unsupported="numgen in a concatenation")
    try:
        values, set_name = _values(right, fields)
    except (Malformed, ValueError, KeyError):
        if not any(f.key.startswith("h:") for f in fields):
            raise
        text = stmt_text("match", body)
        return Match(fields, text=text, unsupported=f"the value in {text!r} is not understood")
    flag_field = len(fields) == 1 and fields[0].key in ("ctstate", "ctstatus", "tcpflags")
    if op in ("in", "!") and flag_field:  # any of the bits; "!": none of them (ct status ! dnat)
        bits = 0
        for (a,) in values:
            bits |= int(a.lo)
        return Match(fields, "bits" if op == "in" else "!bits", ((Atom(bits),),), text=text)
    if op == "in":
        op = "=="
    if op not in ("==", "!=", "<", ">", "<=", ">="):
        raise Malformed(f"unknown operator {op!r}")
    if op in ("<", ">", "<=", ">=") and (set_name or len(values) != 1 or len(fields) != 1):
        raise Malformed(f"operator {op} needs one value")
    return Match(fields, op, values, set_name=set_name, text=text)
