"""Which rule is meant: one identity across the path's RuleRef and the netfilter model's Rule."""

from __future__ import annotations

from typing import Any

from cntrace.model import RuleRef

RuleKey = tuple[str, str, str, str, int | None]  # backend, family, table, chain, position


def rule_key(r: RuleRef | Any) -> RuleKey:
    """Identifies a rule across RuleRef and the netfilter model's Rule."""
    return (r.backend, r.family, r.table, r.chain, r.position)
