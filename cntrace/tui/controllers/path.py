"""The path tab: predict from the selected container to a typed destination, trace it live,
open the rules behind it, export it as a bug report."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.text import Text
from textual.worker import get_current_worker

from cntrace.errors import CntraceError
from cntrace.model import Path, Snapshot
from cntrace.tui.controllers.base import Controller, Reading, cancelled, handles
from cntrace.tui.query import PathQuery, parse_destination
from cntrace.tui.screens.main import MainScreen
from cntrace.tui.views.containers import container_by_id, path_ref
from cntrace.tui.views.path import deciding_rule
from cntrace.tui.views.rules import rule_key
from cntrace.tui.widgets.hop_timeline import HopTimeline
from cntrace.tui.widgets.path_panel import PathPanel

if TYPE_CHECKING:
    from cntrace.tui.app import CntraceApp


class PathController(Controller):
    """The path on screen, the prediction behind it and the snapshot both came from.

    ``requests``/``answers`` count questions and finished answers (an error is an answer,
    waiting for discovery is not), so scripts and tests know when the panel is final.
    """

    tab = "path"

    def __init__(self, app: CntraceApp, *, export_dir: str, timer: Callable[[], float]) -> None:
        super().__init__(app)
        self.export_dir = export_dir
        self.timer = timer  # how long a live trace took (tests pin it)
        self.query: PathQuery | None = None
        self.current: Path | None = None  # the path on screen
        self.predicted: Path | None = None  # the prediction behind a live path
        self.snapshot: Snapshot | None = None  # the snapshot the path came from
        self.last_report: str | None = None
        self.pending: str | None = None  # asked before discovery could answer
        self.requests = 0
        self.answers = 0
        self._warmed = False

    @property
    def panel(self) -> PathPanel:
        return self.main.path_panel

    def snapshot_changed(self, reading: Reading) -> None:
        self.source_changed()
        if reading.detailed and self.pending is not None:
            text, self.pending = self.pending, None
            self._ask(text, again=True)

    def source_changed(self) -> None:
        snap, key = self.app.snapshot, self.app.source_key
        c = container_by_id(snap, key) if snap is not None and key is not None else None
        self.panel.set_source(c.name if c else None)

    def shown(self) -> None:
        self._warm_tracer()

    # ------------------------------------------------------------------ asking

    @handles(PathPanel.Requested)
    def _requested(self, message: PathPanel.Requested) -> None:
        self._ask(message.text, again=False)

    def _ask(self, text: str, *, again: bool) -> None:
        """Predict (then trace) from the selected container to ``text`` in a worker."""
        if not again:
            self.requests += 1
        launched = False
        try:
            launched = self._launch(text)
        finally:
            if not launched and self.pending is None:
                self.answers += 1

    def _launch(self, text: str) -> bool:
        panel, snap, key = self.panel, self.app.snapshot, self.app.source_key
        if snap is None:
            self.pending = text
            panel.set_status(Text("waiting for discovery…", "italic"))
            return False
        c = container_by_id(snap, key) if key else None
        if c is None:
            panel.show_error("select a source container first (1: containers, then a row)")
            return False
        try:
            query = parse_destination(path_ref(snap, c), text)
        except CntraceError as exc:
            panel.show_error(str(exc))
            return False
        if not self.app.detailed:
            self.pending = text
            panel.set_status(Text("waiting for full discovery (routes, rules)…", "italic"))
            return False
        panel.set_status(Text(f"predicting {query.source} -> {query.destination}…", "italic"))
        self.run(lambda: self._answer(query, snap), group="path", exclusive=True)
        return True

    def _answer(self, query: PathQuery, snap: Snapshot) -> None:
        try:
            self._predict_and_trace(query, snap)
        finally:
            self.post(self._answered)

    def _answered(self) -> None:
        self.answers += 1

    def _predict_and_trace(self, query: PathQuery, snap: Snapshot) -> None:
        from cntrace.path import predict

        try:
            predicted = predict(snap, query.source, query.destination, proto=query.proto)
        except CntraceError as exc:
            self.post(self.panel.show_error, str(exc))
            return
        except Exception as exc:  # a prediction bug is shown, never a traceback
            self.post(self.panel.show_error, f"prediction failed: {exc}")
            return
        if cancelled():
            return
        live_ok, why = self._can_trace()
        status = Text("tracing live…", "italic") if live_ok else Text(f"live: {why}", "dim")
        if not self.post(self._show, predicted, query, snap, status):
            return
        tracer = self.app.tracer
        if not live_ok or tracer is None:
            return
        t0 = self.timer()
        worker = get_current_worker()

        def progress(p: Path) -> None:  # may be called from a tracer thread
            if not worker.is_cancelled:
                self.post(self._show, p, query, snap, Text("tracing live…", "italic"))

        try:
            traced = tracer.trace(snap, predicted, progress)
        except Exception as exc:
            why = str(exc) if isinstance(exc, CntraceError) else f"{type(exc).__name__}: {exc}"
            self.post(self.panel.set_status, Text(f"live trace failed: {why}", "bold red"))
            return
        if cancelled():
            return
        took = (self.timer() - t0) * 1000
        self.post(self._show, traced, query, snap, Text(f"live trace {took:.0f} ms", "dim"))

    def _can_trace(self) -> tuple[bool, str]:
        if not self.app.live:
            return False, "disabled (post-mortem of a saved snapshot)"
        if self.app.tracer is None:
            return False, "disabled (no tracer)"
        try:
            return self.app.tracer.can_trace()
        except Exception as exc:
            return False, str(exc)

    def _show(self, path: Path, query: PathQuery, snap: Snapshot, status: Text) -> None:
        self.current, self.query, self.snapshot = path, query, snap
        if path.mode == "predicted":
            self.predicted = path
        self.panel.show_path(path, status)
        focused = self.app.focused
        if focused is not None and focused.id == "destination":
            self.panel.timeline.focus()

    def _warm_tracer(self) -> None:
        tracer = self.app.tracer
        if self._warmed or tracer is None or not self.app.live:
            return
        self._warmed = True
        if not self._can_trace()[0]:
            return

        def warm() -> None:
            with contextlib.suppress(Exception):
                tracer.prepare()

        self.run(warm, group="warm")

    # ------------------------------------------------------------------ rules

    @handles(MainScreen.DecidingRuleAsked)
    def _deciding_rule(self, message: MainScreen.DecidingRuleAsked) -> None:
        from cntrace.tui.screens.rules import RulesScreen

        path, snap = self.current, self.snapshot
        if path is None or snap is None:
            self.app.notify("no path yet: 3, type a destination, Enter", timeout=4)
            return
        found = deciding_rule(path)
        if found is None:
            self.app.notify("this verdict was not decided by a netfilter rule", timeout=4)
            return
        rule, netns = found
        why = f"deciding rule of {path.source.asked} -> {path.destination.asked}"
        self.app.push_screen(RulesScreen(snap, netns, {rule_key(rule)}, why))

    @handles(HopTimeline.OpenRule)
    def _hop_rule(self, message: HopTimeline.OpenRule) -> None:
        from cntrace.tui.screens.rules import RulesScreen

        path, snap, index = self.current, self.snapshot, message.index
        if path is None or snap is None:
            return
        hop = next((h for h in path.hops if h.index == index), None)
        if hop is None:
            return
        if hop.rule is None:
            self.app.notify(f"hop {index} has no netfilter rule", timeout=3)
            return
        why = f"rule of hop {index}"
        self.app.push_screen(RulesScreen(snap, hop.netns, {rule_key(hop.rule)}, why))

    # ------------------------------------------------------------------ export

    @handles(MainScreen.ExportAsked)
    def _export(self, message: MainScreen.ExportAsked) -> None:
        path, snap, query = self.current, self.snapshot, self.query
        if path is None or snap is None or query is None:
            self.app.notify("nothing to export yet: run a path first (3)", timeout=4)
            return
        prediction = self.predicted
        origin = f"live host {snap.hostname}" if self.app.live else self.app.source.description

        def write() -> None:
            from cntrace.tui.report import write_report

            try:
                name = write_report(
                    path,
                    snap,
                    query,
                    directory=self.export_dir,
                    origin=origin,
                    prediction=prediction,
                )
            except CntraceError as exc:
                self.post(self._export_failed, str(exc))
                return
            self.post(self._exported, name)

        self.run(write, group="export")

    def _export_failed(self, message: str) -> None:
        self.app.notify(message, title="export failed", severity="error", timeout=8)

    def _exported(self, name: str) -> None:
        self.last_report = name
        self.app.notify(f"bug report written to {name}", title="exported", timeout=8)
        self.panel.set_status(Text(f"exported: {name}", "bold"))
