"""Live tracing: end-to-end time of one traced probe, and what attached probes cost a stream.

Targets (issue 6): a live trace <= 2.0 s wall, end to end, program compilation included; the
attached probes cost <= 3% of a stream's throughput between two namespaces.

1. End to end: a fresh `python` process traces one TCP SYN through DNAT + MASQUERADE across
   3 namespaces / 4 interfaces (tests/tracekit.py), phases printed (compile, attach, inject,
   collect, detach). "compile": the C differs from the prebuilt bytecode and caches are empty,
   so bcc compiles (a developer's first run after changing the probes); "cold": empty caches
   with the prebuilt bytecode (BTF offsets and kallsyms read: a user's first run); "warm":
   every run after. Also a second trace in the same process with the engine kept (the TUI).
2. Stream cost: TCP bulk and UDP 512-byte datagrams from one namespace to another over a veth,
   baseline vs tc programs attached on both ends (both hooks) with a marker armed and the
   kfree_skb tracepoint attached, i.e. the tracing state in which a trace runs. Rounds
   alternate between the two so load from elsewhere on the machine hits both alike.

Run as root: .venv/bin/python bench/bench_trace.py [--rounds 7] [--seconds 2]
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(REPO / "tests"))

from tracekit import RTR_IN, plan_doc, sh, topology  # noqa: E402

from cntrace.model import Packet  # noqa: E402
from cntrace.sources import nsenter  # noqa: E402
from cntrace.trace.bpfsys import enable_run_time_stats  # noqa: E402
from cntrace.trace.events import TracePlan  # noqa: E402
from cntrace.trace.session import TraceEngine, targets_in  # noqa: E402

PHASES = ("compile", "attach", "inject", "collect", "detach")
PROG_COST: dict[str, tuple[float, float, float]] = {}  # proto -> (ns/run, runs/unit, CPU share)

SENDER = r"""
import socket, sys, time
proto, ip, port, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
if proto == "tcp":
    s = socket.create_connection((ip, port)); buf = b"\0" * (1 << 20)
    end = time.monotonic() + secs
    while time.monotonic() < end:
        s.sendall(buf)
    s.close()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect((ip, port)); buf = b"\0" * 512
    end = time.monotonic() + secs
    while time.monotonic() < end:
        for _ in range(64):
            try: s.send(buf)
            except OSError: pass
"""

RECEIVER = r"""
import socket, sys, time
proto, ip, port, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
if proto == "tcp":
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((ip, port)); l.listen(1); print("ready", flush=True)
    c, _ = l.accept(); buf = bytearray(1 << 20); n = 0; t0 = None
    while True:
        k = c.recv_into(buf)
        if not k: break
        if t0 is None: t0 = time.monotonic()
        n += k
    print(n / (time.monotonic() - t0), n)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    s.bind((ip, port)); s.settimeout(1.0); print("ready", flush=True)
    n = 0; t0 = None; last = None
    while True:
        try: s.recv(2048)
        except socket.timeout: break
        last = time.monotonic()
        if t0 is None: t0 = last
        n += 1
    print(n / (last - t0), n)
"""


def stream(a: str, b: str, ip: str, proto: str, port: int, secs: float) -> tuple[float, float]:
    """(rate, CPU seconds per unit) of a stream from namespace a to b; rate in bytes/s (tcp)
    or datagrams/s (udp). The CPU time of sender and receiver (user + system, which on a veth
    includes the receive path the probes sit on) per unit is what the probes add to; it is
    much less disturbed by other load on the machine than the rate is."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rx = subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{b}",
            sys.executable,
            "-c",
            RECEIVER,
            proto,
            ip,
            str(port),
            str(secs),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert rx.stdout is not None
    assert rx.stdout.readline().strip() == "ready"
    subprocess.run(
        [
            "nsenter",
            f"--net=/run/netns/{a}",
            sys.executable,
            "-c",
            SENDER,
            proto,
            ip,
            str(port),
            str(secs),
        ],
        check=True,
    )
    out, _ = rx.communicate(timeout=secs + 30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rate, units = (float(x) for x in out.split())
    return rate, cpu / units


def end_to_end(runs: int) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    with topology("bench") as topo:
        doc = plan_doc(topo, RTR_IN, 8080)
        out["compile"] = []
        for kind in ("compile", "cold", "warm"):
            for _ in range(runs if kind == "warm" else max(1, runs // 2)):
                env = dict(os.environ)
                tmp = None
                if kind in ("cold", "compile"):
                    tmp = tempfile.mkdtemp(prefix="cntrace-bench-")
                    env["CNTRACE_CACHE_DIR"] = f"{tmp}/cache"
                    env["CNTRACE_RUN_DIR"] = f"{tmp}/run/trace"
                if kind == "compile":  # C that no prebuilt or cached bytecode fits: bcc runs
                    shutil.copytree(REPO / "probes", f"{tmp}/probes")
                    with open(f"{tmp}/probes/cntrace.bpf.c", "a") as fh:
                        fh.write(f"\n/* bench {time.time_ns()} */\n")
                    env["CNTRACE_PROBES_DIR"] = f"{tmp}/probes"
                t0 = time.monotonic()
                res = subprocess.run(
                    [sys.executable, str(REPO / "tests" / "tracekit.py"), "trace", doc],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                    cwd=REPO,
                )
                wall = time.monotonic() - t0
                if tmp:
                    subprocess.run(["rm", "-rf", tmp], check=True)
                r = json.loads(res.stdout.splitlines()[-1])
                assert r["outcome"] == "delivered", r
                out[kind].append({**r["timings"], "wall": wall})
        # the engine kept loaded between traces (TUI)
        with TraceEngine("ebpf") as engine:
            plan = TracePlan(
                topo.path("cli"),
                Packet("tcp", "", RTR_IN, None, 8080),
                topo.targets(),
                topo.nft_namespaces(),
            )
            engine.trace(plan)
            again = []
            for _ in range(runs):
                t0 = time.monotonic()
                r2 = engine.trace(plan)
                again.append({**r2.timings, "wall": time.monotonic() - t0})
            out["again"] = again
    return out


def stream_cost(rounds: int, secs: float) -> dict[str, dict[str, list[tuple[float, float]]]]:
    a, b = "cntrace-tr-bench-a", "cntrace-tr-bench-b"
    results: dict[str, dict[str, list[tuple[float, float]]]] = {
        "tcp": {"baseline": [], "attached": []},
        "udp": {"baseline": [], "attached": []},
    }
    try:
        for ns in (a, b):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh(
            "ip",
            "link",
            "add",
            "trba",
            "netns",
            a,
            "type",
            "veth",
            "peer",
            "name",
            "trbb",
            "netns",
            b,
        )
        sh("ip", "addr", "add", "192.0.2.1/24", "dev", "trba", ns=a)
        sh("ip", "addr", "add", "192.0.2.2/24", "dev", "trbb", ns=b)
        sh("ip", "link", "set", "trba", "up", ns=a)
        sh("ip", "link", "set", "trbb", "up", ns=b)
        targets = targets_in(f"/run/netns/{a}", ("trba",)) + targets_in(
            f"/run/netns/{b}", ("trbb",)
        )
        plan = TracePlan(
            f"/run/netns/{a}", Packet("tcp", "", "192.0.2.2", None, 9), targets, backend="ebpf"
        )
        port = 5001
        with TraceEngine("ebpf") as engine:
            for i in range(rounds):
                for proto in ("tcp", "udp"):
                    # ABBA order, so a drift in the machine's load hits both sides alike
                    order = ("baseline", "attached") if i % 2 == 0 else ("attached", "baseline")
                    for mode in order:
                        port += 1
                        if mode == "baseline":
                            v = stream(a, b, "192.0.2.2", proto, port, secs)
                        else:
                            with engine.armed(plan):
                                v = stream(a, b, "192.0.2.2", proto, port, secs)
                        results[proto][mode].append(v)
            # per-packet cost of the programs themselves, from the kernel's own accounting
            stats_fd = enable_run_time_stats()
            try:
                for proto in ("tcp", "udp"):
                    port += 1
                    with engine.armed(plan):
                        before = engine.program_stats()
                        t_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
                        _rate, cpu_per_unit = stream(a, b, "192.0.2.2", proto, port, secs)
                        t_cpu2 = resource.getrusage(resource.RUSAGE_CHILDREN)
                        after = engine.program_stats()
                    cpu = (t_cpu2.ru_utime - t_cpu.ru_utime) + (t_cpu2.ru_stime - t_cpu.ru_stime)
                    ns = sum(after[p][0] - before[p][0] for p in ("cntrace_tc_in", "cntrace_tc_eg"))
                    runs = sum(
                        after[p][1] - before[p][1] for p in ("cntrace_tc_in", "cntrace_tc_eg")
                    )
                    PROG_COST[proto] = (
                        ns / max(runs, 1),
                        runs / (cpu / cpu_per_unit),
                        ns / 1e9 / cpu,
                    )
            finally:
                os.close(stats_fd)
    finally:
        for ns in (a, b):
            sh("ip", "netns", "del", ns, check=False)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", choices=("e2e", "stream"), help="run one half only")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_trace needs root")
    nsenter.named()  # fail early if /run/netns is unusable

    if args.only != "stream":
        print_e2e(end_to_end(args.runs))
    if args.only != "e2e":
        print_stream(stream_cost(args.rounds, args.seconds), args.rounds)


def print_e2e(e2e: dict[str, list[dict[str, float]]]) -> None:
    print("== live trace, end to end (fresh process; median of runs; ms)")
    print(f"{'':8}" + "".join(f"{p:>10}" for p in (*PHASES, "total", "wall")))
    for kind, rows in e2e.items():
        med = {
            k: statistics.median(r.get(k, 0.0) for r in rows) for k in (*PHASES, "total", "wall")
        }
        print(f"{kind:8}" + "".join(f"{med[k] * 1000:>10.0f}" for k in (*PHASES, "total", "wall")))
    print("  compile: changed C, empty caches: bcc compiles (a developer's first run);")
    print("  cold: empty caches, prebuilt bytecode (a user's first run: BTF and kallsyms read);")
    print("  warm: every later run; again: second trace in one process, engine kept (TUI).")
    print("  wall includes python start-up and imports (scapy ~0.7 s, in the background)")


def print_stream(cost: dict[str, dict[str, list[tuple[float, float]]]], rounds: int) -> None:
    print("\n== stream between two namespaces: baseline vs probes attached and armed")
    print("   per back-to-back pair: rate cost = 1 - rate(attached)/rate(baseline),")
    print("   CPU cost = cpu-per-unit(attached)/cpu-per-unit(baseline) - 1; medians [quartiles]")
    print(
        f"{'':5}{'baseline':>15}{'attached':>15}{'rate cost':>11}{'':16}"
        f"{'CPU cost':>10}{'':16}pairs"
    )

    def spread(vals: list[float]) -> str:
        q = statistics.quantiles(vals, n=4) if len(vals) > 1 else [vals[0]] * 3
        return f"{q[1] * 100:>6.1f}% [{q[0] * 100:5.1f}..{q[2] * 100:5.1f}]"

    for proto, unit, scale in (("tcp", "Gbit/s", 8e-9), ("udp", "kpps", 1e-3)):
        base, att = cost[proto]["baseline"], cost[proto]["attached"]
        rate = [1 - a[0] / b[0] for a, b in zip(att, base, strict=True)]
        cpu = [a[1] / b[1] - 1 for a, b in zip(att, base, strict=True)]
        print(
            f"{proto:5}{statistics.median(b[0] for b in base) * scale:>9.2f} {unit:<5}"
            f"{statistics.median(a[0] for a in att) * scale:>9.2f} {unit:<5}"
            f"{spread(rate):>27}{spread(cpu):>26}{rounds:>7}"
        )
    print("   the tc programs themselves (kernel run-time accounting, one attached run):")
    for proto, unit in (("tcp", "byte"), ("udp", "datagram")):
        if proto in PROG_COST:
            ns, per_unit, share = PROG_COST[proto]
            print(
                f"   {proto}: {ns:.0f} ns per run, {per_unit:.2g} runs per {unit}, "
                f"{share * 100:.2f}% of the stream's CPU time"
            )


if __name__ == "__main__":
    main()
