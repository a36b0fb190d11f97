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
