"""A saved snapshot read by a forked child (`cntrace tui --snapshot FILE`): the first frame
shows the child's rows; the whole Snapshot arrives after it, the same as a direct load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tuikit import LAB, path_to, settle, wait_for

from cntrace.errors import CntraceError, Exit
from cntrace.sources import recorded
from cntrace.tui.app import build_app
from cntrace.tui.source import PrefetchedFile, header_of
from cntrace.tui.views.containers import container_rows


def _reaped(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_first_view_is_the_header_and_rows_then_the_whole_snapshot() -> None:
    path = str(LAB / "forward-drop.json")
    want = recorded.load(path)
    source = PrefetchedFile(path)
    assert source._prefetch is not None
    pid = source._prefetch.pid
    view = source.first_view()
    assert view is not None
    assert view == (header_of(want), container_rows(want))
    assert view[0].netns == () and view[0].containers == ()
    assert view[0].hostname == want.hostname and view[0].taken_at == want.taken_at
    assert source.read(detail=True) == want
    assert _reaped(pid), "collecting the Snapshot reaps the child"
    assert source.read(detail=False) is source.read(detail=True)
    source.close()


def test_a_bad_file_raises_from_the_child_like_a_direct_load(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "cntrace.snapshot/v1", "netns": 7}')
    with pytest.raises(CntraceError) as direct:
        recorded.load(str(bad))
    source = PrefetchedFile(str(bad))
    with pytest.raises(CntraceError) as prefetched:
        source.first_view()
    assert prefetched.value.exit_code == direct.value.exit_code != Exit.OK
    assert str(prefetched.value) == str(direct.value)
    source.close()


def test_closing_before_the_first_frame_reaps_the_child() -> None:
    source = PrefetchedFile(str(LAB / "healthy.json"))
    assert source._prefetch is not None
    pid = source._prefetch.pid
    source.close()
    assert _reaped(pid)


async def test_console_on_a_prefetched_file_shows_rows_then_answers_paths() -> None:
    app = build_app(PrefetchedFile(str(LAB / "forward-drop.json")), None)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.detailed)
        await settle(pilot)
        assert [r.name for r in app.main.table.shown] == ["api", "client", "db", "upstream", "web"]
        assert app.snapshot == recorded.load(str(LAB / "forward-drop.json"))
        await path_to(pilot, "client", "203.0.113.10:80")
        assert app.path.current is not None
        assert [f.code for f in app.path.current.findings] == ["forward-drop"]
        status = app.feed.status_text(*app.containers.counts()).plain
        assert "post-mortem" in status and "forward-drop.json" in status
