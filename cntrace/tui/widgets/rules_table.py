"""A namespace's netfilter rules, chain by chain, with marked rules highlighted."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import DataTable

from cntrace.tui.safe import safe_cell
from cntrace.tui.views.rules import RuleKey, rule_key

if TYPE_CHECKING:
    from cntrace.netfilter.model import Netfilter, Rule

RULE_COLUMNS = ("", "#", "PKTS", "BYTES", "RULE")


class RulesTable(DataTable[object]):
    """Every table and chain of one Netfilter model; marked rules carry ▶ and reverse video."""

    DEFAULT_CSS = """
    RulesTable {
        height: 1fr;
    }
    """

    def __init__(self) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, id="rules-table")
        self.rules: dict[str, Rule] = {}  # row key -> rule
        self.marked_rows: list[int] = []

    def on_mount(self) -> None:
        for col in RULE_COLUMNS:
            self.add_column(col, key=col or "mark")

    def show(self, nf: Netfilter, marked: Collection[RuleKey]) -> None:
        self.clear()
        self.rules = {}
        self.marked_rows = []
        row = 0
        for ti, table in enumerate(nf.tables):
            for chain in table.chains.values():
                head = Text(f"{table.label}  chain {chain.name}", "bold")
                if chain.hook:
                    head.append(f"  (hook {chain.hook}", "dim")
                    head.append(f", policy {chain.policy})" if chain.policy else ")", "dim")
                pk, by = ("", "") if chain.counters is None else map(str, chain.counters)
                self.add_row("", "", pk, by, safe_cell(head), key=f"c{ti}-{chain.name}")
                row += 1
                for r in chain.rules:
                    key = f"r{row}"
                    mark = rule_key(r) in marked
                    style = "bold reverse" if mark else ""
                    pk, by = ("-", "-") if r.counters is None else map(str, r.counters)
                    self.add_row(
                        Text("▶", "bold red") if mark else "",
                        Text(str(r.position), style),
                        pk,
                        by,
                        safe_cell(Text(r.text, style)),
                        key=key,
                    )
                    self.rules[key] = r
                    if mark:
                        self.marked_rows.append(row)
                    row += 1
        if self.marked_rows:
            self.move_cursor(row=self.marked_rows[0], animate=False)
            self.call_after_refresh(self._center, self.marked_rows[0])

    def _center(self, row: int) -> None:
        """Put the marked rule mid-screen, with its chain's other rules around it."""
        self.scroll_to(y=max(0, row - self.scrollable_content_region.height // 2), animate=False)

    def next_marked(self) -> None:
        if not self.marked_rows:
            return
        later = [r for r in self.marked_rows if r > self.cursor_row]
        self.move_cursor(row=later[0] if later else self.marked_rows[0], animate=True)
