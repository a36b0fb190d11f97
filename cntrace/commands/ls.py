"""`cntrace ls`: one row per container: runtime, PID, IPs, host veth, bridge, published ports."""

from __future__ import annotations

import argparse
from typing import Any

from cntrace.commands._source import add_json_arg, add_snapshot_arg, get_snapshot
from cntrace.errors import Exit


def register(sub: Any) -> None:
    p = sub.add_parser(
        "ls",
        help="list containers and where they are plugged in",
        description="Every container of every runtime (Docker, Podman, containerd/Kubernetes, "
        "the lab, named namespaces) with its IPs, host veth and bridge.",
    )
    p.add_argument("name", nargs="?", help="only containers whose name contains this")
    p.add_argument(
        "--runtime",
        choices=("docker", "podman", "containerd", "kubernetes", "lab", "netns", "pid"),
        help="only this runtime's containers",
    )
    add_json_arg(p)
    add_snapshot_arg(p)


def run(args: argparse.Namespace) -> int:
    from cntrace.render.discovery_json import ls_doc

    # ls shows links and addresses only: the cheap part of discovery (docs/performance.md).
    snap = get_snapshot(args, detail=False, sockets=False, rulesets=False)
    doc = ls_doc(snap, runtime=args.runtime, name=args.name)
    if args.json:
        from cntrace.commands._source import print_json

        print_json(doc, rows="containers")
    else:
        from cntrace.render.discovery_text import print_ls

        print_ls(doc)
    return int(Exit.OK)
