"""The snapshot feed: discovery reads, when to read again, and the status line's first half.

Not a tab: it feeds every tab. The first read is the cheap one (links and addresses) so the
first frame comes fast; the detailed read follows. Reads repeat on `R`, on an interval and when
the source's change detector says containers came or went.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

from rich.text import Text

from cntrace.errors import CntraceError
from cntrace.model import Snapshot
from cntrace.tui.controllers.base import Controller, Reading, cancelled, handles
from cntrace.tui.screens.main import MainScreen
from cntrace.tui.views.containers import ContainerRow, container_rows

if TYPE_CHECKING:
    from cntrace.tui.app import CntraceApp


class SnapshotFeed(Controller):
    """Reads the source in workers and hands each Reading to the app."""

    def __init__(
        self, app: CntraceApp, *, refresh_s: float, poll_s: float, ready_file: str | None
    ) -> None:
        super().__init__(app)
        self.refresh_s = refresh_s
        self.poll_s = poll_s
        self.ready_file = ready_file
        self.error: str | None = None  # the last read failed, saying this
        self._discovering = False
        self._again = False
        self._delayed = False
        self._last_read_s = 0.0
        self._last_read_end = 0.0
        self._ready_written = False
        self._ready_detail = False
        self._painted = threading.Event()  # the first frame with containers is on screen

    def start(self) -> None:
        """The first read, then the change detector and the refresh interval."""
        app = self.app
        if not app.live:
            view = self._first_view()
            if view is None:
                # A saved snapshot is already in memory: show it in the very first frame.
                self._got(app.source.read(detail=True), True)
            else:  # a file a child is reading: its rows now, the Snapshot after the frame
                self._got(view[0], False, view[1])
                self.run(lambda: self._discover(False, view[1]), group="discovery")
            return
        self._start(first=True)
        app.set_interval(self.poll_s, self._poll_changes, name="change-detector")
        if self.refresh_s > 0:
            app.set_interval(self.refresh_s, self._interval_refresh, name="refresh")

    def _start(self, *, first: bool) -> None:
        self._discovering = True
        self.run(lambda: self._discover(first), group="discovery")

    def _first_view(self) -> tuple[Snapshot, list[ContainerRow]] | None:
        """The source's prefetched header and rows, when it has them (``first_view()``): all
        the first frame shows, so it is painted before the whole Snapshot is unpickled."""
        first_view = getattr(self.app.source, "first_view", None)
        return first_view() if first_view is not None else None

    def _discover(self, first: bool, rows: list[ContainerRow] | None = None) -> None:
        """Read the source (``rows``: the prefetched rows of the same Snapshot)."""
        source = self.app.source
        try:
            if first and self.app.live:
                view = self._first_view()
                if view is not None:
                    rows = view[1]
                    if cancelled() or not self.post(self._got, view[0], False, rows):
                        return
                    self._painted.wait(timeout=3.0)
                snap = source.read(detail=False)
                if view is None or snap.taken_at != view[0].taken_at:  # not the prefetched read
                    rows = container_rows(snap)
                if cancelled() or not self.post(self._got, snap, False, rows):
                    return
                # The detailed read competes for the GIL with painting: let the first frame out.
                self._painted.wait(timeout=3.0)
                rows = None
            t0 = time.monotonic()
            snap = source.read(detail=True)
            self._last_read_s = time.monotonic() - t0
            rows = rows if rows is not None else container_rows(snap)
            if not cancelled():
                self.post(self._got, snap, True, rows)
        except CntraceError as exc:
            self.post(self._failed, str(exc))
        except Exception as exc:  # a discovery bug must not kill the console
            self.post(self._failed, f"{type(exc).__name__}: {exc}")

    def _failed(self, message: str) -> None:
        self.app.call_after_refresh(self.app.main.mount_hidden_tabs)
        self._discovering = False
        self.error = message
        self.app.show_status()
        self.app.notify(message, title="discovery failed", severity="error", timeout=8)

    def _got(self, snap: Snapshot, detailed: bool, rows: list[ContainerRow] | None = None) -> None:
        app = self.app
        rows = rows if rows is not None else container_rows(snap)
        if self.ready_file and (not self._ready_written or (detailed and not self._ready_detail)):
            # Queued first: it runs right after the frame below is painted, before the
            # remaining table rows are added.
            self._ready_written = True
            self._ready_detail = detailed
            app.call_after_refresh(self._write_ready, detailed, len(rows))
        if not self._painted.is_set():
            app.call_after_refresh(self._painted.set)
            app.call_after_refresh(app.main.mount_hidden_tabs)
        self.error = None
        if detailed:
            self._discovering = False
            self._last_read_end = time.monotonic()
        app.snapshot_changed(Reading(snap, detailed, rows))
        app.show_status()
        if app.live:
            app.source.watch(snap)
        if detailed and self._again:
            self._again = False
            self.rediscover("containers changed")

    def _write_ready(self, detailed: bool, shown: int) -> None:
        """The ready file (for scripts and benchmarks): created once the first full frame is
        painted, ``PID N containers shown``; a second line ``detailed`` once routes, sockets
        and rules are in (paths can be asked)."""
        assert self.ready_file is not None
        tmp = f"{self.ready_file}.tmp{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(f"{os.getpid()} {shown} containers shown\n")
            if detailed:
                fh.write("detailed\n")
        os.replace(tmp, self.ready_file)

    @handles(MainScreen.RefreshAsked)
    def _asked(self, message: MainScreen.RefreshAsked) -> None:
        self.rediscover("asked")

    def rediscover(self, reason: str) -> None:
        """Read discovery again (``reason``: asked, interval, containers changed).

        Change-triggered reads keep a gap of twice the last read's duration (at least two
        seconds): on a host where containers churn, the console must not read back to back.
        """
        if not self.app.live:
            self.app.notify("post-mortem: a saved snapshot does not change", timeout=3)
            return
        if self._discovering:
            self._again = True
            return
        if reason == "containers changed":
            gap = max(2.0, 2 * self._last_read_s)
            wait = self._last_read_end + gap - time.monotonic()
            if wait > 0:
                if not self._delayed:
                    self._delayed = True
                    self.app.set_timer(wait, self._delayed_refresh)
                return
        self._start(first=False)

    def _delayed_refresh(self) -> None:
        self._delayed = False
        self.rediscover("asked")

    def _poll_changes(self) -> None:
        if self.app.source.changed():
            self.rediscover("containers changed")

    def _interval_refresh(self) -> None:
        self.rediscover("interval")

    def status_text(self, shown: int, total: int, matching: str) -> Text:
        """One line, most important first (it is cropped at 80 columns): the source, then
        ``shown`` of ``total`` containers (``matching`` the filter, when there is one)."""
        app = self.app
        snap = app.snapshot
        host = snap.hostname if snap is not None and snap.hostname else "?"
        when = snap.taken_at.replace("T", " ")[:16] if snap is not None and snap.taken_at else "?"
        t = Text()
        if self.error:
            t.append(f"discovery failed: {self.error} · ", "bold red")
        if not app.live:
            name = os.path.basename(app.source.description.removeprefix("post-mortem: "))
            t.append("■ post-mortem", "bold yellow")
            t.append(f" {name} ({host} {when}) · ")
            t.append("live off", "bold")
        else:
            t.append("● live", "bold green")
            t.append(f" {host}")
            if snap is None:
                t.append(" · discovering…", "italic")
            elif not app.detailed:
                t.append(" · reading details…", "italic")
        if snap is not None:
            count = f"{shown}/{total}" if matching else str(total)
            t.append(f" · {count} containers")
            if matching:
                t.append(f" matching {matching!r}", "bold")
            if app.live:
                t.append(f" · read {snap.taken_at[11:19]}", "dim")
        if app.live and self.refresh_s > 0:
            t.append(f" · refresh {self.refresh_s:g}s + on change", "dim")
        return t
