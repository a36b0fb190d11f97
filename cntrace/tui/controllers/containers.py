"""The containers tab: the table's rows, the incremental filter, the selected container."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cntrace.tui.controllers.base import Controller, Reading, handles
from cntrace.tui.views.containers import ContainerRow, filter_rows
from cntrace.tui.widgets.containers_table import ContainersTable
from cntrace.tui.widgets.filter_input import FilterInput

if TYPE_CHECKING:
    from cntrace.tui.app import CntraceApp


class ContainersController(Controller):
    """Rows of the latest reading, narrowed by the filter; the cursor's row is the source."""

    tab = "containers"

    def __init__(self, app: CntraceApp) -> None:
        super().__init__(app)
        self.rows: list[ContainerRow] = []
        self.filter_text = ""

    @property
    def table(self) -> ContainersTable:
        return self.main.table

    def counts(self) -> tuple[int, int, str]:
        """(rows shown, rows in all, the filter) for the status line."""
        return self.table.row_count, len(self.rows), self.filter_text

    def snapshot_changed(self, reading: Reading) -> None:
        self.rows = reading.rows
        self.table.show_rows(filter_rows(self.rows, self.filter_text))
        if self.app.source_key is None and self.table.selected_key is not None:
            self.app.select(self.table.selected_key)

    @handles(FilterInput.Filtered)
    def _filtered(self, message: FilterInput.Filtered) -> None:
        self.filter_text = message.text.strip()
        self.table.show_rows(filter_rows(self.rows, self.filter_text))
        self.app.show_status()

    @handles(ContainersTable.Highlighted, ContainersTable.Chosen)
    def _selected(self, message: ContainersTable.Highlighted | ContainersTable.Chosen) -> None:
        self.app.select(message.key)
