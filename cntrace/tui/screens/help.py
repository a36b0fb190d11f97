"""`?`: every key of the console, gathered from the bindings themselves so it cannot drift."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

# Keys handled by textual's own widgets that the console relies on.
BUILTIN_KEYS = (
    ("enter", "in the filter box: keep the filter, back to the table"),
    ("enter", "in the destination box: predict the path, then trace it live when possible"),
    ("enter", "in the what-if change box: predict the path again as if the change were made"),
    ("enter, space", "in the topology tree: expand or collapse the node"),
    ("tab, shift+tab", "move between the boxes and panes of a tab"),
    ("arrows, pgup, pgdn", "move in tables, trees and text; home/end jump"),
)

KEY_NAMES = {"slash": "/", "question_mark": "?", "space": "space", "escape": "esc"}


def key_label(key: str) -> str:
    return ", ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in key.split(","))


def bindings_of(cls: type) -> list[Binding]:
    """The bindings of ``cls`` that mean something of their own (plain cursor movement is in
    BUILTIN_KEYS)."""
    out: list[Binding] = []
    for item in getattr(cls, "BINDINGS", []):
        b = Binding(*item) if isinstance(item, tuple) and len(item) >= 2 else item
        if isinstance(b, Binding) and b.description:
            out.append(b)
    return out


def help_sections() -> list[tuple[str, list[Binding]]]:
    """(section, bindings) for every place a key means something."""
    from cntrace.tui.app import CntraceApp
    from cntrace.tui.screens.main import MainScreen
    from cntrace.tui.screens.rules import RulesScreen
    from cntrace.tui.screens.whatif import WhatIfScreen
    from cntrace.tui.widgets.containers_table import ContainersTable
    from cntrace.tui.widgets.drops_panel import DropsPanel
    from cntrace.tui.widgets.filter_input import FilterInput
    from cntrace.tui.widgets.hop_timeline import HopTimeline
    from cntrace.tui.widgets.path_panel import PathPanel

    return [
        ("Everywhere", bindings_of(CntraceApp) + bindings_of(MainScreen)),
        ("Containers", bindings_of(ContainersTable)),
        ("Filter box", bindings_of(FilterInput)),
        ("Path", bindings_of(PathPanel)),
        ("Path: hop timeline", bindings_of(HopTimeline)),
        ("Drops", bindings_of(DropsPanel)),
        ("Rules view", bindings_of(RulesScreen)),
        ("What-if view", bindings_of(WhatIfScreen)),
        ("Help", bindings_of(HelpScreen)),
    ]


class HelpScreen(ModalScreen[None]):
    """A scrollable list of keys; Escape, q or ? closes it."""

    BINDINGS = [
        Binding(
            "escape,q,question_mark", "app.pop_screen", "Close help", tooltip="close this help"
        ),
    ]

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > VerticalScroll {
        width: 76;
        max-width: 100%;
        height: 90%;
        border: round $accent;
        background: $surface;
        padding: 0 1;
    }
    """

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, pad_edge=False, expand=True)
        table.add_column("key", style="bold", no_wrap=True, width=14)
        table.add_column("does", ratio=1)
        for section, bindings in help_sections():
            table.add_row(Text(section, "bold underline"), "")
            for b in bindings:
                table.add_row(key_label(b.key), b.tooltip or b.description or b.action)
            table.add_row("", "")
        table.add_row(Text("Text boxes and moving", "bold underline"), "")
        for key, does in BUILTIN_KEYS:
            table.add_row(key, does)
        with VerticalScroll():
            yield Static(table, id="help-body")
