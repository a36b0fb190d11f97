"""`cntrace cleanup`: remove what a killed tracing run left on the host (only cntrace's own)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from cntrace.errors import Exit, NeedsPrivilege


def register(sub: Any) -> None:
    p = sub.add_parser(
        "cleanup",
        help="remove tc filters, qdiscs and nft trace tables left by a killed cntrace run",
        description="Remove the tc filters, clsact qdiscs and nftables trace tables that a "
        "cntrace process which is no longer running added, from its ledger in "
        "/run/cntrace/trace and by a scan of every namespace for cntrace-named objects. "
        "Objects of running cntrace processes and of other software are never touched.",
    )
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.add_argument(
        "--no-scan",
        action="store_true",
        help="use the ledgers only; skip the scan of every namespace",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise NeedsPrivilege("removing tc filters and nft tables", "CAP_NET_ADMIN")
    from cntrace.trace.cleanup import cleanup

    report = cleanup(scan_all=not args.no_scan, dry_run=args.dry_run)
    if not args.quiet:
        for line in report.removed:
            print(("" if args.dry_run else "removed ") + line)
        for line in report.kept:
            print(f"kept {line}")
        if not report.removed:
            print("nothing of cntrace's to remove")
    for line in report.errors:
        sys.stderr.write(f"cntrace: cleanup: {line}\n")
    return int(Exit.OK if report.clean else Exit.FAILED)
