"""`cntrace path SRC DEST`: one packet's way, hop by hop, with the verdict and its cause."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

from cntrace.commands._args import PORT, integer, seconds
from cntrace.commands._source import add_snapshot_arg, get_snapshot
from cntrace.errors import BadInput, Exit
from cntrace.model import Path as PathResult
from cntrace.model import Snapshot


def register(sub: Any) -> None:
    p = sub.add_parser(
        "path",
        help="predict (or --live: trace) one packet's way from a container to a destination",
        description="SRC is a container (name, id prefix, pid:N, netns:NAME) or `host`. DEST is "
        "a container, an IP, IP:PORT, a hostname resolved as SRC would, or host:PORT for a "
        "published port. Exit codes: 0 delivered, 1 the path fails, 2 bad input, 3 environment.",
    )
    p.add_argument("source", metavar="SRC")
    p.add_argument("destination", metavar="DEST")
    p.add_argument(
        "--proto", choices=("tcp", "udp", "icmp"), help="default: tcp with a port, icmp without"
    )
    p.add_argument("--port", type=PORT, help="destination port (or DEST:PORT)")
    p.add_argument(
        "--size",
        type=integer(28, 65535, "a size in bytes"),
        metavar="BYTES",
        help="IP packet size to reason about (default: a small probe)",
    )
    p.add_argument("--json", action="store_true", help="print a cntrace.path/v2 document")
    p.add_argument("--timing", action="store_true", help="print how long each phase took")
    add_snapshot_arg(p, nodes=True)
    p.add_argument(
        "--what-if",
        metavar="CHANGE",
        action="append",
        default=[],
        help="predict as if CHANGE were made (an iptables/nft/ip/sysctl command, an "
        "iptables-restore fragment, `docker network connect NET C` ...; repeatable, applied in "
        "order; nothing on the host changes). Prefix `ip netns exec NAME`, `docker exec C`, "
        "`netns:NAME` or `C:` to name the namespace (default: the path's host)",
    )
    p.add_argument(
        "--save-snapshot",
        metavar="FILE",
        help="also save the snapshot this answer was computed from (for bug reports: "
        "`cntrace path --snapshot FILE ...` replays it anywhere)",
    )
    live = p.add_argument_group("live tracing")
    live.add_argument(
        "--live",
        action="store_true",
        help="send a real probe and observe it with eBPF (or packet capture)",
    )
    live.add_argument("--backend", choices=("auto", "ebpf", "capture"), default="auto")
    live.add_argument(
        "--timeout",
        type=seconds(0, 3600),
        default=1.0,
        metavar="SECONDS",
        help="how long to wait for the probe and its reply (default 1s)",
    )
    live.add_argument("--pcap", metavar="FILE", help="write the sightings as pcapng")
    live.add_argument(
        "--ready-file", metavar="PATH", help="create PATH once tracing is armed (for scripts)"
    )


def run(args: argparse.Namespace) -> int:
    if args.live and args.snapshot is not None:
        raise BadInput("--live traces the live host; it cannot use --snapshot")
    live_only = [f"--{k.replace('_', '-')}" for k in ("pcap", "ready_file") if getattr(args, k)]
    if live_only and not args.live:
        raise BadInput(f"{', '.join(live_only)} go with --live")
    if args.live and args.what_if:
        raise BadInput("--what-if predicts a change without making it; it cannot use --live")
    for target in (args.pcap, args.ready_file):
        if target is not None:  # refused now, not after the trace ran
            from cntrace.sources.recorded import check_target

            check_target(target, follow_symlinks=False)
    t0 = time.perf_counter()
    found = None
    # Narrow only when nothing walks beyond this path: --what-if and the text answer's checked
    # fixes walk changed hosts, which may lead to namespaces the narrow read never listed.
    if args.snapshot is None and args.json and not args.what_if:
        found = read_for(args.source, args.destination, args.proto, args.port, args.size)
    if found is not None:
        snap, first = found
    else:  # lazily read: only the namespaces the walk enters are read in full (sources.lazy)
        snap, first = get_snapshot(args, lazy=True), None
    t1 = time.perf_counter()
    try:
        return _answer(args, snap, timings={"snapshot": t1 - t0}, t1=t1, result=first)
    finally:
        if args.save_snapshot is not None:  # after the walk: exactly the evidence it read
            from cntrace.sources import lazy, recorded

            recorded.save(lazy.evidence(snap), args.save_snapshot)


WIDENINGS = 8  # then the full listing: no lab path needs more than two
# Findings that look at containers off the path (a port nobody publishes: who else on the host
# listens on it): only the full listing has their namespaces.
WIDE_FINDINGS = frozenset({"port-not-published"})


def read_for(
    source: str, destination: str, proto: str | None, port: int | None, size: int | None
) -> tuple[Snapshot, PathResult] | None:
    """The live host read for this path only: around the source, widened while the prediction
    points at namespaces not read (sources.pathread). None: list every namespace instead."""
    from cntrace.path import predict
    from cntrace.sources import live, pathread

    reader = live.read_path(source, destination)
    if reader is None:
        return None
    for _ in range(WIDENINGS):
        snap = reader.snapshot()
        try:
            result = predict(snap, source, destination, proto=proto, port=port, size=size)
        except BadInput:
            break  # a ref only the full listing may know (or bad input: it says so again)
        if any(f.code in WIDE_FINDINGS for f in result.findings):
            break
        inodes, nsids = pathread.wants(snap, result, snap.containers)
        if not reader.widen(inodes, nsids):
            if pathread.owner_unseen(snap, result):
                break  # who holds the address (if any namespace does): only the listing says
            return snap, result
    reader.close()
    return None


def _answer(
    args: argparse.Namespace,
    snap: Snapshot,
    timings: dict[str, float],
    t1: float,
    result: PathResult | None = None,
) -> int:
    from cntrace.path import predict
    from cntrace.render import path as render_path

    if result is None:
        result = predict(
            snap, args.source, args.destination, proto=args.proto, port=args.port, size=args.size
        )
    timings["predict"] = time.perf_counter() - t1
    from cntrace.commands import _whatif

    if args.what_if:
        return _whatif.run(args, snap, result)
    # Printed fixes are checked as what-ifs; the --json document stays the prediction itself
    # (what the console shows and a replay prints).
    checked = result if args.json else _whatif.with_checked_fixes(snap, result, args)
    fix_notes = checked.notes[len(result.notes) :]
    problem = None
    if args.live:  # always answers: a trace that could not run is the prediction, saying so
        from cntrace.trace.live import trace_live

        answer = trace_live(
            snap,
            result,
            backend=args.backend,
            timeout=args.timeout,
            pcap=args.pcap,
            ready_file=args.ready_file,
            size=args.size or 0,
        )
        result, problem = answer.path, answer.problem
        timings.update(answer.timings)
    result = replace(result, notes=(*result.notes, *fix_notes))
    if args.json:
        import sys

        sys.stdout.write(render_path.to_json(result))
    else:
        from cntrace.render.console import console  # rich: only for the text rendering

        render_path.render(result, console())
    if args.timing:
        import sys

        parts = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items())
        sys.stderr.write(f"timing: {parts}\n")
    if problem is not None:
        import sys

        sys.stderr.write(f"cntrace: error: {problem}\n")
        return int(problem.exit_code)
    return int(Exit.OK if result.verdict.status == "delivered" else Exit.FAILED)
