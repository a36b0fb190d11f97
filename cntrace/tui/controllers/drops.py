"""The drops tab: the kernel's drop stream, attributed to containers, with its counters."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.text import Text

from cntrace.errors import CntraceError
from cntrace.render.drops import summary_table
from cntrace.render.safe import term
from cntrace.trace.droptally import DropTally
from cntrace.tui.controllers.base import Controller, Reading, handles
from cntrace.tui.tracer import DropBatch, KernelDrop
from cntrace.tui.views.drops import DropAttribution, DropAttributor, drop_cells
from cntrace.tui.widgets.drops_panel import DropsPanel

if TYPE_CHECKING:
    from cntrace.tui.app import CntraceApp

Row = tuple[str | Text, ...]
Seen = tuple[Row, KernelDrop, DropAttribution]


class DropsController(Controller):
    """Starts the stream the first time its tab is shown (live only); it runs until exit."""

    tab = "drops"

    def __init__(self, app: CntraceApp, *, clock: Callable[[], float]) -> None:
        super().__init__(app)
        self.clock = clock  # wall time of the stream's start (tests pin it)
        self.started = False
        self.everything = False  # every drop, or only those of containers
        self.paused = False
        self.seen = 0
        self.shown_rows = 0
        self.lost = 0
        self.tally = DropTally()  # benign drops (droptally.BENIGN) hidden unless "all drops"
        self.summary = False  # counts by reason, location and container instead of the list
        self._state = ""
        self._attributor: DropAttributor | None = None  # for the snapshot on screen

    @property
    def panel(self) -> DropsPanel:
        return self.main.drops

    def snapshot_changed(self, reading: Reading) -> None:
        self._attributor = None

    def shown(self) -> None:
        if self.started:
            return
        tracer = self.app.tracer
        if not self.app.live:
            self.panel.set_status(
                Text("post-mortem: live drops are disabled (this is a saved snapshot)", "bold")
            )
            return
        if tracer is None:
            self.panel.set_status(Text("live drops are disabled (no tracer)", "bold"))
            return
        ok, why = tracer.can_watch_drops()
        if not ok:
            self.panel.set_status(Text(f"live drops unavailable: {why}", "bold red"))
            return
        self.started = True
        self._state = "starting the kfree_skb probe…"
        self._show_status()
        self.run(self._stream, group="drops")

    def _stream(self) -> None:
        tracer, stop = self.app.tracer, self.app.stopping
        assert tracer is not None
        start = self.clock()
        try:
            for batch in tracer.drop_batches(stop):
                if stop.is_set():
                    break
                if not self.post(self._add, self._rows(batch, start), batch):
                    break
        except Exception as exc:
            why = str(exc) if isinstance(exc, CntraceError) else f"{type(exc).__name__}: {exc}"
            self.post(self._failed, why)

    def _rows(self, batch: DropBatch, start: float) -> list[Seen]:
        snap = self.app.snapshot
        if snap is None:
            return []
        attributor = self._attributor
        if attributor is None:
            attributor = self._attributor = DropAttributor(snap)
        rows: list[Seen] = []
        for d in batch.drops:
            who = attributor.attribute(d.netns, d.ifindex, d.packet)
            if who.container is None and not self.everything:
                continue
            rows.append((drop_cells(d, who, start + d.t_ns / 1e9), d, who))
        return rows

    def _add(self, seen: list[Seen], batch: DropBatch) -> None:
        self.seen += len(batch.drops)
        self.lost = batch.lost
        self._state = "watching kernel drops (skb:kfree_skb)"
        rows = [
            row
            for row, d, who in seen
            if self.tally.add(d, who.container or who.where, show_all=self.everything)
        ]
        if not self.paused:
            self.shown_rows += len(rows)
            self.panel.add_drops(rows)
            if self.summary:
                self._show_summary()
        self._show_status()

    def _show_summary(self) -> None:
        t = self.tally
        # rich parses a str cell as markup: a container named `[reverse]x` is just text here
        rows = [(col, escape(term(key)), n) for col, key, n in t.rows()]
        self.panel.set_summary(summary_table(rows, t.total, t.hidden))

    def _failed(self, message: str) -> None:
        self._state = f"drops stopped: {message}"
        self._show_status(error=True)

    def _show_status(self, *, error: bool = False) -> None:
        t = Text(self._state, "bold red" if error else "")
        if self.started and not error:
            t.append(f" · {self.shown_rows} shown, {self.seen} seen, {self.lost} lost", "dim")
            if self.tally.hidden:
                t.append(f", {self.tally.hidden} benign hidden", "dim")
            t.append(" · all drops" if self.everything else " · containers only", "dim")
            if self.paused:
                t.append(" · PAUSED", "bold")
        self.panel.set_status(t)

    @handles(DropsPanel.Settings)
    def _settings(self, message: DropsPanel.Settings) -> None:
        self.paused = message.paused
        self.everything = message.everything
        self.summary = message.summary
        if self.summary:
            self._show_summary()
        self._show_status()
