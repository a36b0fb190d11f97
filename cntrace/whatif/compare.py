"""Two predictions of the same question side by side: which hops, verdict, decisive rule and
findings a change alters. Hops are aligned on where they happen (direction, kind, namespace,
interface), so a hop that only changed its packet or outcome is one row, not two."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from cntrace.model import Hop, Path, RuleRef


@dataclass(frozen=True)
class HopRow:
    """One hop before and after a what-if change (None: absent on that side)."""

    before: Hop | None
    after: Hop | None

    @property
    def same(self) -> bool:
        return (
            self.before is not None
            and self.after is not None
            and _hop_key(self.before) == _hop_key(self.after)
        )


@dataclass(frozen=True)
class Comparison:
    """A path before and after a what-if change, hop against hop."""

    before: Path
    after: Path
    rows: tuple[HopRow, ...]

    @property
    def verdict_changed(self) -> bool:
        b, a = self.before.verdict, self.after.verdict
        return (b.status, b.summary) != (a.status, a.summary)

    @property
    def rule_changed(self) -> bool:
        return _rule_key(self.before.verdict.rule) != _rule_key(self.after.verdict.rule)

    @property
    def findings_gone(self) -> tuple[str, ...]:
        after = {f.code for f in self.after.findings}
        return tuple(f.code for f in self.before.findings if f.code not in after)

    @property
    def findings_new(self) -> tuple[str, ...]:
        before = {f.code for f in self.before.findings}
        return tuple(f.code for f in self.after.findings if f.code not in before)

    @property
    def hops_changed(self) -> int:
        return sum(1 for r in self.rows if not r.same)

    @property
    def changed(self) -> bool:
        return bool(
            self.verdict_changed
            or self.rule_changed
            or self.hops_changed
            or self.findings_gone
            or self.findings_new
        )


def _place(h: Hop) -> tuple[str, str, str, str | None]:
    return (h.direction, h.kind, h.netns_label, h.interface)


def _rule_key(r: RuleRef | None) -> tuple[str, str, str, str] | None:
    return None if r is None else (r.backend, r.table, r.chain, r.text)


def _hop_key(h: Hop) -> tuple[Any, ...]:
    """What makes two hops the same step (the index may shift when hops are added)."""
    return (*_place(h), h.packet, h.summary, h.ok, _rule_key(h.rule))


def compare(before: Path, after: Path) -> Comparison:
    a = [_place(h) for h in before.hops]
    b = [_place(h) for h in after.hops]
    rows: list[HopRow] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows.extend(
                HopRow(before.hops[i], after.hops[j])
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            )
            continue
        left = list(before.hops[i1:i2])
        right = list(after.hops[j1:j2])
        for k in range(max(len(left), len(right))):
            rows.append(
                HopRow(left[k] if k < len(left) else None, right[k] if k < len(right) else None)
            )
    return Comparison(before, after, tuple(rows))


def document(c: Comparison) -> dict[str, Any]:
    """The differences as plain values (the JSON `differences` member)."""

    def rule(r: RuleRef | None) -> str | None:
        return None if r is None else r.describe()

    return {
        "changed": c.changed,
        "verdict": {"before": c.before.verdict.status, "after": c.after.verdict.status},
        "decisive_rule": {
            "before": rule(c.before.verdict.rule),
            "after": rule(c.after.verdict.rule),
        },
        "findings": {"gone": list(c.findings_gone), "new": list(c.findings_new)},
        "hops": [
            {
                "before": r.before.index if r.before else None,
                "after": r.after.index if r.after else None,
                "same": r.same,
            }
            for r in c.rows
        ],
    }
