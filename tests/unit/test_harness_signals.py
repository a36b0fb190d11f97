"""Processes the tests start take Ctrl-C as from a terminal, however the suite was started.

A suite started as a background job (``.ci/run > log &``) inherits SIGINT ignored; without
harness.ctrl_c_as_from_a_terminal a tracing process the tests interrupt would ignore it and hold
its filters forever (the integration tier's cascade of test_trace.py failures).
"""

from __future__ import annotations

import signal
import subprocess
import sys

CHILD = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"


def test_this_process_takes_sigint() -> None:
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN


def test_a_child_python_raises_keyboardinterrupt_on_sigint() -> None:
    res = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=30
    )
    assert res.stdout.strip() == "True", res.stdout + res.stderr


def test_a_shell_started_in_the_background_would_ignore_it() -> None:
    """The cause, shown: a non-interactive shell's background job starts with SIGINT ignored
    (so the harness must put it back; the test above proves it does)."""
    script = f"{sys.executable} -c '{CHILD}' & wait"
    res = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, check=True, timeout=30
    )
    assert res.stdout.strip() == "False", res.stdout + res.stderr
