"""The rules view: one namespace's netfilter rules with the rules in question marked."""

from __future__ import annotations

from collections.abc import Collection

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Static

from cntrace.errors import CntraceError
from cntrace.model import Snapshot
from cntrace.topology import Topology
from cntrace.tui.safe import safe_renderable
from cntrace.tui.views.rules import RuleKey
from cntrace.tui.widgets.key_bar import KeyBar
from cntrace.tui.widgets.rules_table import RulesTable


class RulesScreen(Screen[None]):
    """Opened from a path's deciding rule (or a hop's rule); Escape goes back."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", tooltip="back to where you came from"),
        Binding("q", "app.pop_screen", "Back", show=False, tooltip="back, like escape"),
        Binding("n", "next_marked", "Next marked", tooltip="jump to the next marked rule"),
    ]

    DEFAULT_CSS = """
    RulesScreen #rules-title {
        height: auto;
        background: $boost;
        padding: 0 1;
    }
    RulesScreen #rule-detail {
        height: auto;
        max-height: 6;
        border-top: hkey $foreground 30%;
        padding: 0 1;
    }
    """

    def __init__(
        self, snapshot: Snapshot, netns: int | None, marked: Collection[RuleKey], why: str
    ) -> None:
        super().__init__()
        self._snapshot = snapshot
        self._netns = netns
        self._marked = set(marked)
        self._why = why

    def compose(self) -> ComposeResult:
        yield Static("", id="rules-title")
        yield RulesTable()
        yield Static("", id="rule-detail")
        yield KeyBar()

    def on_mount(self) -> None:
        topo = Topology(self._snapshot)
        ns = topo.ns(self._netns)
        title = Text("rules in ", "bold")
        title.append(topo.label(self._netns) if self._netns is not None else "?", "bold")
        title.append(f"  {self._why}", "dim")
        if self._marked:
            title.append("  ▶ marks it", "dim")
        self.query_one("#rules-title", Static).update(safe_renderable(title))
        table = self.query_one(RulesTable)
        if ns is None or ns.ruleset.empty:
            self.query_one("#rule-detail", Static).update(
                Text("no netfilter ruleset was read in this namespace", "dim")
            )
            return
        try:
            from cntrace import netfilter

            nf = netfilter.load(ns.ruleset)
        except CntraceError as exc:
            self.query_one("#rule-detail", Static).update(
                safe_renderable(Text(str(exc), "bold red"))
            )
            return
        table.show(nf, self._marked)
        table.focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        table = self.query_one(RulesTable)
        rule = table.rules.get(str(event.row_key.value))
        detail = self.query_one("#rule-detail", Static)
        if rule is None:
            detail.update("")
            return
        t = Text(f"{rule.backend} {rule.family} {rule.table}/{rule.chain} #{rule.position}", "bold")
        if rule.handle is not None:
            t.append(f" handle {rule.handle}", "dim")
        if rule.counters is not None:
            t.append(f"  {rule.counters[0]} packets, {rule.counters[1]} bytes", "dim")
        t.append("\n")
        t.append(rule.text)
        detail.update(safe_renderable(t))

    def action_next_marked(self) -> None:
        self.query_one(RulesTable).next_marked()
