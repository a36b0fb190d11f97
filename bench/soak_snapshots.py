"""Soak: thousands of hostile snapshots and rulesets through cntrace, judged by its promises.

The CI version is tests/unit/test_fuzz_snapshots.py (seeds 0-119); this runs other seeds, more of
them, plus hand-made worst cases in real processes (a 60 MB name, a file over the size limit, a
FIFO with no writer, our own /dev/zero, 200,000-deep nesting, a 5,000-digit number), and reports
per input: exit codes, the slowest runs, peak memory, and every broken promise.

    .venv/bin/python bench/soak_snapshots.py [--seeds 3000] [--first 10000]

No root needed (the /dev/zero case is skipped without CAP_MKNOD); sends no packets.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import resource
import stat
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))

from hostile_inputs import (
    Outcome,
    commands,
    hostile_ruleset,
    hostile_snapshot,
    run_cli,
)
from test_fuzz_snapshots import IFACES, PACKETS, run_process

SLOW = 5.0


def _report(name: str, outcomes: list[Outcome]) -> int:
    codes = collections.Counter(o.code for o in outcomes)
    times = sorted(o.seconds for o in outcomes)
    bad = [(o, p) for o in outcomes for p in o.problems() + (["slow"] if o.seconds > SLOW else [])]
    print(
        f"{name}: {len(outcomes)} runs, exits {dict(sorted(codes.items()))}, "
        f"median {times[len(times) // 2] * 1000:.1f} ms, max {times[-1] * 1000:.0f} ms, "
        f"{len(bad)} problems"
    )
    for o, p in bad[:20]:
        print(f"  {p}: {' '.join(o.argv)[:150]}")
    return len(bad)


def soak_snapshots(first: int, seeds: int, directory: Path) -> list[Outcome]:
    outcomes = []
    for seed in range(first, first + seeds):
        text, names = hostile_snapshot(seed)
        path = directory / "snap.json"
        path.write_text(text, errors="surrogatepass")
        outcomes += [run_cli(a) for a in commands(names, str(path), random.Random(seed))]
    return outcomes


def soak_rulesets(first: int, seeds: int, directory: Path) -> list[Outcome]:
    outcomes = []
    for seed in range(first, first + seeds):
        path = directory / "rules"
        path.write_bytes(hostile_ruleset(seed))
        base = ["rules", "--ruleset-file", str(path), *IFACES]
        outcomes.append(run_cli([*base, "--json"]))
        outcomes.append(run_cli([*base, "--packet", random.Random(seed).choice(PACKETS)]))
    return outcomes


def worst_cases(directory: Path) -> list[tuple[str, Outcome, int]]:
    """Hand-made files, each in a real process: (case, outcome, peak RSS KiB)."""
    healthy = (
        Path(__file__).resolve().parents[1] / "fixtures/snapshots/lab/healthy.json"
    ).read_text()
    cases: dict[str, Path] = {}

    def write(name: str, text: str) -> None:
        cases[name] = directory / name
        cases[name].write_text(text)

    write("60 MB name", healthy.replace('"name": "web"', '"name": "' + "A" * 60_000_000 + '"', 1))
    write("70 MB file", healthy + " " * 70_000_000)
    write("200,000-deep", "[" * 200_000 + "]" * 200_000)
    write("5,000 digits", healthy.replace('"mtu": 1500', '"mtu": ' + "9" * 5000, 1))
    write("escapes", healthy.replace('"name": "web"', '"name": "\\u001b]0;x\\u0007\\u001b[2J"'))
    fifo = directory / "fifo"
    os.mkfifo(fifo)
    cases["FIFO, no writer"] = fifo
    zero = directory / "zero"
    try:
        os.mknod(zero, stat.S_IFCHR | 0o666, os.makedev(1, 5))
        cases["/dev/zero (own node)"] = zero
    except PermissionError:
        print("(no CAP_MKNOD: /dev/zero case skipped)")
    out = []
    for name, path in cases.items():
        for argv in (
            ["ls", "--snapshot", str(path)],
            ["path", "web", "db:80", "--snapshot", str(path)],
        ):
            outcome, rss = run_process(argv, timeout=60)
            out.append((name, outcome, rss))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3000)
    ap.add_argument("--first", type=int, default=10_000, help="first seed (CI uses 0-119)")
    args = ap.parse_args()
    problems = 0
    with tempfile.TemporaryDirectory(prefix="cntrace-soak-") as tmp:
        directory = Path(tmp)
        t0 = time.perf_counter()
        problems += _report("snapshots", soak_snapshots(args.first, args.seeds, directory))
        problems += _report("rulesets", soak_rulesets(args.first, args.seeds // 3, directory))
        print(
            f"in-process runs took {time.perf_counter() - t0:.0f} s, peak RSS "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB"
        )
        for name, o, rss in worst_cases(directory):
            issues = o.problems() + (["slow"] if o.seconds > SLOW else [])
            problems += bool(issues)
            line = (o.stderr.strip().splitlines() or [""])[-1][:110]
            print(
                f"  {name:<22} {o.argv[0]:<5} exit {o.code} {o.seconds:5.2f} s "
                f"{rss // 1024:4d} MiB  {'; '.join(issues) or line}"
            )
    print("OK" if not problems else f"{problems} PROBLEMS")
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
