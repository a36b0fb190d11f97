"""Everything about the hop under the timeline's cursor, wrapped (the table crops at 80 cols)."""

from __future__ import annotations

from textual.widgets import Static

from cntrace.model import Path
from cntrace.tui.safe import safe_renderable
from cntrace.tui.views.path import hop_detail


class HopDetail(Static):
    """Step, packet, rule, evidence and live sighting of one hop."""

    DEFAULT_CSS = """
    HopDetail {
        height: auto;
        max-height: 4;
        padding: 0 1;
        background: $boost;
    }
    """

    def show(self, path: Path | None, index: int | None) -> None:
        text = hop_detail(path, index) if path is not None and index is not None else None
        self.display = bool(text)
        self.update(safe_renderable(text or ""))
