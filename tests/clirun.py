"""The one way tests run the cntrace CLI: a fresh process as a user runs it, or ``cli.main`` in
this process where a subprocess per case would multiply a file's run time.

Every runner checks the exit status it is told to expect and that no traceback reached stderr,
so a test cannot pass on "it printed something".
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

ARGV = [sys.executable, "-m", "cntrace"]


def run(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    inproc: bool = False,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The CLI's exit status and output; ``env`` adds to (not replaces) this process's. Its
    stdin is empty: nothing a test runs waits on the terminal."""
    if inproc:
        return _inproc(list(args))
    full = {**os.environ, **(env or {})}
    return subprocess.run(
        [*ARGV, *args],
        capture_output=True,
        text=True,
        check=False,
        env=full,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def start(*args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """The CLI as a process left running (``drops``, a trace held open): the caller waits for
    it, signals it and checks its exit status itself (``finish``)."""
    full = {**os.environ, **(env or {})}
    return subprocess.Popen(
        [*ARGV, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full,
    )


def finish(
    proc: subprocess.Popen[str], rc: int | Iterable[int] = 0, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Wait for a started CLI (killed if still running after ``timeout``: the test fails) and
    assert its exit status is one of ``rc`` and that nothing crashed."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(
            f"{proc.args}: still running after {timeout} s; killed\n{err}"
        ) from None
    res = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    _check(res, rc, [str(a) for a in proc.args][len(ARGV) :])
    return res


def run_ok(*args: str, rc: int | Iterable[int] = 0, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run and assert the exit status is one of ``rc`` and that nothing crashed."""
    res = run(*args, **kw)
    _check(res, rc, args)
    return res


def _check(
    res: subprocess.CompletedProcess[str], rc: int | Iterable[int], args: Iterable[str]
) -> None:
    allowed = {rc} if isinstance(rc, int) else set(rc)
    assert res.returncode in allowed, (
        f"cntrace {' '.join(args)}: exit {res.returncode}, expected {sorted(allowed)}\n{res.stderr}"
    )
    assert "Traceback (most recent call last)" not in res.stderr, res.stderr


def run_json(*args: str, rc: int | Iterable[int] = 0, **kw: Any) -> Any:
    """Run with the given arguments (``--json`` included by the caller) and parse stdout."""
    res = run_ok(*args, rc=rc, **kw)
    try:
        return json.loads(res.stdout)
    except ValueError as exc:
        msg = f"cntrace {' '.join(args)} printed no JSON: {exc}\n{res.stdout[:500]}"
        raise AssertionError(msg) from exc


def _inproc(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``cli.main`` in this process, its output captured; a crash lands in stderr as a traceback."""
    from cntrace import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # as the interpreter reads it: None is 0, a message 1
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:
            traceback.print_exc(file=sys.stderr)
            code = -1
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
