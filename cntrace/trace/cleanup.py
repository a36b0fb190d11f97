"""Remove what a killed tracing run left on the host, and nothing else.

Two sources of truth, both limited to cntrace's own objects:

* the ledgers in /run/cntrace/trace (cntrace/trace/state.py) of processes that are gone: every
  filter, trace table and clsact qdisc they recorded (a qdisc only if the record says cntrace
  added it, and only once no filter at all is left on it);
* a scan of every namespace (root, /run/netns, /proc/*/ns/net): tc filters named
  ``cntrace:<pid>:<n>`` and nft tables named ``cntrace_<pid>_<n>`` whose pid is not running.
  Qdiscs found by the scan alone are left, since nothing proves cntrace added them.

Filters and qdiscs of other software (Cilium, tc shaping) are never touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from cntrace.sources import nsenter
from cntrace.sources.netlink import NetlinkError
from cntrace.trace import nftlib, state
from cntrace.trace.tcattach import remove_clsact_if_unused, signals_deferred
from cntrace.trace.tcnl import (
    PARENT_EGRESS,
    PARENT_INGRESS,
    FilterInfo,
    RouteSocket,
)

NETLINK_NETFILTER = 12
_NFT_MSG_GETTABLE = (10 << 8) | 1
_FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}


@dataclass
class CleanupReport:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.errors


def _dead(pid: int | None, start: int | None = None) -> bool:
    return pid is not None and pid != os.getpid() and not state.alive(pid, start)


def _same_netns(path: str, inode: int) -> bool:
    try:
        return nsenter.inode_of(nsenter.netns_path(path)) == inode
    except OSError:
        return False


def _delete_table(path: str, family: str, name: str) -> tuple[bool, str]:
    return nftlib.delete_table(path, family, name)


# --------------------------------------------------------------------------- ledgers


def _undo(rec: state.Record, report: CleanupReport, dry_run: bool) -> bool:
    """Undo one record; True when nothing of it remains."""
    where = f"{rec.netns_path} ({rec.netns_inode})"
    if not _same_netns(rec.netns_path, rec.netns_inode):
        return True  # the namespace is gone, and everything in it
    if rec.kind == "nft_table":
        if dry_run:
            report.removed.append(f"would delete nft table {rec.family} {rec.name} in {where}")
            return True
        ok, err = _delete_table(rec.netns_path, rec.family, rec.name)
        if ok:
            report.removed.append(f"nft table {rec.family} {rec.name} in {where}")
        else:
            report.errors.append(f"nft table {rec.name} in {where}: {err}")
        return ok
    try:
        sock = RouteSocket(rec.netns_path)
    except OSError as exc:
        report.errors.append(f"{where}: {exc}")
        return False
    with sock:
        if rec.kind == "filter":
            f = FilterInfo(
                rec.ifindex, rec.parent, rec.prio, rec.protocol, rec.handle, "bpf", rec.name
            )
            present = [
                x
                for x in sock.filters(rec.ifindex, rec.parent)
                if x.prio == f.prio and x.handle == f.handle and x.name == rec.name
            ]
            if not present:
                return True
            if dry_run:
                report.removed.append(f"would delete tc filter {rec.name} on {rec.ifname} {where}")
                return True
            try:
                sock.del_filter(f)
            except NetlinkError as exc:
                if exc.errno not in (errno.ENOENT, errno.EINVAL):
                    report.errors.append(f"tc filter on {rec.ifname} in {where}: {exc}")
                    return False
            report.removed.append(f"tc filter {rec.name} on {rec.ifname} in {where}")
            return True
        if rec.kind == "clsact":
            if not rec.created:
                return True  # not proven to be cntrace's: never removed
            if dry_run:
                report.removed.append(f"would delete clsact qdisc on {rec.ifname} in {where}")
                return True
            try:
                if remove_clsact_if_unused(sock, rec.ifindex):
                    report.removed.append(f"clsact qdisc on {rec.ifname} in {where}")
                else:
                    report.kept.append(
                        f"clsact qdisc on {rec.ifname} in {where}: other filters use it now"
                    )
            except NetlinkError as exc:
                report.errors.append(f"clsact qdisc on {rec.ifname} in {where}: {exc}")
                return False
            return True
    return True


_ORDER = {"filter": 0, "nft_table": 1, "clsact": 2}


def from_ledgers(report: CleanupReport, dry_run: bool = False) -> None:
    """Undo the records of every ledger whose owner is gone. A running owner's are kept, and
    said so: a tracing process that hangs (or ignores Ctrl-C, as a background job started with
    SIGINT ignored does) holds its filters, and "nothing to remove" would hide who does."""
    for left in state.leftovers():
        if left.owner_alive:
            if left.records:
                report.kept.append(
                    f"{len(left.records)} object(s) of cntrace process {left.pid}, still "
                    f"running (stop it, then run cleanup again): {left.path}"
                )
            continue
        remaining = []
        for rec in sorted(left.records, key=lambda r: _ORDER.get(r.kind, 9)):
            with signals_deferred():
                if not _undo(rec, report, dry_run):
                    remaining.append(rec)
        if dry_run:
            continue
        if remaining:
            report.errors.append(f"{left.path}: {len(remaining)} object(s) could not be removed")
        else:
            with contextlib.suppress(FileNotFoundError):
                left.path.unlink()


# --------------------------------------------------------------------------- scan


def namespaces() -> Iterator[tuple[str, int]]:
    """A path for every network namespace reachable from here, each once."""
    seen: set[int] = set()
    candidates = ["/proc/1/ns/net", *nsenter.named().values()]
    with contextlib.suppress(OSError):
        candidates += [f"/proc/{p}/ns/net" for p in os.listdir("/proc") if p.isdigit()]
    for path in candidates:
        try:
            inode = nsenter.inode_of(path)
        except OSError:
            continue
        if inode not in seen:
            seen.add(inode)
            yield path, inode


def nft_tables(path: str) -> list[tuple[str, str]]:
    """(family, name) of the nf_tables tables in a namespace, over netlink (no process)."""
    try:
        sock = nsenter.socket_in(path, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError:
        return []
    out: list[tuple[str, str]] = []
    with sock:
        sock.bind((0, 0))
        body = struct.pack("<BBH", 0, 0, 0)
        sock.send(struct.pack("<IHHII", 16 + len(body), _NFT_MSG_GETTABLE, 0x301, 1, 0) + body)
        while True:
            data = sock.recv(1 << 16)
            pos = 0
            while pos + 16 <= len(data):
                length, mtype, _f, _s, _p = struct.unpack_from("<IHHII", data, pos)
                if length < 16:
                    return out
                payload = data[pos + 16 : pos + length]
                pos += (length + 3) & ~3
                if mtype in (2, 3):  # NLMSG_ERROR / NLMSG_DONE
                    return out
                if mtype != (10 << 8) | 0 or len(payload) < 4:  # NFT_MSG_NEWTABLE
                    continue
                family = _FAMILIES.get(payload[0], str(payload[0]))
                apos = 4
                while apos + 4 <= len(payload):
                    alen, akind = struct.unpack_from("<HH", payload, apos)
                    if alen < 4:
                        break
                    if akind & 0x3FFF == 1:
                        name = payload[apos + 4 : apos + alen].split(b"\0", 1)[0].decode()
                        out.append((family, name))
                    apos += (alen + 3) & ~3


def scan(report: CleanupReport, dry_run: bool = False) -> None:
    """Remove cntrace-named filters and tables of dead owners in every namespace."""
    for path, inode in namespaces():
        where = f"{path} ({inode})"
        for family, name in nft_tables(path):
            if not name.startswith(state.TABLE_PREFIX) or not _dead(state.owner_of(name)):
                continue
            if dry_run:
                report.removed.append(f"would delete nft table {family} {name} in {where}")
                continue
            ok, err = _delete_table(path, family, name)
            (report.removed if ok else report.errors).append(
                f"nft table {family} {name} in {where}" + ("" if ok else f": {err}")
            )
        try:
            sock = RouteSocket(path)
        except OSError:
            continue
        with sock:
            try:
                links = sock.links()
            except NetlinkError:
                continue
            for link in links:
                for parent in (PARENT_INGRESS, PARENT_EGRESS):
                    try:
                        filters = sock.filters(link.ifindex, parent)
                    except NetlinkError:
                        continue
                    for f in filters:
                        if not (f.name or "").startswith(state.FILTER_PREFIX):
                            continue
                        if not _dead(state.owner_of(f.name or "")):
                            continue
                        if dry_run:
                            report.removed.append(
                                f"would delete tc filter {f.name} on {link.name} in {where}"
                            )
                            continue
                        try:
                            with signals_deferred():
                                sock.del_filter(f)
                            report.removed.append(f"tc filter {f.name} on {link.name} in {where}")
                        except NetlinkError as exc:
                            report.errors.append(f"tc filter {f.name} on {link.name}: {exc}")


def cleanup(*, scan_all: bool = True, dry_run: bool = False) -> CleanupReport:
    """Remove leftovers of dead tracing runs: ledgers first, then (optionally) a full scan."""
    report = CleanupReport()
    from_ledgers(report, dry_run)
    if scan_all:
        scan(report, dry_run)
    return report
