"""The console application: state, workers, and the factory tests build it with.

The App owns the data (the latest Snapshot, the path on screen and the snapshot it came from) and
runs everything slow in thread workers: discovery, path prediction, live traces, the drop stream
and report export. The screen only holds widgets. Live features go through the injected Tracer;
``build_app(source, None)`` or a post-mortem source gives a console with them disabled, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import App
from textual.binding import Binding
from textual.worker import get_current_worker

from cntrace.errors import CntraceError
from cntrace.model import Path, Snapshot
from cntrace.tui.query import PathQuery, parse_destination
from cntrace.tui.screens.help import HelpScreen
from cntrace.tui.screens.main import MainScreen
from cntrace.tui.source import SnapshotSource
from cntrace.tui.tracer import DropBatch, Tracer
from cntrace.tui.views import (
    ContainerRow,
    DropAttributor,
    NodeRef,
    RuleKey,
    TreeNode,
    container_by_id,
    container_rows,
    deciding_rule,
    details,
    filter_rows,
    path_ref,
    rule_key,
    topology_nodes,
)

DARK, LIGHT = "textual-dark", "textual-light"


def _cancelled() -> bool:
    """Whether the worker running this thread was cancelled (superseded or the app exits)."""
    return get_current_worker().is_cancelled


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
        self.refresh_s = refresh_s
        self.poll_s = poll_s
        self.export_dir = export_dir
        self.ready_file = ready_file
        self.handle_signals = handle_signals
        self.clock = clock  # wall time of the drop stream's start (tests pin it)
        self.timer = timer  # how long a live trace took (tests pin it)
        self.on_hangup = on_hangup  # detach everything when the terminal is gone
        self._theme_name = LIGHT if theme == "light" else DARK
        self.snapshot: Snapshot | None = None
        self.detailed = False
        self.rows: list[ContainerRow] = []
        self.filter_text = ""
        self.source_key: str | None = None
        self.path_query: PathQuery | None = None
        self.path: Path | None = None
        self.predicted: Path | None = None  # the prediction behind a live path
        self.path_snapshot: Snapshot | None = None
        self.last_report: str | None = None
        self._pending_path: str | None = None
        self.path_requests = 0
        self.path_answers = 0
        self._discovering = False
        self._again = False
        self._delayed = False
        self._last_read_s = 0.0
        self._last_read_end = 0.0
        self._topology_dirty = True
        self._tab = "containers"
        self._node: NodeRef | None = None
        self._drops_started = False
        self._drops_everything = False
        self._drops_paused = False
        self._drops_seen = 0
        self._drops_shown = 0
        self._drops_lost = 0
        self._drops_state = ""
        self._attributor: DropAttributor | None = None
        self._warmed = False
        self._ready_written = False
        self._ready_detail = False
        self._stop = threading.Event()
        self._painted = threading.Event()  # the first frame with containers is on screen
        self._main: MainScreen | None = None
        self.discovery_error: str | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def main(self) -> MainScreen:
        assert self._main is not None
        return self._main

    @property
    def live(self) -> bool:
        return self.source.live

    def get_default_screen(self) -> MainScreen:
        self._main = MainScreen()
        return self._main

    def on_mount(self) -> None:
        self.theme = self._theme_name

    def screen_ready(self) -> None:
        """The main screen is composed: show the status and start discovery."""
        self._show_status()
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self._on_signal, sig)
        if self.live:
            self._start_discovery(first=True)
        else:
            # A saved snapshot is already in memory: show it in the very first frame.
            self._got_snapshot(self.source.read(detail=True), True)
        if self.live:
            self.set_interval(self.poll_s, self._poll_changes, name="change-detector")
            if self.refresh_s > 0:
                self.set_interval(self.refresh_s, self._interval_refresh, name="refresh")

    def _on_signal(self, sig: int) -> None:
        """SIGTERM, SIGINT: leave like `q`, so the caller's cleanup runs.

        SIGHUP means the terminal is gone: textual's orderly shutdown would try to restore a
        terminal that no longer exists (and can block doing so), so detach everything now and
        leave at once.
        """
        self._stop.set()
        if sig == signal.SIGHUP:
            try:
                if self.on_hangup is not None:
                    self.on_hangup()
            finally:
                os._exit(128 + sig)
        self.exit(128 + sig)

    def on_unmount(self) -> None:
        self._stop.set()

    def action_quit(self) -> None:  # type: ignore[override]
        self._stop.set()
        self.exit(0)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.theme == DARK else DARK

    def _post(self, fn: Callable[..., object], *args: object) -> bool:
        """Run ``fn`` on the app's loop from a worker thread; False when the app is gone."""
        if self._stop.is_set():
            return False
        try:
            self.call_from_thread(fn, *args)
        except RuntimeError:
            return False
        return True

    # ------------------------------------------------------------------ discovery

    def _start_discovery(self, *, first: bool) -> None:
        self._discovering = True
        self.run_worker(
            lambda: self._discover(first),
            thread=True,
            group="discovery",
            name="discovery",
            exit_on_error=False,
        )

    def _discover(self, first: bool) -> None:
        try:
            if first and self.live:
                snap = self.source.read(detail=False)
                rows = getattr(self.source, "first_rows", None) or container_rows(snap)
                if _cancelled() or not self._post(self._got_snapshot, snap, False, rows):
                    return
                # The detailed read competes for the GIL with painting: let the first frame out.
                self._painted.wait(timeout=3.0)
            t0 = time.monotonic()
            snap = self.source.read(detail=True)
            self._last_read_s = time.monotonic() - t0
            rows = container_rows(snap)
            if not _cancelled():
                self._post(self._got_snapshot, snap, True, rows)
        except CntraceError as exc:
            self._post(self._discovery_failed, str(exc))
        except Exception as exc:  # a discovery bug must not kill the console
            self._post(self._discovery_failed, f"{type(exc).__name__}: {exc}")

    def _discovery_failed(self, message: str) -> None:
        self._discovering = False
        self.discovery_error = message
        self._show_status()
        self.notify(message, title="discovery failed", severity="error", timeout=8)

    def _got_snapshot(
        self, snap: Snapshot, detailed: bool, rows: list[ContainerRow] | None = None
    ) -> None:
        if self.ready_file and (not self._ready_written or (detailed and not self._ready_detail)):
            # Queued first: it runs right after the frame below is painted, before the
            # remaining table rows are added.
            self._ready_written = True
            self._ready_detail = detailed
            self.call_after_refresh(self._write_ready, detailed)
        if not self._painted.is_set():
            self.call_after_refresh(self._painted.set)
        self.snapshot = snap
        self.detailed = detailed
        self.discovery_error = None
        if detailed:
            self._discovering = False
            self._last_read_end = time.monotonic()
        self.rows = rows if rows is not None else container_rows(snap)
        self._attributor = None
        main = self.main
        main.table.show_rows(filter_rows(self.rows, self.filter_text))
        if self.source_key is None and main.table.selected_key is not None:
            self.source_key = main.table.selected_key
        self._sync_source_label()
        self._topology_dirty = True
        if self._tab == "topology":
            self._show_topology()
        self._show_status()
        if self.live:
            self.source.watch(snap)
        if detailed and self._pending_path is not None:
            text, self._pending_path = self._pending_path, None
            self.request_path(text, again=True)
        if detailed and self._again:
            self._again = False
            self.rediscover("containers changed")

    def _write_ready(self, detailed: bool) -> None:
        """The ready file (for scripts and benchmarks): created once the first full frame is
        painted, ``PID N containers shown``; a second line ``detailed`` once routes, sockets
        and rules are in (paths can be asked)."""
        assert self.ready_file is not None
        tmp = f"{self.ready_file}.tmp{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(f"{os.getpid()} {len(self.rows)} containers shown\n")
            if detailed:
                fh.write("detailed\n")
        os.replace(tmp, self.ready_file)

    def rediscover(self, reason: str) -> None:
        """Read discovery again (``reason``: asked, interval, containers changed).

        Change-triggered reads keep a gap of twice the last read's duration (at least two
        seconds): on a host where containers churn, the console must not read back to back.
        """
        if not self.live:
            self.notify("post-mortem: a saved snapshot does not change", timeout=3)
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
                    self.set_timer(wait, self._delayed_refresh)
                return
        self._start_discovery(first=False)

    def _delayed_refresh(self) -> None:
        self._delayed = False
        self.rediscover("asked")

    def _poll_changes(self) -> None:
        if self.source.changed():
            self.rediscover("containers changed")

    def _interval_refresh(self) -> None:
        self.rediscover("interval")

    def _show_status(self) -> None:
        """One line, most important first (it is cropped at 80 columns)."""
        snap = self.snapshot
        host = snap.hostname if snap is not None and snap.hostname else "?"
        when = snap.taken_at.replace("T", " ")[:16] if snap is not None and snap.taken_at else "?"
        t = Text()
        if self.discovery_error:
            t.append(f"discovery failed: {self.discovery_error} · ", "bold red")
        if not self.live:
            name = os.path.basename(self.source.description.removeprefix("post-mortem: "))
            t.append("■ post-mortem", "bold yellow")
            t.append(f" {name} ({host} {when}) · ")
            t.append("live off", "bold")
        else:
            t.append("● live", "bold green")
            t.append(f" {host}")
            if snap is None:
                t.append(" · discovering…", "italic")
            elif not self.detailed:
                t.append(" · reading details…", "italic")
        if snap is not None:
            shown = len(self.main.table.shown)
            count = f"{shown}/{len(self.rows)}" if self.filter_text else str(len(self.rows))
            t.append(f" · {count} containers")
            if self.filter_text:
                t.append(f" matching {self.filter_text!r}", "bold")
            if self.live:
                t.append(f" · read {snap.taken_at[11:19]}", "dim")
        if self.live and self.refresh_s > 0:
            t.append(f" · refresh {self.refresh_s:g}s + on change", "dim")
        self.main.status.set_status(t, post_mortem=not self.live)
        if snap is not None and snap.hostname:
            self.sub_title = snap.hostname  # the terminal's title

    # ------------------------------------------------------------------ containers and topology

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self.main.table.show_rows(filter_rows(self.rows, self.filter_text))
        self._show_status()

    def choose_source(self, key: str, *, go: bool) -> None:
        self.source_key = key
        self._sync_source_label()
        if go:
            self.main.open_path()

    def _sync_source_label(self) -> None:
        c = None
        if self.snapshot is not None and self.source_key is not None:
            c = container_by_id(self.snapshot, self.source_key)
        self.main.path_panel.set_source(c.name if c else None)

    def tab_shown(self, name: str) -> None:
        self._tab = name
        if name == "topology":
            if self._topology_dirty:
                self._show_topology()
            else:
                ref = self._selected_ref()
                cur = self.main.topo_tree.cursor_node
                if ref is not None and (cur is None or cur.data != ref):
                    self.main.topo_tree.reveal(ref)
        elif name == "drops":
            self._start_drops()
        elif name == "path":
            self._warm_tracer()

    def _show_topology(self) -> None:
        """Build the tree's nodes in a worker (a thousand containers take a fifth of a second),
        then hand them to the tree."""
        snap = self.snapshot
        if snap is None:
            return
        self._topology_dirty = False

        def build() -> None:
            nodes = topology_nodes(snap)
            if not _cancelled():
                self._post(self._topology_built, snap, nodes)

        self.run_worker(
            build,
            thread=True,
            group="discovery",
            name="topology",
            exclusive=False,
            exit_on_error=False,
        )

    def _selected_ref(self) -> NodeRef | None:
        """The tree node of the container selected in the table (the path's source)."""
        snap = self.snapshot
        c = container_by_id(snap, self.source_key) if snap and self.source_key else None
        return NodeRef("container", c.netns, c.id) if c is not None else None

    def _topology_built(self, snap: Snapshot, nodes: list[TreeNode]) -> None:
        if snap is not self.snapshot:
            return  # a newer snapshot is on its way to the tree
        self.main.topo_tree.show(nodes, prefer=self._selected_ref())
        node = self.main.topo_tree.cursor_node
        if node is not None and node.data is not None:
            self.node_highlighted(node.data)

    def node_highlighted(self, ref: NodeRef) -> None:
        self._node = ref
        if self.snapshot is None:
            return
        if ref.kind == "container" and ref.name:
            self.source_key = ref.name
            self._sync_source_label()
        try:
            self.main.details.show(details(self.snapshot, ref))
        except Exception as exc:  # one odd namespace must not break the pane
            self.main.details.show(Text(f"cannot show details: {exc}", "bold red"))

    # ------------------------------------------------------------------ path

    def request_path(self, text: str, *, again: bool = False) -> None:
        """Predict (then trace) from the selected container to ``text`` in a worker.

        ``path_requests``/``path_answers`` count questions and finished answers (an error is an
        answer, waiting for discovery is not), so scripts and tests know when the panel is final.
        """
        if not again:
            self.path_requests += 1
        launched = False
        try:
            launched = self._request_path(text)
        finally:
            if not launched and self._pending_path is None:
                self.path_answers += 1

    def _request_path(self, text: str) -> bool:
        panel = self.main.path_panel
        snap = self.snapshot
        if snap is None:
            self._pending_path = text
            panel.set_status(Text("waiting for discovery…", "italic"))
            return False
        c = container_by_id(snap, self.source_key) if self.source_key else None
        if c is None:
            panel.show_error("select a source container first (1: containers, then a row)")
            return False
        try:
            query = parse_destination(path_ref(snap, c), text)
        except CntraceError as exc:
            panel.show_error(str(exc))
            return False
        if not self.detailed:
            self._pending_path = text
            panel.set_status(Text("waiting for full discovery (routes, rules)…", "italic"))
            return False
        panel.set_status(Text(f"predicting {query.source} -> {query.destination}…", "italic"))
        self.run_worker(
            lambda: self._path_thread(query, snap),
            thread=True,
            group="path",
            name="path",
            exclusive=True,
            exit_on_error=False,
        )
        return True

    def _path_thread(self, query: PathQuery, snap: Snapshot) -> None:
        try:
            self._path_worker(query, snap)
        finally:
            self._post(self._path_answered)

    def _path_answered(self) -> None:
        self.path_answers += 1

    def _path_worker(self, query: PathQuery, snap: Snapshot) -> None:
        from cntrace.path import predict

        try:
            predicted = predict(snap, query.source, query.destination, proto=query.proto)
        except CntraceError as exc:
            self._post(self.main.path_panel.show_error, str(exc))
            return
        except Exception as exc:  # a prediction bug is shown, never a traceback
            self._post(self.main.path_panel.show_error, f"prediction failed: {exc}")
            return
        if _cancelled():
            return
        live_ok, why = self._can_trace()
        status = Text("tracing live…", "italic") if live_ok else Text(f"live: {why}", "dim")
        if not self._post(self._show_path, predicted, query, snap, status):
            return
        if not live_ok or self.tracer is None:
            return
        t0 = self.timer()

        worker = get_current_worker()

        def progress(p: Path) -> None:  # may be called from a tracer thread
            if not worker.is_cancelled:
                self._post(self._show_path, p, query, snap, Text("tracing live…", "italic"))

        try:
            traced = self.tracer.trace(snap, predicted, progress)
        except CntraceError as exc:
            self._post(
                self.main.path_panel.set_status, Text(f"live trace failed: {exc}", "bold red")
            )
            return
        except Exception as exc:
            self._post(
                self.main.path_panel.set_status,
                Text(f"live trace failed: {type(exc).__name__}: {exc}", "bold red"),
            )
            return
        if _cancelled():
            return
        took = (self.timer() - t0) * 1000
        self._post(self._show_path, traced, query, snap, Text(f"live trace {took:.0f} ms", "dim"))

    def _can_trace(self) -> tuple[bool, str]:
        if not self.live:
            return False, "disabled (post-mortem of a saved snapshot)"
        if self.tracer is None:
            return False, "disabled (no tracer)"
        try:
            return self.tracer.can_trace()
        except Exception as exc:
            return False, str(exc)

    def _show_path(self, path: Path, query: PathQuery, snap: Snapshot, status: Text) -> None:
        self.path, self.path_query, self.path_snapshot = path, query, snap
        if path.mode == "predicted":
            self.predicted = path
        self.main.path_panel.show_path(path, status)
        focused = self.focused
        if focused is not None and focused.id == "destination":
            self.main.path_panel.timeline.focus()

    def _warm_tracer(self) -> None:
        if self._warmed or self.tracer is None or not self.live:
            return
        self._warmed = True
        ok, _why = self._can_trace()
        if not ok:
            return
        tracer = self.tracer

        def warm() -> None:
            with contextlib.suppress(Exception):
                tracer.prepare()

        self.run_worker(warm, thread=True, group="warm", name="warm", exit_on_error=False)

    # ------------------------------------------------------------------ rules

    def open_deciding_rule(self) -> None:
        from cntrace.tui.screens.rules import RulesScreen

        if self._tab == "topology" and self._node is not None and self.snapshot is not None:
            self._open_node_rules(self._node)
            return
        if self.path is None or self.path_snapshot is None:
            self.notify("no path yet: 3, type a destination, Enter", timeout=4)
            return
        found = deciding_rule(self.path)
        if found is None:
            self.notify("this verdict was not decided by a netfilter rule", timeout=4)
            return
        rule, netns = found
        why = f"deciding rule of {self.path.source.asked} -> {self.path.destination.asked}"
        self.push_screen(RulesScreen(self.path_snapshot, netns, {rule_key(rule)}, why))

    def open_hop_rule(self, index: int) -> None:
        from cntrace.tui.screens.rules import RulesScreen

        if self.path is None or self.path_snapshot is None:
            return
        for h in self.path.hops:
            if h.index == index:
                if h.rule is None:
                    self.notify(f"hop {index} has no netfilter rule", timeout=3)
                    return
                why = f"rule of hop {index}"
                self.push_screen(RulesScreen(self.path_snapshot, h.netns, {rule_key(h.rule)}, why))
                return

    def _open_node_rules(self, ref: NodeRef) -> None:
        from cntrace.topology import Topology, netfilter_for
        from cntrace.tui.screens.rules import RulesScreen

        snap = self.snapshot
        assert snap is not None
        marked: set[RuleKey] = set()
        netns = ref.netns
        if ref.kind == "container" and ref.name:
            c = container_by_id(snap, ref.name)
            if c is not None:
                nat = netfilter_for(snap, c)
                netns = nat.netns if nat.netns is not None else c.host_netns
                marked = {rule_key(r) for r in (*nat.dnat, *nat.egress, *nat.filter)}
        elif ref.kind in ("bridge", "port", "uplink") and ref.name and netns is not None:
            ns = Topology(snap).ns(netns)
            if ns is not None and not ns.ruleset.empty:
                with contextlib.suppress(Exception):
                    from cntrace import netfilter

                    nf = netfilter.load(ns.ruleset)
                    for refs in netfilter.rules_touching(nf, interfaces=[ref.name]).values():
                        marked |= {rule_key(r) for r in refs}
        if netns is None:
            self.notify("no namespace for this node", timeout=3)
            return
        what = ref.name
        if ref.kind == "container" and ref.name:
            c = container_by_id(snap, ref.name)
            what = c.name if c is not None else "the container"
        self.push_screen(RulesScreen(snap, netns, marked, f"rules touching {what}"))

    # ------------------------------------------------------------------ export

    def export_report(self) -> None:
        if self.path is None or self.path_snapshot is None or self.path_query is None:
            self.notify("nothing to export yet: run a path first (3)", timeout=4)
            return
        path, snap, query = self.path, self.path_snapshot, self.path_query
        prediction = self.predicted
        origin = self.source.description
        if self.live:
            origin = f"live host {snap.hostname}"

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
                self._post(self._export_failed, str(exc))
                return
            self._post(self._exported, name)

        self.run_worker(write, thread=True, group="export", name="export", exit_on_error=False)

    def _export_failed(self, message: str) -> None:
        self.notify(message, title="export failed", severity="error", timeout=8)

    def _exported(self, name: str) -> None:
        self.last_report = name
        self.notify(f"bug report written to {name}", title="exported", timeout=8)
        self.main.path_panel.set_status(Text(f"exported: {name}", "bold"))

    # ------------------------------------------------------------------ drops

    def _start_drops(self) -> None:
        panel = self.main.drops
        if self._drops_started:
            return
        if not self.live:
            panel.set_status(
                Text("post-mortem: live drops are disabled (this is a saved snapshot)", "bold")
            )
            return
        if self.tracer is None:
            panel.set_status(Text("live drops are disabled (no tracer)", "bold"))
            return
        ok, why = self.tracer.can_watch_drops()
        if not ok:
            panel.set_status(Text(f"live drops unavailable: {why}", "bold red"))
            return
        self._drops_started = True
        self._drops_state = "starting the kfree_skb probe…"
        self._drops_status()
        self.run_worker(
            self._drops_worker, thread=True, group="drops", name="drops", exit_on_error=False
        )

    def _drops_worker(self) -> None:
        assert self.tracer is not None
        start = self.clock()
        try:
            for batch in self.tracer.drop_batches(self._stop):
                if self._stop.is_set():
                    break
                rows = self._drop_rows(batch, start)
                if not self._post(self._add_drops, rows, batch):
                    break
        except CntraceError as exc:
            self._post(self._drops_failed, str(exc))
        except Exception as exc:
            self._post(self._drops_failed, f"{type(exc).__name__}: {exc}")

    def _drop_rows(self, batch: DropBatch, start: float) -> list[tuple[str | Text, ...]]:
        snap = self.snapshot
        if snap is None:
            return []
        attributor = self._attributor
        if attributor is None:
            attributor = self._attributor = DropAttributor(snap)
        rows: list[tuple[str | Text, ...]] = []
        for d in batch.drops:
            who = attributor.attribute(d.netns, d.ifindex, d.packet)
            if who.container is None and not self._drops_everything:
                continue
            wall = start + d.t_ns / 1e9
            stamp = time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall % 1 * 1000):03d}"
            rows.append(
                (
                    stamp,
                    Text(who.container, "bold") if who.container else Text("-", "dim"),
                    who.where,
                    Text(d.reason, "bold red"),
                    d.location or "?",
                    str(d.packet) if d.packet else "",
                )
            )
        return rows

    def _add_drops(self, rows: list[tuple[str | Text, ...]], batch: DropBatch) -> None:
        self._drops_seen += len(batch.drops)
        self._drops_lost = batch.lost
        self._drops_state = "watching kernel drops (skb:kfree_skb)"
        if not self._drops_paused:
            self._drops_shown += len(rows)
            self.main.drops.add_drops(rows)
        self._drops_status()

    def _drops_failed(self, message: str) -> None:
        self._drops_state = f"drops stopped: {message}"
        self._drops_status(error=True)

    def _drops_status(self, *, error: bool = False) -> None:
        t = Text(self._drops_state, "bold red" if error else "")
        if self._drops_started and not error:
            t.append(
                f" · {self._drops_shown} shown, {self._drops_seen} seen, {self._drops_lost} lost",
                "dim",
            )
            t.append(" · all drops" if self._drops_everything else " · containers only", "dim")
            if self._drops_paused:
                t.append(" · PAUSED", "bold")
        self.main.drops.set_status(t)

    def drop_settings(self, *, paused: bool, everything: bool) -> None:
        self._drops_paused = paused
        self._drops_everything = everything
        self._drops_status()


def build_app(
    source: SnapshotSource,
    tracer: Tracer | None,
    **options: Any,
) -> CntraceApp:
    """The console on ``source``; ``tracer`` None (or a post-mortem source) disables live
    features. Options: refresh_s, poll_s, export_dir, ready_file, handle_signals, theme, clock,
    timer, on_hangup."""
    return CntraceApp(source, tracer, **options)
