"""Drop counts as a table: `cntrace drops --summary` and the console's drops summary."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

COLUMNS = ("reason", "location", "where")


def summary_table(rows: Sequence[tuple[str, str, int]], total: int, hidden: int) -> Table:
    """``rows`` are (column, key, count), largest first per column: three columns of counts."""
    table = Table(title=f"{total} drops ({hidden} benign hidden)", box=None, title_justify="left")
    for column in COLUMNS:
        table.add_column("n", justify="right")
        table.add_column(column)
    columns = [[(str(n), key) for col, key, n in rows if col == column] for column in COLUMNS]
    for i in range(max((len(c) for c in columns), default=0)):
        cells: list[str] = []
        for c in columns:
            cells += list(c[i]) if i < len(c) else ["", ""]
        table.add_row(*cells)
    return table
