"""Every command of issue 15 on the live host, as a user runs it, at several host sizes.

For each size (default 100, 1,000 and 5,000 scaled containers; past 1,600 the lab puts them on
extra bridges of 800 ports each) this brings up `cntrace lab up --containers N` under the name
cntrace-speed-bench and times, each in a fresh process (interpreter and imports included, compiled
bytecode as an installed package has), median of --runs:

    cntrace path LAB.client 203.0.113.10:80 --json          (predicted)       target 0.30 s
    cntrace path LAB.client 203.0.113.10:80 --json --live                     target 1.00 s
    cntrace show LAB.c0499 --json                                             target 0.30 s
    cntrace ls --json                                                         target 0.30 s
    cntrace snapshot --save F                                                 target 1.00 s
    cntrace tui, first frame (bench_tui's tmux harness)                       target 0.50 s

Side by side in the same run: the floor (a bare netlink dump of links + addresses of the
namespaces the command needs, bench_discovery's FLOOR, as a fresh process) and the hand-run
baseline (the ip/bridge/iptables commands an engineer types for the same question), with ratios.
Targets are checked here, never by a timed test. Run as root under the kernel lock:

    flock /run/cntrace-dev.lock .venv/bin/python bench/bench_live_host.py [--sizes 100,1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_discovery import FLOOR
from bench_tui import ENV as TUI_ENV
from bench_tui import tui_once

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
LAB = "cntrace-speed-bench"
LIMIT = 8000  # cntrace/lab/spec.py MAX_EXTRA
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "cntrace-speed-bench-pycache")
TARGETS = {
    "path": 0.30,
    "path --live": 1.00,
    "show": 0.30,
    "ls": 0.30,
    "snapshot": 1.00,
    "tui": 0.50,
}


class Failed(Exception):
    """A timed command exited non-zero: its time would measure a failure, not the answer."""


def wall(argv: list[str], check: bool = True, cwd: Path = REPO) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(
        argv, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed = time.perf_counter() - t0
    if check and done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise Failed(f"{' '.join(argv[2:])}: exit {done.returncode} {why[0][:160]}")
    return elapsed


def median(fn: Callable[[], float], runs: int) -> tuple[float, list[float]]:
    fn()  # warm-up: bytecode compiled, page cache filled, as on a machine in use
    times = [fn() for _ in range(runs)]
    return statistics.median(times), times


def cntrace(*args: str, tree: Path = REPO) -> Callable[[], float]:
    """`cntrace ARGS` from the source tree ``tree`` (--before: an older checkout)."""
    return lambda: wall([PY, "-m", "cntrace", *args], cwd=tree)


def floor(namespaces: list[str]) -> Callable[[], float]:
    paths = [f"/run/netns/{ns}" for ns in namespaces]
    return lambda: wall([PY, "-c", FLOOR, *paths])


def by_hand(cmds: list[list[str]]) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        for c in cmds:
            subprocess.run(c, capture_output=True, check=False)
        return time.perf_counter() - t0

    return run


# The cntrace arguments of each row (client, container, snapshot file), for --before.
CMDS: dict[str, Callable[[str, str, str], tuple[str, ...]]] = {
    "path": lambda c, _t, _f: ("path", c, "203.0.113.10:80", "--json"),
    "path --live": lambda c, _t, _f: ("path", c, "203.0.113.10:80", "--json", "--live"),
    "show": lambda _c, t, _f: ("show", t, "--json"),
    "ls": lambda _c, _t, _f: ("ls", "--json"),
    "snapshot": lambda _c, _t, f: ("snapshot", "--save", f),
}


def tui_first_frame() -> float:
    return tui_once([])[0]


def measure(
    n: int, runs: int, before: Path | None, only: set[str] | None = None, settle: float = 0.0
) -> list[tuple[str, float, float | None, float | None]]:
    """(row, cntrace median, floor median, baseline median) for a lab of n containers."""
    subprocess.run(
        [PY, "-m", "cntrace", "lab", "up", "--containers", str(n), "--name", LAB],
        check=True,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    # A host asked about during an incident has been up for a while: the new interfaces'
    # duplicate address detection and router solicitations (seconds of kernel work after
    # `lab up`) are over before the first row is timed.
    time.sleep(settle)
    try:
        client, host, upstream = (f"{LAB}.{x}" for x in ("client", "host", "upstream"))
        target = f"{LAB}.c{min(499, n - 1):04d}"
        every = sorted(ns for ns in os.listdir("/run/netns") if ns.startswith(f"{LAB}."))
        hand_path = [
            c
            for ns, dst in (
                (client, "203.0.113.10"),
                (host, "203.0.113.10"),
                (upstream, "192.0.2.2"),
            )
            for c in (
                ["ip", "-n", ns, "route", "get", dst],
                ["ip", "-n", ns, "neigh"],
                ["bridge", "-n", ns, "fdb"],
            )
        ] + [["nsenter", f"--net=/run/netns/{host}", "iptables-save", "-c"]]
        hand_show = [
            ["ip", "-n", target, "-j", "addr"],
            ["ip", "-n", target, "-j", "route"],
            ["ip", "-n", host, "-j", "link"],
        ]
        hand_ls = [["ip", "-j", "netns", "list"], ["ip", "-n", host, "-j", "link"]]
        with tempfile.TemporaryDirectory(prefix="cntrace-speed-bench-") as tmp:
            save = os.path.join(tmp, "snap.json")
            rows: list[
                tuple[
                    str, Callable[[], float], Callable[[], float] | None, Callable[[], float] | None
                ]
            ] = [
                (
                    "path",
                    cntrace("path", client, "203.0.113.10:80", "--json"),
                    floor([client, host, upstream]),
                    by_hand(hand_path),
                ),
                (
                    "path --live",
                    cntrace("path", client, "203.0.113.10:80", "--json", "--live"),
                    floor([client, host, upstream]),
                    by_hand(hand_path),
                ),
                (
                    "show",
                    cntrace("show", target, "--json"),
                    floor([target, host]),
                    by_hand(hand_show),
                ),
                ("ls", cntrace("ls", "--json"), floor(every), by_hand(hand_ls)),
                ("snapshot", cntrace("snapshot", "--save", save), floor(every), None),
                ("tui", tui_first_frame, floor(every), None),
            ]
            out = []
            for name, fn, fl, hand in rows:
                if only is not None and name not in only:
                    continue
                args = CMDS.get(name)
                if before is not None and args is not None:
                    # Interleaved (now, before, now, ...) so both see the same machine load.
                    old = cntrace(*args(client, target, save), tree=before)

                    def old_or_nan(old: Callable[[], float] = old) -> float:
                        try:
                            return old()
                        except Failed as exc:  # an older tree's failure is a finding, shown
                            print(f"  before failed: {exc}", flush=True)
                            return float("nan")

                    fn(), old_or_nan()
                    pairs = [(fn(), old_or_nan()) for _ in range(runs)]
                    times = [a for a, _ in pairs]
                    m, b = statistics.median(times), statistics.median(o for _, o in pairs)
                else:
                    m, times = median(fn, runs)
                f = median(fl, runs)[0] if fl else None
                h = median(hand, runs)[0] if hand else None
                print(f"  {name:<12} {' '.join(f'{t:.3f}' for t in times)}", flush=True)
                out.append((name, m, f, h))
                if before is not None and args is not None:
                    print(f"  {name + ' before':<12} {' '.join(f'{o:.3f}' for _, o in pairs)}")
                    out.append((f"{name} before", b, f, h))
            return out
    finally:
        subprocess.run(
            [PY, "-m", "cntrace", "lab", "down", "--name", LAB],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            check=False,
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000,5000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument(
        "--before", type=Path, help="also time the commands from this older checkout, same lab"
    )
    ap.add_argument("--rows", help="comma-separated rows to time (default: all), e.g. path,show")
    ap.add_argument(
        "--settle", type=float, default=15.0, help="seconds to wait after `lab up` (default 15)"
    )
    args = ap.parse_args()
    only = set(args.rows.split(",")) if args.rows else None
    results: dict[int, list[tuple[str, float, float | None, float | None]]] = {}
    for n in (int(s) for s in args.sizes.split(",")):
        if n > LIMIT:
            print(
                f"{n} containers: skipped, the lab takes at most {LIMIT} "
                "(a bridge holds 1,024 ports)"
            )
            continue
        print(
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  {n} containers, "
            f"load {os.getloadavg()[0]:.1f}; {len(os.listdir('/run/netns'))} namespaces before",
            flush=True,
        )
        results[n] = measure(n, args.runs, args.before, only, args.settle)
        print(f"  load after: {os.getloadavg()[0]:.1f}", flush=True)
    for n, rows in results.items():
        print(f"\n{n} containers (median of {args.runs}, fresh processes)")
        print(
            f"{'command':<14}{'cntrace':>9}{'target':>8}{'':>6}{'floor':>9}{'x floor':>9}"
            f"{'by hand':>9}{'x hand':>8}"
        )
        for name, m, f, h in rows:
            goal = TARGETS[name.removesuffix(" before")]
            ok = "ok" if m <= goal else "MISS"
            fs = f"{f:>8.3f}s{m / f:>8.1f}x" if f else f"{'':>18}"
            hs = f"{h:>8.3f}s{m / h:>7.1f}x" if h else ""
            print(f"{name:<14}{m:>8.3f}s{goal:>7.2f}s{ok:>6}{fs}{hs}")
    if len(results) > 1:
        sizes = list(results)
        print("\ngrowth (cntrace median, s): " + " / ".join(str(n) for n in sizes))
        for i, (name, *_rest) in enumerate(results[sizes[0]]):
            print(f"{name:<14}" + "".join(f"{results[n][i][1]:>9.3f}" for n in sizes))


if __name__ == "__main__":
    try:
        main()
    finally:  # the compiled bytecode is this run's, not the machine's to keep
        for env in (ENV, TUI_ENV):
            shutil.rmtree(env["PYTHONPYCACHEPREFIX"], ignore_errors=True)
