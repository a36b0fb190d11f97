"""`cntrace snapshot --save FILE`: record the host so any command can replay it elsewhere."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cntrace.commands._source import add_snapshot_arg, get_snapshot
from cntrace.errors import Exit


def register(sub: Any) -> None:
    p = sub.add_parser(
        "snapshot",
        help="save the host's network state to a file (attach it to bug reports)",
        description="Read every namespace, container and ruleset into one JSON file that every "
        "command accepts with --snapshot FILE.",
    )
    p.add_argument("--save", metavar="FILE", required=True, help="where to write (- for stdout)")
    p.add_argument(
        "--only",
        metavar="REF",
        action="append",
        help="full detail only for these containers (repeatable); faster on big hosts",
    )
    p.add_argument("--no-rulesets", action="store_true", help="skip iptables/nft rulesets")
    p.add_argument("--no-sockets", action="store_true", help="skip listening sockets")
    add_snapshot_arg(p)


def run(args: argparse.Namespace) -> int:
    from cntrace.sources import recorded

    snap = get_snapshot(
        args,
        only=args.only,
        sockets=not args.no_sockets,
        rulesets=not args.no_rulesets,
    )
    recorded.save(snap, args.save)
    if args.save != "-":
        from cntrace.render.safe import term

        sys.stderr.write(
            f"saved {len(snap.netns)} namespaces and {len(snap.containers)} containers "
            f"to {term(args.save)}\n"
        )
        for w in snap.warnings:
            sys.stderr.write(f"warning: {term(w)}\n")
    return int(Exit.OK)
