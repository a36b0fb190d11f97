"""Fuzz: mutated recorded snapshots and rulesets through the real CLI, judged by its promises.

Each input runs through ``cli.main`` in-process (argument parsing, the reader, the core, the
renderers and the last-resort handler, as a user's process would), and a sample runs as a real
``python -m cntrace`` process under a memory limit. The judge (hostile_inputs.Outcome): no
traceback, an exit code in 0-2, one ``cntrace: error:`` line on exit 2, --json output valid
against its published schema, no raw escape sequence in the output, and bounded time. The
thousands-input version is bench/soak_snapshots.py (same mutator, other seeds).

CNTRACE_FUZZ_SEEDS raises the number of snapshot seeds (default 120, 600 runs).
"""

from __future__ import annotations

import os
import random
import resource
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import pytest
from clirun import ARGV
from hostile_inputs import (
    ALLOWED_EXITS,
    Outcome,
    commands,
    hostile_ruleset,
    hostile_snapshot,
    run_cli,
)

SEEDS = int(os.environ.get("CNTRACE_FUZZ_SEEDS", "120"))
CHUNK = 20
SECONDS_PER_RUN = 5.0  # the slowest honest run here is ~0.1 s; a hang or blow-up is far beyond
IFACES = ["--iface", "nfup0=198.51.100.2/24", "--iface", "docker0=172.17.0.1/16"]
PACKETS = (
    "tcp 203.0.113.10:40000 -> 198.51.100.2:8080 in nfup0",
    "tcp 172.17.0.2:40000 -> 203.0.113.10:443 in docker0",
    "icmp 203.0.113.10 -> 198.51.100.2 in nfup0",
)


def _judge(outcomes: list[Outcome]) -> list[str]:
    bad = []
    for o in outcomes:
        problems = o.problems()
        if o.seconds > SECONDS_PER_RUN:
            problems.append(f"took {o.seconds:.1f} s")
        if problems:
            bad.append(f"{' '.join(o.argv)[:160]}: {'; '.join(problems)}")
    return bad


def _snapshot_runs(seed: int, directory: Path) -> list[Outcome]:
    text, names = hostile_snapshot(seed)
    path = directory / f"snap-{seed}.json"
    path.write_text(text, errors="surrogatepass")
    return [run_cli(argv) for argv in commands(names, str(path), random.Random(seed))]


@pytest.mark.parametrize("first", range(0, SEEDS, CHUNK))
def test_mutated_snapshots(tmp_path: Path, first: int) -> None:
    outcomes = [o for seed in range(first, first + CHUNK) for o in _snapshot_runs(seed, tmp_path)]
    bad = _judge(outcomes)
    assert not bad, "\n".join(bad[:10])
    # The mutator must reach past the reader: some inputs load and get answers.
    assert any(o.code in (0, 1) for o in outcomes)


@pytest.mark.parametrize("first", range(0, 100, CHUNK))
def test_mutated_rulesets(tmp_path: Path, first: int) -> None:
    outcomes = []
    for seed in range(first, first + CHUNK):
        path = tmp_path / f"rules-{seed}"
        path.write_bytes(hostile_ruleset(seed))
        rng = random.Random(seed)
        argv = ["rules", "--ruleset-file", str(path), *IFACES]
        outcomes.append(run_cli([*argv, "--json"]))
        outcomes.append(run_cli([*argv, "--packet", rng.choice(PACKETS), "--json"]))
        outcomes.append(run_cli([*argv, "--packet", rng.choice(PACKETS)]))
    bad = _judge(outcomes)
    assert not bad, "\n".join(bad[:10])
    assert any(o.code in (0, 1) for o in outcomes)


# --------------------------------------------------------------------------- real processes

MEMORY_LIMIT = 1 << 30  # address space per process: far above an honest run (~100 MB resident)


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_process(argv: list[str], timeout: float = 30) -> tuple[Outcome, int]:
    """``python -m cntrace ARGV`` under a memory limit: its outcome and its own peak RSS (KiB)."""
    env = {**os.environ, "CNTRACE_INPUT_TIMEOUT": "0.5", "COLUMNS": "120"}
    env.pop("CNTRACE_DEBUG", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*ARGV, *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=_limit,  # noqa: PLW1509 - a single-threaded test process
    )
    streams: dict[str, bytes] = {}

    def drain(name: str, stream: IO[bytes]) -> None:
        streams[name] = stream.read()

    readers = [
        threading.Thread(target=drain, args=(name, stream))
        for name, stream in (("out", proc.stdout), ("err", proc.stderr))
        if stream is not None
    ]
    for r in readers:
        r.start()
    code, rss, hung = -9, 0, False
    while True:  # wait4, not wait: the rusage of this one process
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            code, rss = os.waitstatus_to_exitcode(status), usage.ru_maxrss
            break
        if time.perf_counter() - t0 > timeout:
            hung = True
            proc.kill()
        time.sleep(0.005)
    proc.returncode = code
    for r in readers:
        r.join()
    err = streams.get("err", b"").decode(errors="replace") + ("\n(killed: hung)" if hung else "")
    out = streams.get("out", b"").decode(errors="replace")
    return Outcome(argv, code, out, err, time.perf_counter() - t0), rss


@pytest.mark.parametrize("seed", [3, 11, 28, 57, 101, 150])
def test_mutated_snapshots_in_a_real_process(tmp_path: Path, seed: int) -> None:
    text, names = hostile_snapshot(seed)
    path = tmp_path / "snap.json"
    path.write_text(text, errors="surrogatepass")
    argv = commands(names, str(path), random.Random(seed))[seed % 5]
    outcome, rss_kib = run_process(argv)
    assert not outcome.problems(), (argv, outcome.stderr[-2000:])
    assert outcome.code in ALLOWED_EXITS
    assert rss_kib < 400 * 1024, f"peak RSS {rss_kib // 1024} MiB"
