"""A focusable pane that scrolls one body of text, replaced whole on every update."""

from __future__ import annotations

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from cntrace.tui.safe import safe_renderable


class ScrollText(VerticalScroll):
    """Tab focuses it; arrows and PgUp/PgDn scroll it."""

    def __init__(self, body: RenderableType, *, id: str, body_id: str) -> None:
        super().__init__(id=id, can_focus=True)
        self._body = Static(safe_renderable(body), id=body_id)

    def compose(self) -> ComposeResult:
        yield self._body

    def set_body(self, renderable: RenderableType) -> None:
        self._body.update(safe_renderable(renderable))
