"""The ledger of host changes: written before objects exist, readable by the next run, and the
owner of every cntrace object recognisable from its name alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cntrace.trace import state


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CNTRACE_RUN_DIR", str(tmp_path))
    return tmp_path


def test_records_are_written_and_removed(run_dir: Path) -> None:
    led = state.Ledger()
    a, b = led.add_many(
        [
            state.Record("clsact", "/run/netns/x", 5, 2, "eth0"),
            state.Record("nft_table", "/run/netns/x", 5, name="cntrace_1_1_0", family="inet"),
        ]
    )
    doc = json.loads(led.path.read_text())
    assert doc["pid"] == os.getpid() and len(doc["records"]) == 2
    led.update(a, state.Record("clsact", "/run/netns/x", 5, 2, "eth0", created=True))
    assert json.loads(led.path.read_text())["records"][0]["created"] is True
    led.remove_many([a, b])
    assert not led.path.exists()


def test_leftovers_of_a_dead_process(run_dir: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    (run_dir / f"{pid}.json").write_text(
        json.dumps(
            {
                "pid": pid,
                "start": 1,
                "records": [
                    {
                        "kind": "filter",
                        "netns_path": "/x",
                        "netns_inode": 1,
                        "handle": 7,
                        "future_field": "ignored",
                    }
                ],
            }
        )
    )
    (run_dir / "garbage.json").write_text("{")
    led = state.Ledger()
    led.add(state.Record("filter", "/y", 2))
    found = state.leftovers()
    assert [f.pid for f in found] == [pid]  # not our own file, not the unreadable one
    assert not found[0].owner_alive
    assert found[0].records[0].handle == 7


def test_a_reused_pid_is_not_the_owner() -> None:
    me = os.getpid()
    assert state.alive(me, state.process_start(me))
    assert not state.alive(me, (state.process_start(me) or 0) + 1)
    assert not state.alive(2**22 + 7, None)


def test_owner_from_object_names() -> None:
    assert state.owner_of("cntrace:1234:1") == 1234
    assert state.owner_of("cntrace_1234_1001_0") == 1234
    assert state.owner_of("cilium-ingress") is None
    assert state.owner_of("cntrace:x") is None


def test_a_running_owners_objects_are_kept_and_named(run_dir: Path) -> None:
    """cleanup never touches a live process's objects, and says whose they are (a hung tracing
    run, not "nothing to remove")."""
    from cntrace.trace import cleanup

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        rec = {"kind": "nft_table", "netns_path": "/x", "netns_inode": 1, "name": "cntrace_1_1_0"}
        doc = {"pid": live.pid, "start": state.process_start(live.pid), "records": [rec]}
        (run_dir / f"{live.pid}.json").write_text(json.dumps(doc))
        report = cleanup.CleanupReport()
        cleanup.from_ledgers(report)
        assert not report.removed and not report.errors
        (kept,) = report.kept
        assert f"cntrace process {live.pid}, still running" in kept and "1 object(s)" in kept
        assert (run_dir / f"{live.pid}.json").exists()
    finally:
        live.kill()
        live.wait()
    report = cleanup.CleanupReport()
    cleanup.from_ledgers(report)  # now dead: its record is undone (its namespace is gone)
    assert not report.kept and not (run_dir / f"{live.pid}.json").exists()
