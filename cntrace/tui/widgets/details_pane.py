"""The details of the selected topology node: interfaces, routes, sockets, sysctls, rules."""

from __future__ import annotations

from rich.console import RenderableType

from cntrace.tui.widgets.scroll_text import ScrollText


class DetailsPane(ScrollText):
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
        super().__init__("select a node", id="details", body_id="details-body")

    def show(self, renderable: RenderableType) -> None:
        self.set_body(renderable)
        self.scroll_home(animate=False)
