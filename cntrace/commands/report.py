"""`cntrace report SRC DEST`: one file to attach to a ticket, replayable anywhere, optionally
redacted so it can be pasted into a public issue."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import tempfile
from typing import Any

from cntrace.commands._args import PORT, integer, seconds
from cntrace.commands._source import add_snapshot_arg, get_snapshot
from cntrace.errors import BadInput, Exit

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="write one replayable incident file (snapshot, path, live trace, pcapng); --redact "
        "for public issues",
        description="Write a cntrace.report/v1 file: the snapshot the path used, the predicted "
        "path, with --live the live trace (sightings, drops, loss counters) and the probe's "
        "pcapng, versions and features, and the command line. `cntrace path --snapshot FILE "
        "SRC DEST` replays it anywhere without root. Exit codes: 0 written, 2 bad input, "
        "3 environment.",
    )
    p.add_argument("source", metavar="SRC")
    p.add_argument("destination", metavar="DEST")
    p.add_argument("--proto", choices=("tcp", "udp", "icmp"))
    p.add_argument("--port", type=PORT)
    p.add_argument("--size", type=integer(28, 65535, "a size in bytes"), metavar="BYTES")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write (- for stdout; "
                   "default: cntrace-report-SRC-to-DEST-TIME.json here)")  # fmt: skip
    p.add_argument("--live", action="store_true", help="also trace a real probe")
    p.add_argument("--backend", choices=("auto", "ebpf", "capture"), default="auto")
    p.add_argument("--timeout", type=seconds(0, 3600), default=1.0, metavar="SECONDS")
    p.add_argument(
        "--redact",
        action="store_true",
        help="replace addresses, MACs, names, images and rule comments by consistent pseudonyms",
    )
    p.add_argument(
        "--redact-map",
        metavar="FILE",
        help="with --redact: keep the pseudonym -> original map here (never share it)",
    )
    add_snapshot_arg(p)


def _environment(args: argparse.Namespace, backend: str | None) -> dict[str, Any]:
    from cntrace import __version__

    uname = os.uname()
    return {
        "cntrace": __version__,
        "python": platform.python_version(),
        "kernel": f"{uname.release} {uname.version}",
        "machine": uname.machine,
        "snapshot_file": bool(args.snapshot),
        "features": {
            "root": os.geteuid() == 0,
            "btf": os.path.exists("/sys/kernel/btf/vmlinux"),
            "tracefs": os.path.isdir("/sys/kernel/tracing/events"),
            "live_backend": backend,
        },
    }


def _write(text: str, target: str) -> None:
    """Stdout for ``-``; otherwise the careful writer `snapshot --save` uses (devices survive)."""
    from cntrace.sources import recorded

    if target == "-":
        sys.stdout.write(text)
        return
    recorded.write_text(target, text)


def run(args: argparse.Namespace) -> int:
    from cntrace import __version__, redact, report
    from cntrace.commands import _whatif
    from cntrace.path import predict

    if args.live and args.snapshot is not None:
        raise BadInput("--live traces the live host; it cannot use --snapshot")
    if args.redact_map and not args.redact:
        raise BadInput("--redact-map needs --redact")
    snap = get_snapshot(args)
    predicted = predict(
        snap, args.source, args.destination, proto=args.proto, port=args.port, size=args.size
    )
    predicted = _whatif.with_checked_fixes(snap, predicted, args)
    result, pcap, backend = predicted, None, None
    if args.live:
        from cntrace.trace.live import trace_path

        with tempfile.TemporaryDirectory(prefix="cntrace-report-") as tmp:
            pcap_file = os.path.join(tmp, "probe.pcapng")
            result, _ = trace_path(
                snap, predicted, backend=args.backend, timeout=args.timeout, pcap=pcap_file,
                size=args.size or 0,
            )  # fmt: skip
            if os.path.exists(pcap_file):
                with open(pcap_file, "rb") as fh:
                    pcap = fh.read()
        backend = next(
            (n.split(": ", 1)[1] for n in result.notes if n.startswith("backend: ")), None
        )
    query = {"source": args.source, "destination": args.destination, "proto": args.proto,
             "port": args.port, "size": args.size}  # fmt: skip
    doc = report.build(
        snap,
        result,
        query=query,
        command=["cntrace", *sys.argv[1:]]
        if sys.argv[1:2] == ["report"]
        else ["cntrace", "report"],
        environment=_environment(args, backend),
        created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        tool_version=__version__,
        prediction=predicted if args.live else None,
        pcapng=pcap,
    )
    mapping = None
    if args.redact:
        body = {k: v for k, v in doc.items() if k not in ("snapshot", "pcapng")}
        red = redact.redact(snap, body, key=os.urandom(32))
        doc = {**red.documents[0], "redacted": True, "snapshot": _plain(red.snapshot)}
        if pcap is not None:
            doc["notes"] = ["the probe's pcapng is left out: raw packets cannot be redacted here"]
        mapping = red.mapping
    target = args.output or _default_name(doc["query"])
    doc = report.name_file(doc, "REPORT.json" if target == "-" else os.path.basename(target))
    _write(json.dumps(doc, indent=1) + "\n", target)
    if mapping is not None and args.redact_map:
        _write(json.dumps(mapping, indent=1) + "\n", args.redact_map)
    if target != "-":
        sys.stderr.write(f"wrote {target}" + (" (redacted)" if args.redact else "") + "\n")
        sys.stderr.write(f"replay: {doc['replay']['command']}\n")
    return int(Exit.OK)


def _plain(snap: Any) -> Any:
    from cntrace import codec

    return codec.to_plain(snap, compact=True)


def _default_name(query: dict[str, Any]) -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    src = _UNSAFE.sub("_", str(query["source"]))[:40]
    dst = _UNSAFE.sub("_", str(query["destination"]))[:40]
    return f"cntrace-report-{src}-to-{dst}-{stamp}.json"
