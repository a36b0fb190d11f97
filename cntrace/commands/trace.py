"""`cntrace trace <container> [filter]`: a container's real traffic, one line per packet per hop."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cntrace.commands._args import COUNT, WEEK, seconds
from cntrace.errors import BadInput, Exit


def register(sub: Any) -> None:
    p = sub.add_parser(
        "trace",
        help="follow a container's real traffic through its hops (nothing is sent or changed)",
        description="Watch the container's interfaces, their host-side peers, bridges and the "
        "host's uplinks; print each matching packet at each hop it crosses. FILTER is a tcpdump "
        "expression (e.g. `tcp port 80`). Stops after --count lines, --duration seconds or "
        "Ctrl-C.",
    )
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("filter", nargs="*", metavar="FILTER", help="tcpdump expression")
    p.add_argument("--count", type=COUNT, metavar="N", help="stop after N lines")
    p.add_argument(
        "--duration", type=seconds(0, WEEK), metavar="SECONDS", help="stop after this long"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--ready-file", metavar="PATH", help="create PATH once watching")


def run(args: argparse.Namespace) -> int:
    from cntrace.model import Container
    from cntrace.render.console import console
    from cntrace.sources.live import read_snapshot
    from cntrace.topology import resolve_ref
    from cntrace.trace import passive
    from cntrace.trace.session import write_ready_file

    if args.count is not None and args.count <= 0:
        raise BadInput("--count must be positive")
    if args.ready_file is not None:  # refused before anything is watched
        from cntrace.sources.recorded import check_target

        check_target(args.ready_file, follow_symlinks=False)
    snap = read_snapshot(sockets=False, rulesets=False)
    target = resolve_ref(snap, args.container)
    if not isinstance(target, Container):
        raise BadInput(f"{args.container} is a namespace, not a container")
    targets = passive.targets_for(snap, target)
    from rich.text import Text

    from cntrace.render.safe import term

    out = console()
    err = console(stderr=True)

    def ready() -> None:
        where = ", ".join(t.label for t in targets)
        err.print(f"[dim]watching {where}; Ctrl-C stops[/]")
        if args.ready_file:
            write_ready_file(args.ready_file)

    try:
        for seen in passive.follow(
            targets, " ".join(args.filter), count=args.count, duration=args.duration, ready=ready
        ):
            if args.json:
                sys.stdout.write(json.dumps(_doc(seen)) + "\n")
                sys.stdout.flush()
            else:
                out.print(Text(term(_line(seen))), highlight=False)  # labels: escaped
    except KeyboardInterrupt:
        pass
    return int(Exit.OK)


def _doc(seen: Any) -> dict[str, Any]:
    p = seen.packet
    return {
        "t_us": seen.t_ns // 1000,
        "netns": seen.target.netns_inode,
        "where": seen.target.label,
        "interface": seen.target.ifname,
        "direction": seen.direction,
        "packet": {
            "proto": p.proto,
            "src": p.src,
            "dst": p.dst,
            "sport": p.sport,
            "dport": p.dport,
        },
        "tcp_flags": seen.tcp_flags,
        "ip_id": seen.ip_id,
        "length": seen.length,
    }


def _line(seen: Any) -> str:
    p = seen.packet
    src = f"{p.src}:{p.sport}" if p.sport is not None else p.src
    dst = f"{p.dst}:{p.dport}" if p.dport is not None else p.dst
    flags = f" [{seen.tcp_flags}]" if seen.tcp_flags else ""
    return (
        f"+{seen.t_ns / 1e6:9.3f}ms  {seen.target.label:<28} {seen.direction:<7}  "
        f"{p.proto} {src} -> {dst}{flags}  id {seen.ip_id:#06x} len {seen.length}"
    )
