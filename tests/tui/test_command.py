"""`cntrace tui` refuses bad input and a missing terminal with one line, never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from clirun import run

LAB = Path(__file__).resolve().parents[2] / "fixtures" / "snapshots" / "lab"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return run("tui", *args, timeout=60)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--snapshot", "/nonexistent/x.json"], 2, "no such file"),
        (["--refresh", "-1"], 2, "--refresh"),
        (["--timeout", "0"], 2, "--timeout"),
        (["--export-dir", "/nonexistent"], 2, "--export-dir"),
        (["--snapshot", str(LAB / "healthy.json")], 3, "needs a terminal"),
        ([], 3, "needs a terminal"),  # live: refused before anything is read or forked
    ],
)
def test_one_line_errors(args: list[str], code: int, message: str) -> None:
    res = _run(*args)
    assert res.returncode == code, res.stderr
    assert message in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_a_big_file_read_by_the_child_fails_as_a_direct_load_does(tmp_path: Path) -> None:
    """From 512 KB `--snapshot` is read by a forked child; a bad file still says so in one line
    with the same exit code as a small one, and a good one still needs a terminal."""
    from cntrace.commands.tui import PREFETCH_BYTES

    small, big = tmp_path / "small.json", tmp_path / "big.json"
    small.write_text('{"schema": "cntrace.snapshot/v1", "netns": 7}')
    big.write_text('{"schema": "cntrace.snapshot/v1", "netns": 7}' + " " * PREFETCH_BYTES)
    direct, child = _run("--snapshot", str(small)), _run("--snapshot", str(big))
    assert child.returncode == direct.returncode not in (0, 3), child.stderr
    assert child.stderr.count("\n") == 1 and "Traceback" not in child.stderr
    assert child.stderr.replace(str(big), "F") == direct.stderr.replace(str(small), "F")
    good = tmp_path / "good.json"
    good.write_text((LAB / "healthy.json").read_text() + " " * PREFETCH_BYTES)
    res = _run("--snapshot", str(good))
    assert res.returncode == 3 and "needs a terminal" in res.stderr, res.stderr
