"""Everything about the hop under the timeline's cursor, wrapped (the table crops at 80 cols)."""

from __future__ import annotations

from textual.widgets import Static

from cntrace.model import Path
from cntrace.tui.views import hop_detail


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
        if path is None or index is None:
            self.update("")
        else:
            self.update(hop_detail(path, index))
