"""The containers table: one row per container, as `cntrace ls` shows them."""

from __future__ import annotations

from collections.abc import Sequence

from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from cntrace.tui.views import CONTAINER_COLUMNS, ContainerRow


class ContainersTable(DataTable[object]):
    """Keeps the cursor on the same container across refreshes and filtering."""

    BINDINGS = [
        Binding(
            "enter",
            "choose",
            "Path from here",
            show=False,
            tooltip="path from this container: type the destination next",
        ),
    ]

    DEFAULT_CSS = """
    ContainersTable {
        height: 1fr;
    }
    """

    class Chosen(Message):
        """The user wants a path from this container."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self._rows: list[ContainerRow] = []

    def on_mount(self) -> None:
        for col in CONTAINER_COLUMNS:
            self.add_column(col, key=col)

    @property
    def shown(self) -> list[ContainerRow]:
        return list(self._rows)

    @property
    def selected_key(self) -> str | None:
        if not self._rows or self.cursor_row < 0 or self.cursor_row >= len(self._rows):
            return None
        return self._rows[self.cursor_row].key

    def show_rows(self, rows: Sequence[ContainerRow]) -> None:
        keep = self.selected_key
        self.clear()
        self._rows = list(rows)
        for r in self._rows:
            self.add_row(*r.cells(), key=r.key)
        if keep is not None:
            for i, r in enumerate(self._rows):
                if r.key == keep:
                    self.move_cursor(row=i, animate=False)
                    break

    def select_key(self, key: str) -> bool:
        for i, r in enumerate(self._rows):
            if r.key == key:
                self.move_cursor(row=i, animate=False)
                return True
        return False

    def action_choose(self) -> None:
        key = self.selected_key
        if key is not None:
            self.post_message(self.Chosen(key))
