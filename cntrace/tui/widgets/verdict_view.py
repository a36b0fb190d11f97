"""The verdict in one highlighted line, the deciding rule, and the findings with their fixes."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

from cntrace.model import Path
from cntrace.tui.views.path import verdict_lines
from cntrace.tui.widgets.scroll_text import ScrollText


class VerdictView(ScrollText):
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
        super().__init__("", id="verdict", body_id="verdict-body")

    def show(self, path: Path) -> None:
        self.set_body(Group(*verdict_lines(path)))
        self.refresh(layout=True)  # an auto-height container must be measured again

    def message(self, text: str, *, error: bool = False) -> None:
        self.set_body(Text(text, "bold red" if error else "dim"))
        self.refresh(layout=True)
