"""The details of the selected topology node: interfaces, routes, sockets, sysctls, rules."""

from __future__ import annotations

from rich.console import RenderableType
from textual.containers import VerticalScroll
from textual.widgets import Static


class DetailsPane(VerticalScroll):
    """Scrolls on its own (Tab focuses it; arrows and PgUp/PgDn move)."""

    DEFAULT_CSS = """
    DetailsPane {
        width: 3fr;
        height: 1fr;
        border-left: vkey $foreground 30%;
        padding: 0 1;
    }
    """

    def __init__(self) -> None:
        super().__init__(id="details", can_focus=True)
        self._body = Static("select a node", id="details-body")

    def compose(self):  # type: ignore[no-untyped-def]
        yield self._body

    def show(self, renderable: RenderableType) -> None:
        self._body.update(renderable)
        self.scroll_home(animate=False)
