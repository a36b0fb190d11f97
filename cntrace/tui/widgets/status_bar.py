"""One line under the header saying what the console is looking at: live or post-mortem."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from cntrace.tui.safe import safe_text


class StatusBar(Static):
    """Mode, host, container count and the time of the snapshot shown."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        width: 100%;
        background: $boost;
        color: $text;
        padding: 0 1;
    }
    StatusBar.post-mortem {
        background: $warning 30%;
    }
    """

    def set_status(self, text: Text, *, post_mortem: bool = False) -> None:
        """Most important first: the line is cropped at the terminal's width."""
        self.set_class(post_mortem, "post-mortem")
        text.no_wrap = True
        text.overflow = "ellipsis"
        self.update(safe_text(text))
