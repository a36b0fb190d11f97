"""The what-if view: type a change (or start from a finding's fix), see the path before and after
side by side. Nothing on the host is changed: the change is applied to a copy of the snapshot."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static

from cntrace.tui.messages import ConsoleMessage
from cntrace.tui.safe import safe_cell, safe_renderable
from cntrace.tui.views.whatif import WHATIF_COLUMNS
from cntrace.tui.widgets.key_bar import KeyBar
from cntrace.tui.widgets.scroll_text import ScrollText

PLACEHOLDER = "a change as you would type it: iptables -D ..., ip link set X up, sysctl -w ..."


class WhatIfScreen(Screen[None]):
    """`w` (or `f`) on the path tab; Enter in the change box predicts again, Escape goes back."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", tooltip="back to the path"),
    ]

    DEFAULT_CSS = """
    WhatIfScreen #whatif-title {
        height: 1;
        background: $boost;
        padding: 0 1;
    }
    WhatIfScreen #change {
        height: 1;
        border: none;
        padding: 0 1;
    }
    WhatIfScreen #change:focus {
        background: $boost;
    }
    WhatIfScreen #whatif-changes {
        height: auto;
        max-height: 5;
        padding: 0 1;
    }
    WhatIfScreen #whatif-hops {
        height: 1fr;
        min-height: 4;
    }
    WhatIfScreen #whatif-diff {
        height: auto;
        max-height: 40%;
        border-top: hkey $foreground 30%;
    }
    """

    @dataclass
    class Submitted(ConsoleMessage):
        """Predict the path again on the snapshot as it would be after ``text``."""

        text: str

    def __init__(self, title: Text, change: str = "") -> None:
        super().__init__()
        self._title = title
        self._change = change
        self.hops: DataTable[object] = DataTable(cursor_type="row", id="whatif-hops")

    def compose(self) -> ComposeResult:
        yield Static(safe_renderable(self._title), id="whatif-title")
        yield Input(value=self._change, placeholder=PLACEHOLDER, id="change")
        yield Static("", id="whatif-changes")
        yield self.hops
        yield ScrollText("", id="whatif-diff", body_id="whatif-diff-body")
        yield KeyBar()

    def on_mount(self) -> None:
        half = max(20, (self.size.width - 8) // 2)  # two paths side by side, wrapped to fit
        for col, width in zip(WHATIF_COLUMNS, (1, half, half), strict=True):
            self.hops.add_column(col, key=col or "mark", width=width)
        self.query_one("#change", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.set_status(Text("predicting with the change…", "italic"))
        self.post_message(self.Submitted(event.value))

    # ------------------------------------------------------------------ what the controller shows

    def set_status(self, *lines: Text) -> None:
        self.query_one("#whatif-changes", Static).update(safe_renderable(Group(*lines)))

    def show_rows(self, rows: list[tuple[Text, Text, Text]], diff: list[Text]) -> None:
        self.hops.clear()
        for n, cells in enumerate(rows):
            self.hops.add_row(*(safe_cell(c) for c in cells), key=f"row-{n}", height=None)
        self.query_one("#whatif-diff", ScrollText).set_body(safe_renderable(Group(*diff)))
        self.hops.focus()

    def show_error(self, text: str) -> None:
        self.hops.clear()
        self.query_one("#whatif-diff", ScrollText).set_body("")
        self.set_status(Text(text, "bold red"))
        self.query_one("#change", Input).focus()
