"""Attach the tc programs to interfaces in any namespace, and take them off again.

Each filter is a ``bpf`` filter, direct-action, protocol all, at pref 0xC7 with a handle of its
own and the name ``cntrace:<pid>:<n>``; the programs never change a packet and return
TC_ACT_UNSPEC, so filters of other software on the same hook run as before. A clsact qdisc is
added only where none exists, and removed on detach only if cntrace added it and nothing else
has put a filter on it since. Every object is written to the ledger (cntrace/trace/state.py)
before it is created.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from cntrace.sources import nsenter
from cntrace.sources.netlink import NetlinkError
from cntrace.trace import state
from cntrace.trace.events import TraceTarget
from cntrace.trace.tcnl import (
    ETH_P_ALL,
    PARENT_EGRESS,
    PARENT_INGRESS,
    FilterInfo,
    RouteSocket,
)

DIRECTIONS = (("ingress", PARENT_INGRESS), ("egress", PARENT_EGRESS))


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while a host change and its ledger record are made or undone, so
    Ctrl-C lands between steps, never inside one.

    Blocking the signal with pthread_sigmask is not enough: it blocks only this thread, and
    CPython's handler, run by whichever thread the kernel picks (the scapy import thread, say),
    still makes the main thread raise at its next bytecode. So the Python handlers are swapped
    for one that only records the signal, which is raised again, with the original handlers
    back, when the step is done.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread runs Python signal handlers
        return
    pending: list[int] = []

    def hold(signum: int, _frame: object) -> None:
        pending.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)


@dataclass
class _Attachment:
    target: TraceTarget
    filters: list[tuple[int, FilterInfo]] = field(default_factory=list)  # (record id, filter)
    clsact_record: int | None = None  # set when cntrace added the qdisc


class TcAttacher:
    """The tc filters of one engine; reused across traces until close()."""

    def __init__(self, prog_fds: dict[str, int], seq: int) -> None:
        self._progs = {"ingress": prog_fds["cntrace_tc_in"], "egress": prog_fds["cntrace_tc_eg"]}
        self._seq = seq
        self._socks: dict[int, RouteSocket] = {}
        self._attached: dict[tuple[int, int], _Attachment] = {}
        # (target, direction, why) where a filter of other software runs before cntrace's
        self.warnings: list[tuple[TraceTarget, str, str]] = []

    def _sock(self, target: TraceTarget) -> RouteSocket:
        sock = self._socks.get(target.netns_inode)
        if sock is None:
            sock = RouteSocket(target.netns_path)
            self._socks[target.netns_inode] = sock
        return sock

    def handle(self, direction: str) -> int:
        pid = state.ledger().pid
        return ((pid & 0x3FFFFF) << 9) | ((self._seq & 0xFF) << 1) | (direction == "egress")

    def filter_name(self) -> str:
        return f"{state.FILTER_PREFIX}{state.ledger().pid}:{self._seq}"

    def attach(self, target: TraceTarget) -> list[tuple[str, str]]:
        """Attach on both directions; returns (direction, why) for each one that failed."""
        key = (target.netns_inode, target.ifindex)
        if key in self._attached:
            return []
        try:
            inode = nsenter.inode_of(nsenter.netns_path(target.netns_path))
        except OSError as exc:
            return [
                (d, f"namespace {target.netns_path} is gone ({exc.strerror})")
                for d, _ in DIRECTIONS
            ]
        if inode != target.netns_inode:
            why = f"{target.netns_path} now holds another namespace ({inode})"
            return [(d, why) for d, _ in DIRECTIONS]
        try:
            sock = self._sock(target)
        except OSError as exc:
            return [
                (d, f"cannot open netlink in the namespace: {exc.strerror}") for d, _ in DIRECTIONS
            ]
        ledger = state.ledger()
        att = _Attachment(target)
        failed: list[tuple[str, str]] = []
        name = self.filter_name()
        qdisc = state.Record(
            "clsact", target.netns_path, target.netns_inode, target.ifindex, target.ifname
        )
        filters = []
        for direction, parent in DIRECTIONS:
            prio, warning = _choose_prio(sock, target.ifindex, parent)
            if warning:
                self.warnings.append((target, direction, warning))
            filters.append(
                FilterInfo(
                    target.ifindex,
                    parent,
                    prio,
                    _htons(ETH_P_ALL),
                    self.handle(direction),
                    "bpf",
                    name,
                )
            )
        recs = [
            state.Record(
                "filter",
                target.netns_path,
                target.netns_inode,
                target.ifindex,
                target.ifname,
                parent=f.parent,
                prio=f.prio,
                protocol=f.protocol,
                handle=f.handle,
                name=name,
            )
            for f in filters
        ]
        with signals_deferred():
            qid, *fids = ledger.add_many([qdisc, *recs])  # written before anything is created
            try:
                created = sock.add_clsact(target.ifindex)
            except NetlinkError as exc:
                ledger.remove_many([qid, *fids])
                why = f"cannot add a clsact qdisc: {exc.strerror}"
                return [(d, why) for d, _ in DIRECTIONS]
            if created:
                ledger.update(qid, replace(qdisc, created=True))
                att.clsact_record = qid
            unused = [] if created else [qid]
            for (direction, _parent), f, fid in zip(DIRECTIONS, filters, fids, strict=True):
                try:
                    sock.add_bpf_filter(
                        f.ifindex, f.parent, f.prio, f.handle, self._progs[direction], name
                    )
                except NetlinkError as exc:
                    unused.append(fid)
                    failed.append((direction, _filter_error(exc, sock, target, direction)))
                    continue
                att.filters.append((fid, f))
            if unused:
                ledger.remove_many(unused)
            # Known to close() before a held Ctrl-C can land: else its filters would outlive us.
            self._attached[key] = att
        return failed

    def _detach(self, att: _Attachment) -> list[int]:
        """Remove the attachment's objects; returns the ledger ids now free to drop."""
        done: list[int] = []
        sock = self._socks.get(att.target.netns_inode)
        for rid, f in att.filters:
            if sock is not None:
                with contextlib.suppress(NetlinkError):
                    sock.del_filter(f)
            done.append(rid)
        if att.clsact_record is not None:
            if sock is not None:
                with contextlib.suppress(NetlinkError):
                    remove_clsact_if_unused(sock, att.target.ifindex)
            done.append(att.clsact_record)
        return done

    def close(self) -> None:
        """Take every filter (and qdisc cntrace added) off, then close the sockets."""
        with signals_deferred():
            done: list[int] = []
            for att in self._attached.values():
                done += self._detach(att)
            self._attached.clear()
            state.ledger().remove_many(done)
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()


def _choose_prio(sock: RouteSocket, ifindex: int, parent: int) -> tuple[int, str | None]:
    """A pref ahead of every filter already on the hook, so none of them can classify a packet
    (and end the walk) before cntrace has seen it; the default on an empty hook."""
    try:
        existing = sock.filters(ifindex, parent)
    except NetlinkError:
        existing = []
    prios = sorted({f.prio for f in existing})
    if not prios:
        return state.FILTER_PRIO, None
    if prios[0] > 1:
        return min(prios[0] - 1, state.FILTER_PRIO), None
    kinds = sorted({f.kind for f in existing if f.prio == 1})
    ours = state.FILTER_PRIO if state.FILTER_PRIO not in prios else max(prios) + 1
    return ours, (
        f"a filter of other software ({', '.join(kinds)}) holds pref 1 and runs first: "
        "packets it redirects or drops are not seen here"
    )


def remove_clsact_if_unused(sock: RouteSocket, ifindex: int) -> bool:
    """Delete the clsact qdisc unless some filter (anyone's) still sits on it."""
    try:
        if sock.filters(ifindex, PARENT_INGRESS) or sock.filters(ifindex, PARENT_EGRESS):
            return False
        sock.del_clsact(ifindex)
    except NetlinkError as exc:
        if exc.errno in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
            return False
        raise
    return True


def _htons(v: int) -> int:
    return int.from_bytes(v.to_bytes(2, "big"), "little")


def _filter_error(exc: NetlinkError, sock: RouteSocket, target: TraceTarget, direction: str) -> str:
    if exc.errno == errno.EEXIST:
        return "a filter with cntrace's handle is already there"
    if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP) and direction == "egress":
        with contextlib.suppress(NetlinkError):
            kinds = {k for _h, _p, k in sock.qdiscs(target.ifindex)}
            if "ingress" in kinds:
                return "the interface has an 'ingress' qdisc, which has no egress hook"
    return f"cannot add the tc filter: {os.strerror(exc.errno or 0)}"
