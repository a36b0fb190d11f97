"""`cntrace topo`: the host as a tree: uplinks, bridges, ports, containers, published ports."""

from __future__ import annotations

import argparse
from typing import Any

from cntrace.commands._source import add_json_arg, add_snapshot_arg, get_snapshot
from cntrace.errors import Exit


def register(sub: Any) -> None:
    p = sub.add_parser(
        "topo",
        help="the host as a tree: uplinks, bridges, ports, containers",
        description="Every namespace that plays host (the root, Docker's, the lab's), its "
        "bridges and ports and what is plugged into them, and namespaces no runtime owns.",
    )
    add_json_arg(p)
    add_snapshot_arg(p)


def run(args: argparse.Namespace) -> int:
    from cntrace.render.topo_json import topo_doc

    # Routes are needed for uplinks; sockets and rulesets are not.
    snap = get_snapshot(args, sockets=False, rulesets=False)
    doc = topo_doc(snap)
    if args.json:
        from cntrace.commands._source import print_json

        print_json(doc)
    else:
        from cntrace.render.discovery_text import print_topo

        print_topo(doc)
    return int(Exit.OK)
