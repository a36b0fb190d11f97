"""Where a discovery command gets its Snapshot: the live host, or ``--snapshot FILE``."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from cntrace.model import Snapshot


def add_snapshot_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--snapshot",
        metavar="FILE",
        help="work on a saved snapshot (from `cntrace snapshot --save`) instead of the live host",
    )


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a cntrace.discovery/v1 JSON document (docs/discovery.md)",
    )


def get_snapshot(
    args: argparse.Namespace,
    *,
    detail: bool = True,
    only: Iterable[str] | None = None,
    sockets: bool = True,
    rulesets: bool = True,
) -> Snapshot:
    """The recorded snapshot if --snapshot was given, else a live read of the host."""
    path = getattr(args, "snapshot", None)
    if path:
        from cntrace.sources import recorded

        return recorded.load(path)
    from cntrace.sources import live

    return live.read_snapshot(detail=detail, only=only, sockets=sockets, rulesets=rulesets)


def print_json(doc: object) -> None:
    import json
    import sys

    sys.stdout.write(json.dumps(doc, indent=2))
    sys.stdout.write("\n")
