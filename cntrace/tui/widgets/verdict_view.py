"""The verdict in one highlighted line, the deciding rule, and the findings with their fixes."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from cntrace.model import Path
from cntrace.tui.views import verdict_lines


class VerdictView(VerticalScroll):
    """Shows a Path's verdict and findings, or a one-line message (an error, a hint)."""

    DEFAULT_CSS = """
    VerdictView {
        height: auto;
        max-height: 45%;
        border-top: hkey $foreground 30%;
    }
    VerdictView > Static {
        width: 100%;
    }
    """

    def __init__(self) -> None:
        super().__init__(id="verdict", can_focus=True)
        self._body = Static("", id="verdict-body")

    def compose(self):  # type: ignore[no-untyped-def]
        yield self._body

    def show(self, path: Path) -> None:
        self._body.update(Group(*verdict_lines(path)))
        self.refresh(layout=True)  # an auto-height container must be measured again

    def message(self, text: str, *, error: bool = False) -> None:
        self._body.update(Text(text, "bold red" if error else "dim"))
        self.refresh(layout=True)
