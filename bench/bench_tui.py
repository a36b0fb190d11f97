"""Benchmark: `cntrace tui` start to first full frame on a host with 1,000 containers.

Target (issue 7): <= 1.0 s from process start to the first frame that shows the containers
table filled, Python start-up and imports included. Printed side by side in the same run:

- tui live:      `cntrace tui` in a 120x40 tmux session on the live host, a fresh process each
                 time; the first frame is signalled by the hidden --ready-file, written after that
                 frame was painted. CPU is the console's own (all threads) up to that frame.
                 Also the time until details (routes, sockets, rulesets) are in and a path can
                 be asked.
- ls live:       `cntrace ls` on the same host (the baseline: the same cheap discovery read,
                 printed as text, no UI).
- tui recorded:  `cntrace tui --snapshot FILE` on a snapshot of the same host.
- ls recorded:   `cntrace ls --snapshot FILE`.
- Both sides run with compiled bytecode (see ENV) after one warm-up run each.
- live trace:    the console's tracer (one TraceEngine kept for the run) on the lab: the first
                 trace, later traces (target <= 0.3 s), and the one-shot `cntrace path --live`.
- change check:  one poll of the console's change detector (rtnetlink link events + namespace
                 directories), against the naive alternative of scanning /proc for namespaces.

The 1,000 containers come from the built-in lab (`cntrace lab up --containers 1000`) under the
name cntrace-ui-bench, removed at the end unless --keep. The live host is the whole machine:
other namespaces present are read too (the output says how many containers were shown). Run as
root: `.venv/bin/python bench/bench_tui.py [--containers N] [--runs N] [--keep]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
LAB = "cntrace-ui-bench"
TARGET_S = 1.0
# Measured processes run as an installed tool does: with compiled bytecode (pip compiles it on
# install). This environment sets PYTHONDONTWRITEBYTECODE, which would recompile every module of
# cntrace at every start; the cache goes to a directory of ours, not into the source tree.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "cntrace-ui-bench-pycache")


def lab_up(n: int) -> None:
    state = Path("/run/cntrace/labs") / f"{LAB}.json"
    if state.exists():
        doc = json.loads(state.read_text())
        if doc.get("status") == "up" and len(doc.get("containers", [])) >= n:
            return
    print(f"setting up: cntrace lab up --containers {n} --name {LAB} ...", flush=True)
    t0 = time.perf_counter()
    subprocess.run(
        [PY, "-m", "cntrace", "lab", "up", "--containers", str(n), "--name", LAB],
        check=True,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    print(f"  lab up in {time.perf_counter() - t0:.1f} s", flush=True)


def lab_down() -> None:
    subprocess.run(
        [PY, "-m", "cntrace", "lab", "down", "--name", LAB],
        check=False,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )


def _cpu_s(pid: int) -> float:
    """CPU (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tui_once(extra: list[str], cols: int = 120, rows: int = 40) -> tuple[float, float, int, float]:
    """(seconds to first full frame, seconds to details, containers shown, CPU seconds used up
    to the first frame) for one run, in a tmux session: a real terminal emulator, which answers
    the queries textual sends at start-up as a user's terminal would."""
    with tempfile.TemporaryDirectory(prefix="cntrace-ui-bench-") as tmp:
        ready = Path(tmp) / "ready"
        session = f"cntrace-ui-bench-{os.getpid()}"
        argv = [PY, "-m", "cntrace", "tui", "--refresh", "0", "--ready-file", str(ready), *extra]
        cmd = f"cd {REPO} && exec " + " ".join(argv)
        first = detail = None
        shown = 0
        cpu = 0.0
        t0 = time.perf_counter()
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", session, "-x", str(cols), "-y", str(rows), cmd],
            check=True,
            env={**ENV, "TERM": "xterm-256color"},
        )
        deadline = t0 + 60
        try:
            while time.perf_counter() < deadline:
                if ready.exists():
                    text = ready.read_text()
                    if first is None and text:
                        first = time.perf_counter() - t0
                        pid = int(text.split()[0])
                        cpu = _cpu_s(pid)
                        shown = int(text.split()[1])
                    if "detailed" in text:
                        detail = time.perf_counter() - t0
                        break
                time.sleep(0.002)
            subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=False)
            end = time.monotonic() + 20
            while (
                time.monotonic() < end
                and subprocess.run(
                    ["tmux", "has-session", "-t", session], capture_output=True, check=False
                ).returncode
                == 0
            ):
                time.sleep(0.05)
        finally:
            subprocess.run(
                ["tmux", "kill-session", "-t", session], capture_output=True, check=False
            )
        if first is None or detail is None:
            raise RuntimeError("the console never signalled its first frame")
        return first, detail, shown, cpu


def cmd_once(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `cntrace ARGS` run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [PY, "-m", "cntrace", *args],
        check=True,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        env=ENV,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def change_check_cost(host_ns: str) -> tuple[float, float]:
    """(µs per ChangeWatch.poll, µs per /proc namespace scan)."""
    sys.path.insert(0, str(REPO))
    from cntrace.sources.watch import ChangeWatch  # noqa: PLC0415 (after the path fix-up)

    with ChangeWatch() as w:
        w.watch_namespaces(["/proc/1/ns/net", f"/run/netns/{host_ns}"])
        w.poll()
        n = 2000
        t0 = time.perf_counter()
        for _ in range(n):
            w.poll()
        poll_us = (time.perf_counter() - t0) / n * 1e6

    def scan() -> set[int]:
        seen = set()
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                with contextlib.suppress(OSError):
                    seen.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
        return seen

    scan()
    t0 = time.perf_counter()
    for _ in range(20):
        scan()
    scan_us = (time.perf_counter() - t0) / 20 * 1e6
    return poll_us, scan_us


def trace_times(runs: int) -> dict[str, tuple[float, list[float], float]]:
    """Per destination: (first trace, later traces, one-shot `cntrace path --live`) seconds.

    The console's tracer (EngineTracer) keeps one TraceEngine for the run: the first trace pays
    for loading the probes, the later ones should answer in <= 300 ms (issue 7). The baseline is
    the one-shot CLI in a fresh process, which loads and removes everything each time.
    """
    sys.path.insert(0, str(REPO))
    from cntrace.path import predict  # noqa: PLC0415 (after the path fix-up)
    from cntrace.sources import live  # noqa: PLC0415
    from cntrace.tui.tracer import EngineTracer  # noqa: PLC0415

    src = f"{LAB}.client"
    cases = {"delivered (web:80)": f"{LAB}.web:80", "dropped (api:80)": f"{LAB}.api:80"}
    snap = live.read_snapshot(only=[src, f"{LAB}.web", f"{LAB}.api"])
    out: dict[str, tuple[float, list[float], float]] = {}
    tracer = EngineTracer()
    try:
        for name, dest in cases.items():
            predicted = predict(snap, src, dest)
            times = []
            for _ in range(runs + 1):
                t0 = time.perf_counter()
                traced = tracer.trace(snap, predicted)
                times.append(time.perf_counter() - t0)
                assert traced.mode == "live", traced.notes
            cli = [PY, "-m", "cntrace", "path", src, dest, "--live"]
            t0 = time.perf_counter()
            subprocess.run(cli, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, check=False)
            out[name] = (times[0], times[1:], time.perf_counter() - t0)
    finally:
        tracer.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--containers", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_tui: run as root (it reads every namespace and builds a lab)")
    lab_up(args.containers)
    try:
        with tempfile.TemporaryDirectory(prefix="cntrace-ui-bench-") as tmp:
            snap = os.path.join(tmp, "host.json")
            t0 = time.perf_counter()
            subprocess.run(
                [PY, "-m", "cntrace", "snapshot", "--save", snap],
                check=True,
                cwd=REPO,
                stdout=subprocess.DEVNULL,
            )
            save_s = time.perf_counter() - t0
            size_mb = os.path.getsize(snap) / 1e6
            tui_once([])  # warm the bytecode and page caches for both sides
            cmd_once(["ls"])
            live = [tui_once([]) for _ in range(args.runs)]
            rec = [tui_once(["--snapshot", snap]) for _ in range(args.runs)]
            ls_live = [cmd_once(["ls"]) for _ in range(args.runs)]
            ls_rec = [cmd_once(["ls", "--snapshot", snap]) for _ in range(args.runs)]
        poll_us, scan_us = change_check_cost(f"{LAB}.host")
        traces = trace_times(args.runs)
    finally:
        if not args.keep:
            lab_down()

    med = statistics.median
    shown = live[0][2]

    def row(name: str, first: float, cpu: float, detail: float | None = None) -> None:
        d = f"{detail:>9.3f} s" if detail is not None else f"{'':>11}"
        print(f"  {name:26} {first:>9.3f} s {cpu:>9.3f} s {d}")

    print()
    print(
        f"cntrace tui, start to first full frame ({args.containers}-container lab; {shown} "
        f"containers on the host; median of {args.runs}; 120x40 tmux; "
        f"load {os.getloadavg()[0]:.1f})"
    )
    print(f"  {'':26} {'wall':>11} {'CPU':>11} {'details in':>11}")
    row("tui live", med(r[0] for r in live), med(r[3] for r in live), med(r[1] for r in live))
    row("ls live (baseline)", med(r[0] for r in ls_live), med(r[1] for r in ls_live))
    row("tui --snapshot", med(r[0] for r in rec), med(r[3] for r in rec), med(r[1] for r in rec))
    row("ls --snapshot (baseline)", med(r[0] for r in ls_rec), med(r[1] for r in ls_rec))
    live_first, rec_first = med(r[0] for r in live), med(r[0] for r in rec)
    print(
        f"  target: first frame <= {TARGET_S:.1f} s wall: "
        f"{'met' if live_first <= TARGET_S else 'NOT met'} live, "
        f"{'met' if rec_first <= TARGET_S else 'NOT met'} recorded"
    )
    print(f"  snapshot of the host: {size_mb:.1f} MB, saved in {save_s:.2f} s")
    print()
    print("change detector (run every second by the console)")
    print(f"  ChangeWatch.poll()            {poll_us:>10.1f} µs")
    print(f"  scan /proc for namespaces     {scan_us:>10.1f} µs   (the naive alternative)")

    print()
    print(f"live trace from the console's kept engine (median of {args.runs} after the first)")
    print(f"  {'':22} {'first':>9} {'later':>9} {'one-shot CLI':>13}")
    for name, (first, later, cli) in traces.items():
        print(f"  {name:22} {first:>7.3f} s {med(later):>7.3f} s {cli:>11.3f} s")
    worst = max(med(t[1]) for t in traces.values())
    print(f"  target: a later trace <= 0.300 s: {'met' if worst <= 0.3 else 'NOT met'}")


if __name__ == "__main__":
    try:
        main()
    finally:  # the compiled bytecode is this run's, not the machine's to keep
        shutil.rmtree(ENV["PYTHONPYCACHEPREFIX"], ignore_errors=True)
