"""The containers table: one row per container, as `cntrace ls` shows them.

A line-API widget rather than textual's DataTable: a DataTable measures and renders every cell
through rich, which for a thousand containers cost most of the first-frame budget. Here a row is
one pre-padded string, widths come from ``len``, and only the visible lines are ever built, so
10,000 rows cost what 40 do. It keeps the cursor on the same container across refreshes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from cntrace.render.safe import term
from cntrace.tui.messages import ConsoleMessage
from cntrace.tui.views.containers import CONTAINER_COLUMNS, ContainerRow

GAP = 2  # spaces between columns
MAX_COL = 48  # a column never grows past this (IP lists, port lists): the rest is cut with …


def _cells(r: ContainerRow) -> tuple[str, ...]:
    """The row's texts, escaped: the table writes them to the terminal as they are."""
    return tuple(
        term(v) for v in (r.name, r.runtime, r.ips, r.host_veth, r.bridge, r.ports, r.state)
    )


class ContainersTable(ScrollView, can_focus=True):
    """Rows of containers with a row cursor; Enter asks for a path from the cursor's row."""

    BINDINGS = [
        Binding(
            "enter",
            "choose",
            "Path from here",
            show=False,
            tooltip="path from this container: type the destination next",
        ),
        Binding("up", "cursor(-1)", show=False),
        Binding("down", "cursor(1)", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "jump(0)", show=False),
        Binding("end", "jump(-1)", show=False),
        Binding("left", "scroll_left", show=False),
        Binding("right", "scroll_right", show=False),
    ]

    COMPONENT_CLASSES = {
        "containers-table--header",
        "containers-table--cursor",
        "containers-table--stopped",
    }

    DEFAULT_CSS = """
    ContainersTable {
        height: 1fr;
        background: $surface;
        color: $foreground;
        & > .containers-table--header {
            text-style: bold;
            background: $panel;
        }
        & > .containers-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
        }
        &:focus > .containers-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: bold;
        }
        & > .containers-table--stopped {
            color: $error;
            text-style: bold;
        }
    }
    """

    @dataclass
    class Chosen(ConsoleMessage):
        """The user wants a path from this container."""

        key: str

    @dataclass
    class Highlighted(ConsoleMessage):
        """The cursor moved to this container."""

        key: str

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._rows: list[ContainerRow] = []
        self._lines: list[str] = []
        self._widths: list[int] = [len(c) for c in CONTAINER_COLUMNS]
        self._header = ""
        self.cursor_row = 0
        self._layout()

    # ------------------------------------------------------------------ data

    @property
    def shown(self) -> list[ContainerRow]:
        return list(self._rows)

    @property
    def row_count(self) -> int:
        return len(self._rows)

    @property
    def selected_key(self) -> str | None:
        if 0 <= self.cursor_row < len(self._rows):
            return self._rows[self.cursor_row].key
        return None

    def row_text(self, index: int) -> str:
        """The row as displayed (for tests and screen readers of the future)."""
        return self._lines[index]

    def show_rows(self, rows: Sequence[ContainerRow]) -> None:
        """Replace the rows, keeping the cursor on the same container when it is still there."""
        keep = self.selected_key
        self._rows = list(rows)
        self._layout()
        at = next((i for i, r in enumerate(self._rows) if r.key == keep), None)
        self._move(at if at is not None else min(self.cursor_row, max(0, len(self._rows) - 1)))
        self.refresh()

    def _layout(self) -> None:
        cells = [_cells(r) for r in self._rows]
        widths = [len(c) for c in CONTAINER_COLUMNS]
        for row in cells:
            for i, text in enumerate(row):
                if len(text) > widths[i]:
                    widths[i] = min(len(text), MAX_COL)
        self._widths = widths

        def line(values: Sequence[str]) -> str:
            out = []
            for text, w in zip(values, widths, strict=True):
                out.append((text[: w - 1] + "…" if len(text) > w else text).ljust(w))
            return " " + (" " * GAP).join(out).rstrip()

        self._header = line(CONTAINER_COLUMNS)
        self._lines = [line(row) for row in cells]
        width = sum(widths) + GAP * (len(widths) - 1) + 2
        self.virtual_size = Size(width, len(self._rows) + 1)

    def select_key(self, key: str) -> bool:
        for i, r in enumerate(self._rows):
            if r.key == key:
                self._move(i)
                return True
        return False

    # ------------------------------------------------------------------ cursor

    def _move(self, row: int) -> None:
        if not self._rows:
            self.cursor_row = 0
            return
        row = max(0, min(row, len(self._rows) - 1))
        changed = row != self.cursor_row
        self.cursor_row = row
        visible = max(1, self.scrollable_content_region.height - 1)  # minus the header
        top = round(self.scroll_y)
        if row < top:
            self.scroll_to(y=row, animate=False)
        elif row >= top + visible:
            self.scroll_to(y=row - visible + 1, animate=False)
        self.refresh()
        if changed or not self._announced:
            self._announced = True
            self.post_message(self.Highlighted(self._rows[row].key))

    _announced = False

    def action_cursor(self, delta: int) -> None:
        self._move(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self._move(self.cursor_row + direction * max(1, self.scrollable_content_region.height - 2))

    def action_jump(self, where: int) -> None:
        self._move(where if where >= 0 else len(self._rows) - 1)

    def action_choose(self) -> None:
        key = self.selected_key
        if key is not None:
            self.post_message(self.Chosen(key))

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self._move(round(self.scroll_y) + event.y - 1)

    # ------------------------------------------------------------------ rendering

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        x = round(self.scroll_x)
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("containers-table--header")
            return self._strip(self._header, style, x, width)
        index = round(self.scroll_y) + y - 1
        if index >= len(self._rows):
            return Strip.blank(width, base)
        text = self._lines[index]
        if index == self.cursor_row:
            style = base + self.get_component_rich_style("containers-table--cursor")
            return self._strip(text, style, x, width)
        row = self._rows[index]
        if row.state != "running":
            start = len(text) - len(row.state)
            stopped = base + self.get_component_rich_style("containers-table--stopped")
            segments = [Segment(text[:start], base), Segment(text[start:], stopped)]
            return Strip(segments).crop(x, x + width).extend_cell_length(width, base)
        return self._strip(text, base, x, width)

    @staticmethod
    def _strip(text: str, style: Style, x: int, width: int) -> Strip:
        return Strip([Segment(text, style)]).crop(x, x + width).extend_cell_length(width, style)
