"""The drops panel: what is being watched (or why not), then the stream of kernel drops."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from cntrace.tui.messages import ConsoleMessage
from cntrace.tui.safe import safe_renderable
from cntrace.tui.widgets.drops_table import DropsTable


class DropsPanel(Vertical):
    """Space pauses the display, `a` switches between container drops and every drop."""

    BINDINGS = [
        Binding(
            "space",
            "toggle_pause",
            "Pause",
            tooltip="pause/resume the list (drops are still counted)",
        ),
        Binding(
            "a", "toggle_all", "All/containers", tooltip="every drop, or only drops of containers"
        ),
        Binding("c", "clear", "Clear", tooltip="clear the list"),
        Binding(
            "s",
            "toggle_summary",
            "Summary",
            tooltip="counts by reason, location and container above the list (like top)",
        ),
    ]

    DEFAULT_CSS = """
    DropsPanel {
        height: 1fr;
    }
    DropsPanel #drops-status {
        height: 1;
        color: $text-muted;
    }
    DropsPanel #drops-summary {
        height: auto;
        max-height: 50%;
        display: none;
        border-bottom: solid $primary-darken-2;
    }
    """

    @dataclass
    class Settings(ConsoleMessage):
        """Pause or resume the list; every drop or only those of containers."""

        paused: bool
        everything: bool
        summary: bool = False

    def __init__(self) -> None:
        super().__init__(id="drops-panel")
        self.paused = False
        self.everything = False
        self.summary = False

    def compose(self) -> ComposeResult:
        yield Static("", id="drops-status")
        yield Static("", id="drops-summary")
        yield DropsTable()

    @property
    def table(self) -> DropsTable:
        return self.query_one(DropsTable)

    def set_summary(self, table: RenderableType) -> None:
        self.query_one("#drops-summary", Static).update(table)

    def set_status(self, text: Text | str) -> None:
        self.query_one("#drops-status", Static).update(safe_renderable(text))

    def add_drops(self, rows: Sequence[tuple[str | Text, ...]]) -> None:
        if not self.paused:
            self.table.add_drops(rows)

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self.post_message(self.Settings(self.paused, self.everything, self.summary))

    def action_toggle_all(self) -> None:
        self.everything = not self.everything
        self.post_message(self.Settings(self.paused, self.everything, self.summary))

    def action_toggle_summary(self) -> None:
        self.summary = not self.summary
        self.query_one("#drops-summary", Static).display = self.summary  # above the list
        self.post_message(self.Settings(self.paused, self.everything, self.summary))

    def action_clear(self) -> None:
        self.table.clear_drops()
