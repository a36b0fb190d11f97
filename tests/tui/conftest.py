"""Console tests: apps built through the factory from recorded lab snapshots (see tuikit)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path as FsPath

import pytest
from tuikit import FIXED_CLOCK, LiveRecordedSource, ScriptedTracer, lab_drops, lab_snapshot

from cntrace.tui.app import CntraceApp, build_app
from cntrace.tui.source import RecordedSource


@pytest.fixture
def make_app(tmp_path: FsPath) -> Callable[..., CntraceApp]:
    def make(state: str = "healthy", *, live: bool = False, **options: object) -> CntraceApp:
        snap = lab_snapshot(state)
        options.setdefault("export_dir", str(tmp_path))
        options.setdefault("clock", lambda: FIXED_CLOCK)
        options.setdefault("timer", lambda: 0.0)
        if live:
            tracer = options.pop("tracer", None) or ScriptedTracer(lab_drops(snap))
            return build_app(LiveRecordedSource(snap), tracer, **options)  # type: ignore[arg-type]
        return build_app(RecordedSource(snap, f"{state}.json"), None, **options)  # type: ignore[arg-type]

    return make
