"""The incremental filter of the containers table (`/` opens it, Escape clears it)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input

from cntrace.tui.messages import ConsoleMessage


class FilterInput(Input):
    """Filters as you type; Enter keeps the filter and returns to the table."""

    BINDINGS = [
        Binding("escape", "clear_filter", "Clear filter", tooltip="clear the filter and close it")
    ]

    DEFAULT_CSS = """
    FilterInput {
        height: 1;
        border: none;
        padding: 0 1;
        display: none;
    }
    FilterInput.open {
        display: block;
    }
    FilterInput:focus {
        border: none;
        background: $boost;
    }
    """

    @dataclass
    class Filtered(ConsoleMessage):
        """The filter's text changed (every keystroke)."""

        text: str

    @dataclass
    class Done(Message):
        """Leave the filter (keep its text unless ``cleared``)."""

        cleared: bool

    def __init__(self) -> None:
        super().__init__(placeholder="filter: words to match anywhere in a row", id="filter")

    def open(self) -> None:
        self.add_class("open")
        self.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.post_message(self.Filtered(event.value))

    def action_clear_filter(self) -> None:
        self.value = ""
        self.remove_class("open")
        self.post_message(self.Done(cleared=True))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not self.value:
            self.remove_class("open")
        self.post_message(self.Done(cleared=False))
