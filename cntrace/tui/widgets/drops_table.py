"""The kernel drop stream, oldest at the top like a log; capped so a drop storm cannot grow it
without bound."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.geometry import Size
from textual.widgets import DataTable

from cntrace.tui.safe import safe_cell
from cntrace.tui.views.drops import DROP_COLUMNS

MAX_ROWS = 500


class DropsTable(DataTable[object]):
    """Rows are (time, container, where, reason, location, packet); follows the newest row
    while the cursor sits on the last one, like ``tail -f``."""

    DEFAULT_CSS = """
    DropsTable {
        height: 1fr;
    }
    """

    def __init__(self) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id="drops-table")
        self._n = 0
        self._keys: list[str] = []

    def on_mount(self) -> None:
        for col in DROP_COLUMNS:
            self.add_column(col, key=col)

    def add_drops(self, rows: Sequence[tuple[str | Text, ...]]) -> None:
        follow = self.row_count == 0 or self.cursor_row >= self.row_count - 1
        for cells in rows:
            self._n += 1
            key = f"d{self._n}"
            self.add_row(*(safe_cell(c) for c in cells), key=key)
            self._keys.append(key)
        while len(self._keys) > MAX_ROWS:
            self.remove_row(self._keys.pop(0))
        if rows and follow:
            self.move_cursor(row=self.row_count - 1, animate=False)

    def watch_virtual_size(self, old: Size, new: Size) -> None:
        """The columns were measured again (new rows are sized when the table is idle): drop the
        lines cached with the old widths, or a frame painted in between would keep showing the
        rows cut to their headers' widths until the next drop."""
        if old.width != new.width:
            self.notify_style_update()

    def clear_drops(self) -> None:
        self.clear()
        self._keys = []
