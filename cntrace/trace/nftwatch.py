"""The nftrace collector: a trace table and an event socket in each namespace, for one trace.

How the tracing works, and why iptables-legacy cannot be traced, is in nftrace.py. Tables are
written to the ledger before they are added, so `cntrace cleanup` removes them after a killed
run; stop() deletes them in all namespaces at once.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from dataclasses import dataclass, field

from cntrace.sources import nsenter
from cntrace.trace import nftlib, state
from cntrace.trace.collector import Seen, Trace
from cntrace.trace.events import RuleEvent, Unwatched
from cntrace.trace.nftrace import (
    NETLINK_ADD_MEMBERSHIP,
    NETLINK_NETFILTER,
    NFNLGRP_NFTRACE,
    SOL_NETLINK,
    RawTrace,
    can_run,
    iptables_rules,
    parse_trace_messages,
    ruleset_rules,
    table_script,
    trace_packet,
)
from cntrace.trace.packet import Matcher
from cntrace.trace.tcattach import signals_deferred


def legacy_tables(netns_path: str) -> list[str]:
    """iptables-legacy tables loaded in the namespace (their rules escape nftrace)."""
    found = []
    with contextlib.suppress(OSError), nsenter.entered(netns_path):
        for name in ("ip_tables_names", "ip6_tables_names"):
            with contextlib.suppress(OSError), open(f"/proc/thread-self/net/{name}") as fh:
                found += [f"{name.split('_')[0]}:{t.strip()}" for t in fh if t.strip()]
    return found


@dataclass
class _Netns:
    path: str
    inode: int
    table: str
    record: int
    sock: socket.socket | None = None
    raw: list[RawTrace] = field(default_factory=list)


class NftraceCollector:
    """nftables rules the probe went through (covers iptables-nft), one trace at a time."""

    name = "nftrace"

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self._traces = 0
        self._ns: list[_Netns] = []  # tables in place
        self._done: list[_Netns] = []  # tables removed, events not yet reported
        self._errors: list[str] = []
        self._lost = 0

    def can_run(self) -> tuple[bool, str]:
        return can_run()

    def attach(self, trace: Trace) -> list[Unwatched]:
        """Listen to trace events, then add a trace table, in each namespace of the plan."""
        self._traces += 1
        self._done, self._errors, self._lost = [], [], 0
        namespaces = trace.plan.nft_namespaces
        if not namespaces:
            return []
        ok, why = self.can_run()
        if not ok:
            return [Unwatched(f"nftrace {p}", why) for p in namespaces]
        unwatched: list[Unwatched] = []
        todo = self._listen(namespaces, unwatched)
        ledger = state.ledger()
        for ns in todo:
            # Record, table and the bookkeeping that undoes them land together: an interrupt
            # between them would leave a table (or a record) stop() does not know about.
            with signals_deferred():
                rid = ledger.add(
                    state.Record("nft_table", ns.path, ns.inode, family="inet", name=ns.table)
                )
                ns.record = rid
                script = table_script(ns.table, trace.nonce, trace.probe)
                code, _out, err = nftlib.run(ns.path, script)
                if code == 0:
                    self._ns.append(ns)
                else:
                    ledger.remove_many([rid])
            if code != 0:
                if ns.sock:
                    ns.sock.close()
                why = err.strip().splitlines()[0] if err.strip() else "nft failed"
                unwatched.append(Unwatched(f"nftrace {ns.path}", why))
                continue
            legacy = legacy_tables(ns.path)
            if legacy:
                unwatched.append(
                    Unwatched(
                        f"iptables-legacy rules in {ns.path}",
                        f"tables {', '.join(legacy)} are iptables-legacy: their rules are not "
                        "traced (TRACE needs the root-namespace sysctl nf_log_all_netns)",
                    )
                )
        return unwatched

    def _listen(self, namespaces: tuple[str, ...], unwatched: list[Unwatched]) -> list[_Netns]:
        """A bound NFNLGRP_NFTRACE socket in each distinct namespace."""
        seq = self.seq * 1000 + self._traces
        todo: list[_Netns] = []
        seen: set[int] = set()
        for i, path in enumerate(namespaces):
            try:
                inode = nsenter.inode_of(nsenter.netns_path(path))
            except OSError as exc:
                unwatched.append(Unwatched(f"nftrace {path}", f"namespace gone: {exc}"))
                continue
            if inode in seen:
                continue
            seen.add(inode)
            try:
                sock = nsenter.socket_in(
                    path, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER
                )
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, 33, 1 << 22)  # SO_RCVBUFFORCE
                # bound first: the kernel skips port id 0 (its own) when it multicasts
                sock.bind((0, 0))
                sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTRACE)
                sock.setblocking(False)
            except OSError as exc:
                unwatched.append(Unwatched(f"nftrace {path}", f"no trace socket: {exc.strerror}"))
                continue
            table = f"{state.TABLE_PREFIX}{state.ledger().pid}_{seq}_{i}"
            todo.append(_Netns(path, inode, table, 0, sock))
        return todo

    def start(self, trace: Trace) -> list[int]:
        return [ns.sock.fileno() for ns in self._ns if ns.sock is not None]

    def drain(self, trace: Trace) -> Seen:
        """While tables are in place, read the sockets and keep the events; once they are gone,
        the events as RuleEvents, with each rule's text looked up in its namespace."""
        if self._ns:
            self._read()
            return Seen()
        done, self._done = self._done, []
        errors, self._errors = self._errors, []
        return Seen(rules=tuple(_events(done, trace.matcher, trace.t0_ns)), notices=tuple(errors))

    def _read(self) -> None:
        for ns in self._ns:
            if ns.sock is None:
                continue
            while True:
                try:
                    data = ns.sock.recv(1 << 16)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.ENOBUFS:
                        self._lost += 1  # the socket overflowed: some events are gone
                        continue
                    raise
                ns.raw.extend(
                    t
                    for t in parse_trace_messages(data, time.monotonic_ns())
                    if t.table != ns.table
                )

    def stop(self, trace: Trace | None = None) -> int:
        """Delete the tables (all namespaces at once) and close the sockets."""
        lost, self._lost = self._lost, 0
        if not self._ns:
            return lost
        for ns in self._ns:
            if ns.sock is not None:
                ns.sock.close()
                ns.sock = None
        tables = {ns.path: ns.table for ns in self._ns}
        with signals_deferred():
            results = nftlib.each(list(tables), lambda p: nftlib.delete_table(p, "inet", tables[p]))
            gone = []
            for ns, (ok, err) in zip(self._ns, results, strict=True):
                if ok:
                    gone.append(ns.record)
                else:
                    self._errors.append(
                        f"could not delete nft table {ns.table} in {ns.path}: {err}"
                    )
            state.ledger().remove_many(gone)
        self._done.extend(self._ns)
        self._ns = []
        return lost

    def close(self) -> None:
        self.stop()


def _events(done: list[_Netns], matcher: Matcher, t0_ns: int) -> list[RuleEvent]:
    """The namespaces' trace events as RuleEvents, with rule texts from their rulesets."""
    out: list[RuleEvent] = []
    for ns in done:
        if not ns.raw:
            continue
        texts = ruleset_rules(ns.path)
        ipt: dict[str, dict[tuple[str, str], list[str]]] = {}
        # The kernel puts the packet's headers only in the first event of a trace id (one per
        # hook); later events of the same id are the same packet, so they share its direction.
        direction: dict[int, bool] = {}
        for t in ns.raw:
            parsed = trace_packet(t)
            m = matcher.match(parsed, learn=False) if parsed else None
            if m is not None:
                direction[t.trace_id] = bool(m[2])
            if t.type == "rule" and t.handle is None:
                continue  # the packet's entry into a chain, not a rule
            key = (t.family, t.table, t.chain)
            chain_texts = texts.get(key, {})
            position, text = chain_texts.get(t.handle or -1, (None, None))
            if text is not None and position is not None and t.family in ("ip", "ip6"):
                if t.family not in ipt:
                    ipt[t.family] = iptables_rules(ns.path, t.family)
                lines = ipt[t.family].get((t.table, t.chain), [])
                if len(lines) == len(chain_texts):
                    text = lines[position - 1]  # iptables-nft's own rule: its own syntax
            out.append(
                RuleEvent(
                    netns_path=ns.path,
                    netns_inode=ns.inode,
                    family=t.family,
                    table=t.table,
                    chain=t.chain,
                    handle=t.handle,
                    verdict=t.verdict,
                    rule_text=text,
                    t_ns=t.t_ns - t0_ns,
                    kind=t.type,
                    position=position,
                    is_reply=direction.get(t.trace_id, False),
                    packet=parsed.to_packet(t.mark) if parsed else None,
                    iif=_ifname(ns.path, t.iif),
                    oif=_ifname(ns.path, t.oif),
                    mark=t.mark,
                )
            )
    return out


class LegacyTraceCollector:
    """iptables-legacy's TRACE target: listed so the requirements say why it is not used."""

    name = "iptables-legacy TRACE"

    def can_run(self) -> tuple[bool, str]:
        return False, (
            "TRACE logs through nf_log to the kernel log, which for containers' namespaces needs "
            "the root-namespace sysctl net.netfilter.nf_log_all_netns=1; cntrace does not change "
            "host sysctls (legacy rules are still named by the drop's location: ipt_do_table)"
        )


_IFNAMES: dict[tuple[str, int], str | None] = {}


def _ifname(netns_path: str, ifindex: int | None) -> str | None:
    if not ifindex:
        return None
    key = (netns_path, ifindex)
    if key not in _IFNAMES:
        name: str | None = None
        with contextlib.suppress(OSError), nsenter.entered(netns_path):
            name = socket.if_indextoname(ifindex)
        _IFNAMES[key] = name
    return _IFNAMES[key]
