"""The path's hops in order, filled in as the prediction and then live sightings arrive."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.widgets import DataTable

from cntrace.model import Path
from cntrace.tui.messages import ConsoleMessage
from cntrace.tui.safe import safe_cell
from cntrace.tui.views.path import hop_columns, hop_rows


class HopTimeline(DataTable[object]):
    """One row per hop; the deciding hop is marked ✗ and gets the cursor."""

    BINDINGS = [
        Binding(
            "enter",
            "open_rule",
            "Rule of this hop",
            show=False,
            tooltip="rules view at this hop's netfilter rule",
        )
    ]

    DEFAULT_CSS = """
    HopTimeline {
        height: 1fr;
        min-height: 4;
    }
    """

    @dataclass
    class OpenRule(ConsoleMessage):
        """Open the rules view at the rule of hop ``index``."""

        index: int

    def __init__(self) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, id="hops")
        self._keys: list[str] = []
        self._columns: tuple[str, ...] = ()

    def show(self, path: Path | None) -> None:
        self._keys = []
        if path is None:
            self.clear()
            return
        columns = hop_columns(path)
        if columns != self._columns:
            self.clear(columns=True)
            self._columns = columns
            for col in columns:
                self.add_column(col, key=col)
        else:
            self.clear()
        target = 0
        for i, (key, cells) in enumerate(hop_rows(path)):
            self.add_row(*(safe_cell(c) for c in cells), key=key)
            self._keys.append(key)
            if key == f"hop-{path.verdict.at_hop}":
                target = i
        self.move_cursor(row=target, animate=False)

    @property
    def hop_index(self) -> int | None:
        """The hop under the cursor (None on the reply divider or when empty)."""
        if 0 <= self.cursor_row < len(self._keys):
            key = self._keys[self.cursor_row]
            if key.startswith("hop-"):
                return int(key[4:])
        return None

    def action_open_rule(self) -> None:
        if 0 <= self.cursor_row < len(self._keys):
            key = self._keys[self.cursor_row]
            if key.startswith("hop-"):
                self.post_message(self.OpenRule(int(key[4:])))
