"""Screenshots of every screen (pytest-textual-snapshot), at 80x24 unless the test says otherwise.

Built through the factory from recorded lab snapshots; a changed screen fails until reviewed and
accepted with ``pytest tests/tui --snapshot-update``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets.data_table import ColumnKey
from tuikit import path_to, settle, to_container_node, type_text, wait_for

from cntrace.tui.app import CntraceApp

STAMP = "00:00:00.000"  # a drop's time
MakeApp = Callable[..., CntraceApp]
SnapCompare = Callable[..., bool]
Steps = Callable[[Pilot[int]], Awaitable[None]]


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def _run(*steps: Steps) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        for step in steps:
            await step(pilot)
        await settle(pilot)

    return run_before


def keys(*names: str) -> Steps:
    async def press(pilot: Pilot[int]) -> None:
        for name in names:
            await pilot.press(name)
            await pilot.pause()

    return press


def path(source: str, destination: str) -> Steps:
    async def ask(pilot: Pilot[int]) -> None:
        await path_to(pilot, source, destination)

    return ask


def filtered(text: str, rows: int) -> Steps:
    async def do(pilot: Pilot[int]) -> None:
        app = pilot.app
        assert isinstance(app, CntraceApp)
        await type_text(pilot, text)
        await wait_for(pilot, lambda: app.main.table.row_count == rows)

    return do


async def _to_web_node(pilot: Pilot[int]) -> None:
    await to_container_node(pilot, "web")


async def _drops_arrived(pilot: Pilot[int]) -> None:
    """Rows in, and measured: a DataTable sizes its columns when idle, so a screenshot taken
    between the two would show the rows in header-wide columns."""
    app = pilot.app
    assert isinstance(app, CntraceApp)
    table = app.main.drops.table
    for _ in range(200):
        await pilot.pause(0.02)
        if table.row_count and table.columns[ColumnKey("TIME")].content_width >= len(STAMP):
            return
    raise AssertionError("no drops")


def test_containers(snap_compare: SnapCompare, make_app: MakeApp) -> None:
    assert snap_compare(make_app("healthy"), terminal_size=(80, 24), run_before=_run())


def test_containers_filtered(snap_compare: SnapCompare, make_app: MakeApp) -> None:
    steps = _run(keys("slash"), filtered("lab0", 2))
    assert snap_compare(make_app("healthy"), terminal_size=(80, 24), run_before=steps)


def test_containers_live_wide(snap_compare: SnapCompare, make_app: MakeApp) -> None:
    app = make_app("healthy", live=True)
    assert snap_compare(app, terminal_size=(140, 36), run_before=_run())


def test_topology_container_details(snap_compare: SnapCompare, make_app: MakeApp) -> None:
    steps = _run(keys("2"), _to_web_node)
    assert snap_compare(make_app("healthy"), terminal_size=(80, 24), run_before=steps)


def test_path_dropped(snap_compare: SnapCompare, make_app: MakeApp) -> None:
    steps = _run(path("client", "203.0.113.10:80"))
    assert snap_compare(make_app("forward-drop"), terminal_size=(80, 24), run_before=steps)


def test_path_dropped_light_theme(snap_compare: SnapCompare, make_app: MakeApp) -> None:
    steps = _run(path("client", "api:80"))
    app = make_app("healthy", theme="light")
    assert snap_compare(app, terminal_size=(80, 24), run_before=steps)


def test_path_live(snap_compare: SnapCompare, make_app: MakeApp) -> None:
    steps = _run(path("client", "203.0.113.10:80"))
    app = make_app("forward-drop", live=True)
    assert snap_compare(app, terminal_size=(100, 30), run_before=steps)


def test_path_error(snap_compare: SnapCompare, make_app: MakeApp) -> None:
    steps = _run(path("client", "nosuch:80"))
    assert snap_compare(make_app("healthy"), terminal_size=(80, 24), run_before=steps)


def test_rules_view_marks_the_deciding_rule(snap_compare: SnapCompare, make_app: MakeApp) -> None:
    steps = _run(path("client", "203.0.113.10:80"), keys("r"))
    assert snap_compare(make_app("forward-drop"), terminal_size=(80, 24), run_before=steps)


def test_help(snap_compare: SnapCompare, make_app: MakeApp) -> None:
    steps = _run(keys("question_mark"))
    assert snap_compare(make_app("healthy"), terminal_size=(80, 24), run_before=steps)


def test_drops_post_mortem(snap_compare: SnapCompare, make_app: MakeApp) -> None:
    steps = _run(keys("4"))
    assert snap_compare(make_app("healthy"), terminal_size=(80, 24), run_before=steps)


def test_drops_live(snap_compare: SnapCompare, make_app: MakeApp) -> None:
    steps = _run(keys("4"), _drops_arrived)
    app = make_app("healthy", live=True)
    assert snap_compare(app, terminal_size=(100, 24), run_before=steps)


def test_path_dropped_no_color(
    snap_compare: SnapCompare, make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_COLOR: the verdict, the deciding hop and the finding still stand out (marks, words)."""
    monkeypatch.setenv("NO_COLOR", "1")
    steps = _run(path("client", "203.0.113.10:80"))
    app = make_app("forward-drop")
    assert app.no_color
    assert snap_compare(app, terminal_size=(80, 24), run_before=steps)
