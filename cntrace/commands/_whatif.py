"""`cntrace path --what-if CHANGE`, and the check every printed fix gets (shared with report)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace

from cntrace.errors import BadInput, Exit
from cntrace.model import Path, Snapshot


def read_file(path: str) -> str:
    """What a change names (`nft -f FILE`, `iptables-restore < FILE`); `-` is stdin."""
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise BadInput(f"what-if: {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"what-if: cannot read {path}: {exc}") from None


def again(args: argparse.Namespace) -> Callable[[Snapshot], Path]:
    from cntrace.path import predict

    def run(snap: Snapshot) -> Path:
        return predict(
            snap, args.source, args.destination, proto=args.proto, port=args.port, size=args.size
        )

    return run


def with_checked_fixes(snap: Snapshot, path: Path, args: argparse.Namespace) -> Path:
    """``path`` with one note per fix: verified as a what-if, or why not."""
    from cntrace.whatif import fixes

    checks = fixes.check_all(snap, path, again(args))
    if not checks:
        return path
    return replace(path, notes=(*path.notes, *(c.note for c in checks)))


def run(args: argparse.Namespace, snap: Snapshot, before: Path) -> int:
    from cntrace import whatif
    from cntrace.render import whatif as render_whatif
    from cntrace.render.console import console
    from cntrace.whatif.compare import compare

    changes = [whatif.parse(text, read_file) for text in args.what_if]
    after_snap, applied = whatif.apply_all(snap, changes, whatif.host_of_path(snap, before))
    after = again(args)(after_snap)
    after = with_checked_fixes(after_snap, after, args)
    c = compare(before, after)
    if args.json:
        sys.stdout.write(render_whatif.to_json(c, applied))
    else:
        render_whatif.render(c, applied, console())
    return int(Exit.OK if after.verdict.status == "delivered" else Exit.FAILED)
