"""Read the live host into a Snapshot: every network namespace, what the kernel holds in each, and
the containers that own them.

Two jobs run side by side: the namespace walk (sources.namespaces, peers) reads the kernel on
this thread while runtime discovery (sources.containers) asks the container engines on another;
this module joins them and settles what needs the whole picture. No process is started per
namespace or per container (docs/performance.md has the cost model).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import replace

from cntrace import __version__
from cntrace.errors import BadInput, EnvironmentProblem, NeedsPrivilege
from cntrace.model import Container, Netns, Snapshot
from cntrace.sources import forkread, nsenter, pathread, targeted
from cntrace.sources.containers import RuntimeAsker, Seen, dedupe, place, resolver
from cntrace.sources.lazy import Fill, defer, deferred
from cntrace.sources.namespaces import (
    Space,
    find_namespaces,
    open_many,
    read_detail,
    read_links,
    settle_detail,
    to_netns,
)
from cntrace.sources.netlink import decode, dumps
from cntrace.sources.pathread import PathRead
from cntrace.sources.peers import resolve_peers
from cntrace.sources.procs import ProcTable, netns_denied, socket_owners
from cntrace.sources.runtimes import RuntimeSource
from cntrace.sources.runtimes.intent import Intent
from cntrace.sources.runtimes.registry import default_sources
from cntrace.topology import Topology, resolve_ref


def _check_privilege() -> None:
    if os.geteuid() != 0:
        raise NeedsPrivilege("reading every network namespace", "CAP_SYS_ADMIN and CAP_NET_ADMIN")


def read_snapshot(
    *,
    only: Iterable[str] | None = None,
    rulesets: bool = True,
    sockets: bool = True,
    detail: bool = True,
    pids: Iterable[int] = (),
    sources: Iterable[RuntimeSource] | None = None,
    lazy: bool = False,
    narrow: bool = False,
) -> Snapshot:
    """Read the live host.

    ``only``: container refs (name, id prefix, pid:N, netns:NAME); every namespace is still
    listed with its links and addresses, but routes, rules, neighbours, FDB, sockets, sysctls and
    rulesets are read only for those containers' namespaces, their host sides and the root.
    ``detail=False`` reads links and addresses alone, without loopback (what ``cntrace ls``
    shows). ``pids`` adds
    ``pid:N`` containers. ``sources`` replaces the runtime sources (tests). ``lazy``: links and
    addresses of every namespace now, the rest of each namespace (and each container's resolver)
    when something first reads it (sources.lazy); the namespaces' sockets stay open for that.
    ``narrow`` (with ``only``): when every ref is a runtime's container, list only the
    namespaces around them, not every namespace (sources.targeted; `show`).
    """
    _check_privilege()
    refs = list(only) if only is not None else None
    extra_pids = set(pids)
    for ref in refs or ():
        if ref.startswith("pid:") and ref[4:].isdigit():
            extra_pids.add(int(ref[4:]))
            denied = netns_denied(int(ref[4:]))
            if denied is not None:
                raise EnvironmentProblem(
                    f"{ref}: {denied}, so cntrace cannot tell which network namespace it is in",
                    hint="name the root namespace as `host`, or use another of its processes",
                )
    procs = ProcTable.scan()
    warnings: list[str] = []
    runtime_sources = list(sources) if sources is not None else default_sources(procs, extra_pids)
    asking = RuntimeAsker(runtime_sources)
    if refs is not None:  # no child to fork first: the runtimes are asked meanwhile
        asking.start()
    spaces, root = find_namespaces(procs)

    lazy = lazy and detail and refs is None
    full_all = detail and refs is None and not lazy
    ordered = sorted(spaces.values(), key=lambda s: s.inode)
    # Every namespace listed (`ls`, the console's lazy read: links and addresses alone) or read
    # in full (`snapshot --save`): dumped by children while this process decodes
    # (sources.forkread), forked before the runtime thread starts.
    plan = forkread.Plan(loopback=detail, full=full_all, sockets=sockets, rulesets=rulesets)
    stream = (
        forkread.read_forked(ordered, plan)
        if refs is None and len(ordered) >= forkread.FORK_MIN
        else None
    )
    first = next(stream, None) if stream is not None else None
    if refs is None:
        asking.start()
    early: list[Container] | None = None
    if narrow and refs and detail and not lazy:
        found, claimed = asking.result(warnings)
        early = dedupe([place(c, spaces) for c in found], claimed)
        targets = targeted.targets(refs, early)
        if targets is not None:
            return _read_narrow(
                targets, spaces, root, early, procs, warnings, sockets=sockets, rulesets=rulesets
            )
    try:
        # `ls` (detail=False) never shows loopback: it is not even decoded then.
        if stream is None:
            read_links(ordered, full=full_all, sockets=sockets, rulesets=rulesets, loopback=detail)
        else:
            del first
            for _sp in stream:
                pass
        known = {sp.inode for sp in ordered}
        if early is None:
            found, claimed = asking.result(warnings)
            containers = dedupe([place(c, spaces) for c in found], claimed)
        else:
            containers = early
        late = [sp for inode, sp in spaces.items() if inode not in known]
        if late:  # a namespace only a runtime knew (not mounted, no process seen by the scan)
            read_links(late, full=full_all, sockets=sockets, rulesets=rulesets, loopback=detail)
            ordered = sorted(spaces.values(), key=lambda s: s.inode)
        live = [sp for sp in ordered if sp.conn is not None or sp.listed]
        peers = resolve_peers(live)

        selected: set[int] = set()
        forked = [sp for sp in live if sp.parsed is not None]  # dumped in full by a child
        if full_all:
            selected = {sp.inode for sp in live if sp.parsed is None}
        elif detail and refs:
            stopped = {c.name for c in asking.intent.stopped}
            running = [r for r in refs if r not in stopped]  # a stopped one has no namespace
            selected = _select(running, live, spaces, root, peers, containers, warnings)
            open_many(
                (sp for sp in live if sp.inode in selected),
                full=True,
                sockets=sockets,
                rulesets=rulesets,
            )
        chosen = [sp for sp in live if sp.inode in selected]
        read_detail(chosen, sockets=sockets, rulesets=rulesets, per_interface=full_all)
        if forked:
            tables = [rulesets and (bool(sp.nft_tables) or sp.legacy_tables) for sp in forked]
            settle_detail(forked, tables, rulesets=rulesets, per_interface=True)
        if sockets and refs:
            owners = socket_owners(procs.pids_in({sp.inode for sp in chosen}))
            for sp in chosen:
                sp.owners = owners
    except BaseException:
        lazy = False
        raise
    finally:
        asking.join()
        for sp in spaces.values() if not lazy else ():
            if sp.conn is not None:
                sp.conn.close()

    if lazy:
        netns = tuple(deferred(sp, root, peers, sockets, rulesets) for sp in ordered)
    else:
        netns = tuple(to_netns(sp, root, peers) for sp in ordered)
    snap = _read_at(netns, containers, warnings, asking.intent)
    # A targeted read (show) reads resolvers too only where asked: one container, not all.
    return _finish(snap, detail=detail, lazy=lazy or refs is not None)


def _read_at(
    netns: tuple[Netns, ...],
    containers: list[Container],
    warnings: list[str],
    intent: Intent | None = None,
) -> Snapshot:
    """A live Snapshot: what was read, stamped with the time, host, kernel and tool, and what
    the runtimes said besides their containers."""
    return Snapshot(
        netns=netns,
        containers=tuple(containers),
        taken_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        hostname=socket.gethostname(),
        kernel=os.uname().release,
        tool_version=__version__,
        warnings=tuple(warnings),
        runtime_networks=tuple(intent.networks) if intent else (),
        port_proxies=tuple(intent.proxies) if intent else (),
        stopped=tuple(intent.stopped) if intent else (),
    )


def read_path(
    source: str, destination: str, *, sockets: bool = True, rulesets: bool = True
) -> PathRead | None:
    """The live read for one path, started around the source (sources.pathread), or None when
    the path needs every namespace listed (the source is no runtime's container, a Kubernetes
    host, an address the runtimes give to several containers): read_snapshot(lazy=True)."""
    _check_privilege()
    procs = ProcTable.scan()
    warnings: list[str] = []
    asking = RuntimeAsker(default_sources(procs, set()))
    asking.start()  # the runtimes are asked while the namespaces are found
    spaces, root = find_namespaces(procs)
    try:
        found, claimed = asking.result(warnings)
    finally:
        asking.join()
    containers = dedupe([place(c, spaces) for c in found], claimed)
    start = targeted.targets([source], containers)
    if start is None or pathread.needs_full(containers, destination):
        return None
    far = pathread.seeds(containers, destination)
    start += [c for c in containers if c.netns in far and c not in start]
    base = _read_at((), containers, warnings, asking.intent)
    settled: Settled = {}
    try:
        return PathRead(
            spaces,
            root,
            start,
            base,
            lambda snap: _finish(snap, detail=True, lazy=True, memo=settled),
            sockets=sockets,
            rulesets=rulesets,
        )
    except BaseException:
        for sp in spaces.values():
            if sp.conn is not None:
                sp.conn.close()
                sp.conn = None
        raise


def _read_narrow(
    chosen: list[Container],
    spaces: dict[int, Space],
    root: int | None,
    containers: list[Container],
    procs: ProcTable,
    warnings: list[str],
    *,
    sockets: bool,
    rulesets: bool,
) -> Snapshot:
    """A targeted read of runtime containers listing only the namespaces around them."""
    try:
        read, peers, wanted = targeted.read_around(
            chosen, spaces, root, sockets=sockets, rulesets=rulesets
        )
        warnings.append(
            "partial snapshot: routes, rules, neighbours, FDB, sockets, sysctls and rulesets "
            f"were read only for {len(wanted)} of {len(spaces)} namespaces"
        )
        chosen_sp = [sp for sp in read if sp.inode in wanted and sp.conn is not None]
        open_many(chosen_sp, full=True, sockets=sockets, rulesets=rulesets)
        read_detail(chosen_sp, sockets=sockets, rulesets=rulesets)
        if sockets:
            owners = socket_owners(procs.pids_in({sp.inode for sp in chosen_sp}))
            for sp in chosen_sp:
                sp.owners = owners
    finally:
        for sp in spaces.values():
            if sp.conn is not None:
                sp.conn.close()
                sp.conn = None
    snap = _read_at(tuple(to_netns(sp, root, peers) for sp in read), containers, warnings)
    return _finish(snap, detail=True, lazy=True)


def _select(
    refs: list[str],
    live: list[Space],
    spaces: dict[int, Space],
    root: int | None,
    peers: dict[tuple[int, int], int],
    containers: list[Container],
    warnings: list[str],
) -> set[int]:
    """The namespaces a targeted read needs in full: the refs', their peers', and the root."""
    prelim = Snapshot(
        netns=tuple(to_netns(sp, root, peers) for sp in live), containers=tuple(containers)
    )
    prelim = _finish(prelim, detail=False)
    wanted: set[int] = {root} if root is not None else set()
    for ref in refs:
        target = resolve_ref(prelim, ref)
        inode = target.inode if isinstance(target, Netns) else target.netns
        if isinstance(target, Container) and target.host_netns is not None:
            wanted.add(target.host_netns)
        if inode is None:
            continue
        wanted.add(inode)
        ns = prelim.ns(inode)
        for link in ns.links if ns else ():
            if link.peer_netns is not None:
                wanted.add(link.peer_netns)
    warnings.append(
        "partial snapshot: routes, rules, neighbours, FDB, sockets, sysctls and rulesets were "
        f"read only for {len(wanted)} of {len(spaces)} namespaces"
    )
    return wanted


Settled = dict[int, tuple[Container, dict[str, object], Container]]


def _finish(
    snap: Snapshot, *, detail: bool, lazy: bool = False, memo: Settled | None = None
) -> Snapshot:
    """Settle what needs the whole picture: host namespaces, inferred modes, resolvers.

    A named namespace that turns out to be a host (it holds a bridge with ports, or another
    runtime's containers are plugged into it, like Docker's engine namespace) is not listed as a
    container: `topo` shows it as a host. ``memo`` (a path's read, finished once per widening)
    keeps each container settled before when nothing it was settled from changed: the same
    object, with its resolver if one was read, rather than 1,000 new lazy copies per round.
    """
    topo = Topology(snap)
    hosts = {
        c.host_netns
        for c in snap.containers
        if c.runtime not in ("netns", "pid") and c.host_netns not in (None, c.netns)
    }
    for ns in snap.netns:
        if any(topo.ports(ns, br) for br in topo.bridges(ns)):
            hosts.add(ns.inode)
    out = []
    seen: Seen = {}  # resolver files by (mount namespace, root), for this read only
    for c in snap.containers:
        if c.runtime == "netns" and c.netns in hosts:
            continue
        changes: dict[str, object] = {}
        if c.network_mode == "unknown":
            changes["network_mode"] = topo.infer_mode(c)
        if c.host_netns is None and c.netns is not None:
            changes["host_netns"] = topo.host_netns(c)
        wants = detail and c.resolver is None and c.pid is not None and c.state != "gone"
        before = memo.get(id(c)) if memo is not None else None
        if before is not None and before[0] is c and before[1] == changes:
            out.append(before[2])
            continue
        if wants and not lazy and c.pid is not None:
            found = resolver(c.pid, seen)
            if found is not None:
                changes["resolver"] = found
        done = replace(c, **changes) if changes else c  # type: ignore[arg-type]
        if lazy and wants and c.pid is not None:
            done = defer(done, _resolver_of(c.pid))
        if memo is not None:
            memo[id(c)] = (c, changes, done)
        out.append(done)
    return replace(snap, containers=tuple(out))


def _resolver_of(pid: int) -> Fill:
    return lambda: {"resolver": resolver(pid)}


def read_netns(path: str) -> Netns:
    """One namespace in full, by path (a convenience for tools and tests)."""
    _check_privilege()
    try:
        inode = nsenter.inode_of(nsenter.netns_path(path))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise BadInput(f"no network namespace at {path}") from exc
        raise
    sp = Space(inode, paths=[nsenter.netns_path(path)])
    with contextlib.ExitStack() as stack:
        open_many([sp], full=True, sockets=True, rulesets=True)
        if sp.conn is not None:
            stack.callback(sp.conn.close)
            sp.raw_links = decode.parse_links(dumps.dump(sp.conn, "links"))
            sp.addresses = decode.parse_addresses(dumps.dump(sp.conn, "addresses"))
            read_detail([sp], sockets=True, rulesets=True)
    return to_netns(sp, None, {})
