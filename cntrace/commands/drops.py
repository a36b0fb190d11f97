"""`cntrace drops [REF]`: stream the kernel's packet drops, with reason, location and packet,
attributed to the container (or namespace) and interface where they happened."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

from cntrace.commands._args import COUNT, WEEK, seconds
from cntrace.errors import EnvironmentProblem, Exit, NeedsPrivilege


def register(sub: Any) -> None:
    p = sub.add_parser(
        "drops",
        help="stream kernel packet drops with reason, location and container",
        description="Every packet the kernel drops (tracepoint skb:kfree_skb), with the "
        "kernel's drop reason, the function that dropped it and the packet, named after the "
        "container and interface. Ctrl-C stops.",
    )
    p.add_argument("ref", nargs="?", help="only drops in this container's namespace")
    p.add_argument("-c", "--count", type=COUNT, metavar="N", help="stop after N drops")
    p.add_argument("--timeout", type=seconds(0, WEEK), metavar="S", help="stop after S seconds")
    p.add_argument("--json", action="store_true", help="one JSON object per drop (JSON lines)")
    p.add_argument("--ready-file", metavar="PATH", help="write PATH once the probe is armed")
    p.add_argument(
        "--all",
        action="store_true",
        help="also show the benign drops hidden by default (multicast not joined, frames for "
        "other hosts: the list is in docs/tracing.md)",
    )
    p.add_argument(
        "--summary",
        action="store_true",
        help="counts by reason, location and container instead of lines, refreshed like top "
        "(--json: one document at the end)",
    )
    p.add_argument(
        "--interval",
        type=seconds(0, 3600),
        default=1.0,
        metavar="S",
        help="--summary refresh (default 1s)",
    )
    p.add_argument("--print-bpf", action="store_true", help=argparse.SUPPRESS)


class _Namer:
    """Names namespaces and interfaces from discovery, when it can run; else inodes.

    An unknown namespace (created after the start) triggers a re-read of discovery in a
    background thread, at most every 5 s, so naming never holds up reading drops."""

    def __init__(self) -> None:
        self._labels: dict[int, str] = {}
        self._ifnames: dict[tuple[int, int], str] = {}
        self._refreshed = 0.0
        self._busy = threading.Lock()
        self.available = True

    def refresh(self, snapshot: Any | None = None) -> None:
        self._refreshed = time.monotonic()
        try:
            from cntrace.sources import live
            from cntrace.topology import Topology

            snap = snapshot or live.read_snapshot(detail=False, sockets=False, rulesets=False)
            topo = Topology(snap)
        except ImportError:
            self.available = False
            return
        except Exception:  # discovery is best effort here: drops still print with inodes
            return
        labels = {ns.inode: topo.label(ns.inode) for ns in snap.netns}
        ifnames = {(ns.inode, link.ifindex): link.name for ns in snap.netns for link in ns.links}
        self._labels, self._ifnames = labels, ifnames

    def _refresh_later(self) -> None:
        if not self.available or time.monotonic() - self._refreshed < 5:
            return
        if not self._busy.acquire(blocking=False):
            return
        self._refreshed = time.monotonic()

        def work() -> None:
            try:
                self.refresh()
            finally:
                self._busy.release()

        threading.Thread(target=work, name="cntrace-drops-names", daemon=True).start()

    def label(self, inode: int | None) -> str:
        if not inode:
            return "netns:?"
        found = self._labels.get(inode)
        if found is None:
            self._refresh_later()
            return f"netns:{inode}"
        return found

    def ifname(self, inode: int | None, ifindex: int | None) -> str | None:
        if not inode or not ifindex:
            return None
        return self._ifnames.get((inode, ifindex), f"if{ifindex}")


def _resolve(ref: str, namer: _Namer) -> int:
    """The namespace inode of REF (container, pid:N, netns:NAME)."""
    from cntrace.model import Container
    from cntrace.sources import live
    from cntrace.topology import resolve_ref

    snap = live.read_snapshot(detail=False, sockets=False, rulesets=False)
    namer.refresh(snap)
    found = resolve_ref(snap, ref)
    inode = found.netns if isinstance(found, Container) else found.inode
    if not inode:
        raise EnvironmentProblem(f"{ref}: its network namespace is unknown (is it running?)")
    return inode


def run(args: argparse.Namespace) -> int:
    if args.ready_file is not None:  # refused before the probe is loaded
        from cntrace.sources.recorded import check_target

        check_target(args.ready_file, follow_symlinks=False)
    if args.print_bpf:
        os.environ["CNTRACE_PRINT_BPF"] = "1"
    if os.geteuid() != 0:
        raise NeedsPrivilege("watching kernel drops (eBPF on skb:kfree_skb)", "CAP_BPF")
    from cntrace.trace.session import DropWatch

    namer = _Namer()
    inode = _resolve(args.ref, namer) if args.ref else 0
    if not args.ref:
        namer.refresh()
    watch = DropWatch(inode)
    for n in watch.notices:
        sys.stderr.write(f"cntrace: {n}\n")
    if args.ready_file:
        from cntrace.trace.session import write_ready_file

        write_ready_file(args.ready_file)
    from cntrace.render.safe import term
    from cntrace.trace.droptally import DropTally

    tally = DropTally()
    count = 0
    shown_at = 0.0
    try:
        for d in watch.drops(args.timeout):
            label = namer.label(d.netns_inode)
            ifname = namer.ifname(d.netns_inode, d.ifindex)
            if not tally.add(d, label, show_all=args.all):
                continue
            count += 1
            if args.summary:
                if (
                    sys.stdout.isatty()
                    and not args.json
                    and time.monotonic() - shown_at >= args.interval
                ):
                    _show_summary(tally, clear=True)
                    shown_at = time.monotonic()
            elif args.json:
                doc = {
                    "time": (watch.t0_realtime_ns + d.t_ns) / 1e9,
                    "reason": d.reason,
                    "location": d.location,
                    "netns": d.netns_inode,
                    "where": label,
                    "interface": ifname,
                    "packet": str(d.packet) if d.packet else None,
                    "tcp_flags": d.tcp_flags,
                }
                sys.stdout.write(json.dumps(doc) + "\n")
            else:
                where = f"{label} {ifname}" if ifname else label
                pkt = str(d.packet) if d.packet else "(not IP)"
                flags = f" [{d.tcp_flags}]" if d.tcp_flags else ""
                t_ns = watch.t0_realtime_ns + d.t_ns
                stamp = time.strftime("%H:%M:%S", time.localtime(t_ns // 1_000_000_000))
                stamp += f".{t_ns // 1000 % 1_000_000:06d}"
                line = f"{stamp} {d.reason:<18} {d.location or '?':<28} {where:<28} {pkt}{flags}"
                sys.stdout.write(term(line) + "\n")  # names from discovery: escaped
            sys.stdout.flush()
            if args.count and count >= args.count:
                break
    except KeyboardInterrupt:
        pass  # the normal way to stop a stream
    finally:
        lost = watch.lost()
        watch.close()
    if args.summary:
        if args.json:
            sys.stdout.write(json.dumps({**tally.document(), "lost": lost}) + "\n")
        else:
            _show_summary(tally, clear=sys.stdout.isatty())
    if tally.hidden:
        sys.stderr.write(
            f"cntrace: {tally.hidden} benign drop(s) hidden (multicast not joined, frames for "
            "other hosts); --all shows them\n"
        )
    if lost:
        sys.stderr.write(f"cntrace: {lost} drop event(s) lost (ring buffer full)\n")
    return int(Exit.OK)


def _show_summary(tally: Any, clear: bool) -> None:
    """The counts as three columns of (count, key), largest first."""
    from cntrace.render.console import console
    from cntrace.render.drops import summary_table

    out = console()
    if clear:
        out.clear()
    out.print(summary_table(tally.rows(), tally.total, tally.hidden))
