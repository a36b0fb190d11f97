"""`cntrace show REF`: everything discovery knows about one container, as a tree."""

from __future__ import annotations

import argparse
from typing import Any

from cntrace.commands._source import add_json_arg, add_snapshot_arg, get_snapshot
from cntrace.errors import Exit


def register(sub: Any) -> None:
    p = sub.add_parser(
        "show",
        help="one container: interfaces, host veth, bridge port, routes, sockets, NAT rules",
        description="Where one container is plugged in and what decides its traffic.",
    )
    p.add_argument("ref", help="container name, id prefix, pid:N or netns:NAME")
    add_json_arg(p)
    add_snapshot_arg(p)


def run(args: argparse.Namespace) -> int:
    from cntrace.render.discovery_json import show_doc
    from cntrace.topology import resolve_ref

    recorded = args.snapshot is not None
    # Only the namespaces around the container are listed (sources.targeted).
    snap = get_snapshot(args, only=None if recorded else [args.ref], narrow=True)
    doc = show_doc(snap, resolve_ref(snap, args.ref))
    if args.json:
        from cntrace.commands._source import print_json

        print_json(doc)
    else:
        from cntrace.render.discovery_text import print_show

        print_show(doc)
    return int(Exit.OK)
