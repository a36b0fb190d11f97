"""A targeted read that lists only the namespaces it needs (`cntrace show C`).

A full listing enters every namespace for its links and addresses (the floor of `ls`: ~0.2 ms a
namespace). Showing one runtime container needs far fewer: its own namespace, the namespaces its
interfaces lead to (veth peers, lower devices), its host namespace and the root. The runtime
already said where the container is (sources.containers.place), so those few are found without
reading the others; which namespace a netnsid names is asked of the kernel (RTM_GETNSID with each
candidate's fd), first among the namespaces already chosen, then among all.

Only containers a runtime describes are read this way: a bare named namespace or ``pid:N`` may
turn out to be a host, which only the full listing can tell (live.read_snapshot falls back).
"""

from __future__ import annotations

from cntrace.errors import BadInput
from cntrace.model import Container, Snapshot
from cntrace.refs import resolve_ref
from cntrace.sources import port_read, sparse
from cntrace.sources.namespaces import Space, read_links
from cntrace.sources.peers import _nsids

PLAIN = ("netns", "pid")


def targets(refs: list[str], containers: list[Container]) -> list[Container] | None:
    """The runtime containers ``refs`` name, or None when one is anything else (a named
    namespace, pid:N, host, an unknown or ambiguous ref: the full read decides and reports)."""
    found: list[Container] = []
    prelim = Snapshot(netns=(), containers=tuple(containers))
    for ref in refs:
        if ref.startswith(("pid:", "netns:")) or ref == "host":
            return None
        try:
            target = resolve_ref(prelim, ref)
        except BadInput:
            return None
        if not isinstance(target, Container) or target.runtime in PLAIN or target.netns is None:
            return None
        found.append(target)
    return found


def read_around(
    chosen: list[Container],
    spaces: dict[int, Space],
    root: int | None,
    *,
    sockets: bool,
    rulesets: bool,
) -> tuple[list[Space], dict[tuple[int, int], int], set[int]]:
    """Read links and addresses of the containers' namespaces, their host namespaces, the root
    and every namespace their interfaces lead to. Returns the spaces read (sorted by inode),
    the peers of their links (as peers.resolve_peers) and the inodes whose detail a targeted
    read takes (live._select's set: refs', their peers', host sides, root)."""
    wanted: dict[int, Space] = {}

    def add(inodes: set[int]) -> list[Space]:
        new = [spaces[i] for i in sorted(inodes) if i in spaces]
        new = [sp for sp in new if sp.inode not in wanted]
        for sp in new:
            wanted[sp.inode] = sp
        read_links(new, full=False, sockets=sockets, rulesets=rulesets, narrow=True)
        return new

    own = {c.netns for c in chosen if c.netns is not None}
    detail = {i for i in (root, *own, *(c.host_netns for c in chosen)) if i is not None}
    add(detail)
    peers: dict[tuple[int, int], int] = {}
    # The containers' own links must all be resolved; other namespaces' links only where their
    # peer is among those read (the rest keep their netnsid, as a listing of one host would).
    queue = [wanted[i] for i in sorted(own) if i in wanted]
    settled: set[int] = set()
    while queue:
        sp = queue.pop(0)
        settled.add(sp.inode)
        missing = _resolve(sp, list(wanted.values()), peers)
        if missing and sp.inode in own:
            others = [o for o in spaces.values() if o.inode not in wanted]
            ids = _nsids(sp.conn, others) if sp.conn is not None else {}
            hits = {i for i, nsid in ids.items() if nsid in missing}
            queue.extend(add(hits))
            _resolve(sp, list(wanted.values()), peers)
        if sp.inode in own:
            detail |= {
                peers[(sp.inode, lk.ifindex)]
                for lk in sp.raw_links
                if (sp.inode, lk.ifindex) in peers
            }
    for sp in wanted.values():
        if sp.inode not in settled:
            _resolve(sp, list(wanted.values()), peers)
    among = list(wanted.values())
    for sp in port_read.bring_back(among, peers):  # a host's port behind a container read
        _resolve(sp, among, peers)
    for sp in wanted.values():
        sp.omit = sparse.left_out(sp, peers)
    return sorted(wanted.values(), key=lambda s: s.inode), peers, detail


def _resolve(sp: Space, among: list[Space], peers: dict[tuple[int, int], int]) -> set[int]:
    """Fill ``peers`` for ``sp``'s links whose netnsid names one of ``among``; returns the
    netnsids left unresolved."""
    asked = {lk.link_netnsid for lk in sp.raw_links if lk.link_netnsid is not None}
    if not asked or sp.conn is None:
        return set()
    others = [o for o in among if o is not sp and o.conn is not None]
    by_nsid = {nsid: i for i, nsid in _nsids(sp.conn, others).items() if nsid is not None}
    for lk in sp.raw_links:
        if lk.link_netnsid in by_nsid and lk.link is not None:
            peers[(sp.inode, lk.ifindex)] = by_nsid[lk.link_netnsid]
    return asked - set(by_nsid)
