"""`cntrace tui`: the incident console (discovery, path, drops on one screen)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

from cntrace.commands._args import seconds
from cntrace.commands._source import add_snapshot_arg
from cntrace.errors import BadInput, EnvironmentProblem, Exit, NeedsPrivilege

# A saved snapshot at least this big is read by a child while textual is imported (1,000
# containers are ~5 MB, 0.2 s to load); a smaller one loads faster than a child and a worker start.
PREFETCH_BYTES = 512 * 1024


def _size(path: str) -> int:
    """The file's size; 0 when it cannot be stat'ed (the load then says why)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "tui",
        help="the incident console: containers, topology, path and drops on one screen",
        description="Keyboard-first console over discovery, the path predictor and live "
        "tracing; `?` lists every key. With --snapshot it runs post-mortem on a saved snapshot "
        "(or a bug report) with live features disabled. Leaves nothing attached on exit.",
    )
    add_snapshot_arg(p)
    p.add_argument(
        "--refresh",
        type=seconds(0.1, 86400, zero=True),
        default=30.0,
        metavar="SECONDS",
        help="re-read discovery this often, besides when containers start or stop "
        "(0: only then; default 30)",
    )
    p.add_argument(
        "--export-dir",
        default=".",
        metavar="DIR",
        help="where `e` writes bug reports (default: the current directory)",
    )
    p.add_argument(
        "--theme",
        choices=("dark", "light"),
        default=os.environ.get("CNTRACE_THEME", "dark"),
        help="colour theme (T toggles it; NO_COLOR turns colour off)",
    )
    live = p.add_argument_group("live tracing")
    live.add_argument("--backend", choices=("auto", "ebpf", "capture"), default="auto")
    live.add_argument(
        "--timeout",
        type=seconds(0, 3600),
        default=1.0,
        metavar="SECONDS",
        help="how long a live trace waits for the probe and its reply (default 1s)",
    )
    p.add_argument("--ready-file", metavar="PATH", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.refresh < 0:
        raise BadInput("--refresh must be 0 or more seconds")
    if args.timeout <= 0:
        raise BadInput("--timeout must be positive")
    if not os.path.isdir(args.export_dir):
        raise BadInput(f"--export-dir {args.export_dir}: no such directory")
    from cntrace.tui.source import LiveSource, PrefetchedFile, RecordedSource, SnapshotSource
    from cntrace.tui.tracer import EngineTracer

    source: SnapshotSource
    tracer: EngineTracer | None = None
    saved: PrefetchedFile | None = None
    if args.snapshot is not None:
        if _size(args.snapshot) >= PREFETCH_BYTES:
            # A child reads the file while textual is imported below; a bad one still fails
            # before the UI.
            source = saved = PrefetchedFile(args.snapshot)
        else:  # read here: cheaper than a child and a worker (a bad file fails here)
            source = RecordedSource.load(args.snapshot)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        if saved is not None:
            try:
                saved.first_view()  # a bad file says so first
            finally:
                saved.close()
        raise EnvironmentProblem("cntrace tui needs a terminal (use `cntrace path` in scripts)")
    if args.snapshot is None:
        if os.geteuid() != 0:
            raise NeedsPrivilege("reading every network namespace", "CAP_SYS_ADMIN")
        live = LiveSource()
        live.prefetch()  # discovery overlaps importing textual below
        source = live
        tracer = EngineTracer(backend=args.backend, timeout_s=args.timeout)
    from cntrace.tui.app import build_app

    if saved is not None:
        try:
            saved.first_view()
        except BaseException:
            saved.close()
            raise

    def detach() -> None:
        """Whatever ended the app (q, Ctrl-C, SIGTERM, a closed terminal, a crash)."""
        if tracer is not None:
            tracer.close()
        source.close()

    app = build_app(
        source,
        tracer,
        on_hangup=detach,
        refresh_s=args.refresh,
        export_dir=args.export_dir,
        ready_file=args.ready_file,
        handle_signals=True,
        theme=args.theme,
    )
    try:
        code = app.run()
    finally:
        detach()
    if app.last_report:
        with contextlib.suppress(OSError):
            sys.stdout.write(f"bug report: {app.last_report}\n")
    return int(code or Exit.OK)
