"""The console application: lifecycle, what every tab shares, and the factory tests build it with.

The app holds only what the tabs share (the latest Snapshot, whether it is detailed, the selected
container that paths start from) and hands everything else to one controller per tab
(cntrace.tui.controllers): widgets and the screen post ConsoleMessages, which bubble up here and
go to the controllers that declared them. Slow work runs in the controllers' thread workers;
live features go through the injected Tracer, and ``build_app(source, None)`` or a post-mortem
source gives a console with them disabled, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from textual import on
from textual.app import App
from textual.binding import Binding

from cntrace.model import Snapshot
from cntrace.tui.controllers.base import Controller, Reading
from cntrace.tui.controllers.containers import ContainersController
from cntrace.tui.controllers.drops import DropsController
from cntrace.tui.controllers.feed import SnapshotFeed
from cntrace.tui.controllers.path import PathController
from cntrace.tui.controllers.topology import TopologyController
from cntrace.tui.controllers.whatif import WhatIfController
from cntrace.tui.messages import ConsoleMessage
from cntrace.tui.safe import safe_message
from cntrace.tui.screens.help import HelpScreen
from cntrace.tui.screens.main import MainScreen
from cntrace.tui.source import SnapshotSource
from cntrace.tui.tracer import Tracer

DARK, LIGHT = "textual-dark", "textual-light"


class CntraceApp(App[int]):
    """`cntrace tui`."""

    TITLE = "cntrace"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding(
            "q",
            "quit",
            "Quit",
            tooltip="quit; detaches every probe (so do Ctrl-C, SIGTERM and a closed terminal)",
        ),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, tooltip="quit, like q"),
        Binding("question_mark", "help", "Help", tooltip="this list of keys"),
        Binding("T", "toggle_theme", "Light/dark", show=False, tooltip="switch light/dark theme"),
    ]

    def __init__(
        self,
        source: SnapshotSource,
        tracer: Tracer | None,
        *,
        refresh_s: float = 30.0,
        poll_s: float = 1.0,
        export_dir: str = ".",
        ready_file: str | None = None,
        handle_signals: bool = False,
        theme: str = "dark",
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
        on_hangup: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.tracer = tracer
        self.handle_signals = handle_signals
        self.on_hangup = on_hangup  # detach everything when the terminal is gone
        self._theme_name = LIGHT if theme == "light" else DARK
        self.snapshot: Snapshot | None = None
        self.detailed = False
        self.source_key: str | None = None  # the selected container: where paths start
        self.active_tab = "containers"
        self.stopping = threading.Event()
        self._main: MainScreen | None = None
        self.feed = SnapshotFeed(self, refresh_s=refresh_s, poll_s=poll_s, ready_file=ready_file)
        self.containers = ContainersController(self)
        self.topology = TopologyController(self)
        self.path = PathController(self, export_dir=export_dir, timer=timer)
        self.drops = DropsController(self, clock=clock)
        self.whatif = WhatIfController(self)
        self.controllers: tuple[Controller, ...] = (
            self.feed,
            self.containers,
            self.topology,
            self.path,
            self.drops,
            self.whatif,
        )
        self._routes: dict[type[ConsoleMessage], list[Callable[[Any], None]]] = {}
        for controller in self.controllers:
            for kind, handler in controller.routes():
                self._routes.setdefault(kind, []).append(handler)

    # ------------------------------------------------------------------ lifecycle

    @property
    def main(self) -> MainScreen:
        assert self._main is not None
        return self._main

    @property
    def live(self) -> bool:
        return self.source.live

    @property
    def last_report(self) -> str | None:
        """The bug report written last (`cntrace tui` prints it on exit)."""
        return self.path.last_report

    def get_default_screen(self) -> MainScreen:
        self._main = MainScreen(on_ready=self._screen_ready)
        return self._main

    def on_mount(self) -> None:
        self.theme = self._theme_name

    def _screen_ready(self) -> None:
        """The main screen is composed: show the status and start discovery."""
        self.show_status()
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self._on_signal, sig)
        # The hidden tabs are mounted once the first frame with containers is out (the feed
        # queues it after that frame, or after a failed read): mounted after the screen's
        # first, empty, paint they delayed the containers' frame when the read came later.
        self.feed.start()

    def _on_signal(self, sig: int) -> None:
        """SIGTERM, SIGINT: leave like `q`, so the caller's cleanup runs.

        SIGHUP means the terminal is gone: textual's orderly shutdown would try to restore a
        terminal that no longer exists (and can block doing so), so detach everything now and
        leave at once.
        """
        self.stopping.set()
        if sig == signal.SIGHUP:
            try:
                if self.on_hangup is not None:
                    self.on_hangup()
            finally:
                os._exit(128 + sig)
        self.exit(128 + sig)

    def on_unmount(self) -> None:
        self.stopping.set()

    def action_quit(self) -> None:  # type: ignore[override]
        self.stopping.set()
        self.exit(0)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: Literal["information", "warning", "error"] = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """A toast; its text often holds names from the snapshot: never markup, escaped."""
        super().notify(
            safe_message(message), title=safe_message(title), severity=severity,
            timeout=timeout, markup=markup,
        )  # fmt: skip

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.theme == DARK else DARK

    def post(self, fn: Callable[..., object], *args: object) -> bool:
        """Run ``fn`` on the app's loop from a worker thread; False when the app is gone."""
        if self.stopping.is_set():
            return False
        try:
            self.call_from_thread(fn, *args)
        except RuntimeError:
            return False
        return True

    # ------------------------------------------------------------------ what the tabs share

    @on(ConsoleMessage)
    def _route(self, message: ConsoleMessage) -> None:
        for handler in self._routes.get(type(message), ()):
            handler(message)

    def on_main_screen_tab_shown(self, message: MainScreen.TabShown) -> None:
        self.active_tab = message.name
        for controller in self.controllers:
            if controller.tab == message.name:
                controller.shown()

    def snapshot_changed(self, reading: Reading) -> None:
        """A discovery read is in: every controller updates its tab."""
        self.snapshot = reading.snapshot
        self.detailed = reading.detailed
        for controller in self.controllers:
            controller.snapshot_changed(reading)

    def select(self, key: str) -> None:
        """The container paths start from (the table's cursor, a container node)."""
        self.source_key = key
        for controller in self.controllers:
            controller.source_changed()

    def show_status(self) -> None:
        """The status line: what the console looks at, then how many containers it shows."""
        shown, total, matching = self.containers.counts()
        self.main.status.set_status(
            self.feed.status_text(shown, total, matching), post_mortem=not self.live
        )
        snap = self.snapshot
        if snap is not None and snap.hostname:
            self.sub_title = snap.hostname  # the terminal's title


def build_app(
    source: SnapshotSource,
    tracer: Tracer | None,
    **options: Any,
) -> CntraceApp:
    """The console on ``source``; ``tracer`` None (or a post-mortem source) disables live
    features. Options: refresh_s, poll_s, export_dir, ready_file, handle_signals, theme, clock,
    timer, on_hangup."""
    return CntraceApp(source, tracer, **options)
