"""Where a discovery command gets its Snapshot: the live host, or ``--snapshot FILE``."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from cntrace.model import Snapshot


def add_snapshot_arg(parser: argparse.ArgumentParser, *, nodes: bool = False) -> None:
    """``nodes``: the option may be repeated, one file per node, stitched into one snapshot."""
    if nodes:
        parser.add_argument(
            "--snapshot",
            metavar="FILE",
            action="append",
            help="work on a saved snapshot (from `cntrace snapshot --save`) instead of the live "
            "host; repeat it with each node's file to follow a path across nodes",
        )
        return
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
    lazy: bool = False,
    narrow: bool = False,
) -> Snapshot:
    """The recorded snapshot if --snapshot was given, else a live read of the host (``lazy``:
    each namespace's detail read when first asked, sources.lazy; ``narrow``: with ``only``,
    list only the namespaces around the named containers, sources.targeted)."""
    path = getattr(args, "snapshot", None)
    if path is not None:  # `--snapshot ''` is a mistake, not a request for the live host
        from cntrace.sources import recorded

        if isinstance(path, list):
            from cntrace.sources import stitch

            return stitch.stitch([recorded.load(p) for p in path], origins=path)
        return recorded.load(path)
    from cntrace.sources import live

    return live.read_snapshot(
        detail=detail, only=only, sockets=sockets, rulesets=rulesets, lazy=lazy, narrow=narrow
    )


def print_json(doc: dict[str, object], rows: str | None = None) -> None:
    """Pretty JSON; with ``rows``, that list is written one compact object per line (a thousand
    containers stay readable, grep-able and fast to print)."""
    import json
    import sys

    if rows is None or not doc.get(rows):
        sys.stdout.write(json.dumps(doc, indent=2))
        sys.stdout.write("\n")
        return
    head = {k: v for k, v in doc.items() if k != rows}
    text = json.dumps(head, indent=1)[:-2]  # drop the closing "\n}"
    items = doc[rows]
    assert isinstance(items, list)
    body = ",\n  ".join(json.dumps(item, separators=(",", ":")) for item in items)
    sys.stdout.write(f'{text},\n "{rows}": [\n  {body}\n ]\n}}\n')
