"""What one path's read needs: start around the source, widen where the walk leads.

`cntrace path` asks the core host-wide questions (who holds this address, where does this veth
lead), which a listing of every namespace answers. Most paths touch three or four namespaces,
so the live read (sources.live.read_path) lists only the source container's namespace, its host
side, the root and where their interfaces lead (sources.targeted), predicts, and asks
:func:`wants` what the answer pointed at but was not read:

- an interface on the way whose veth peer is in a namespace not read (its ``peer_nsid``);
- an address on the way (a packet's source or destination, the endpoints') that a runtime names
  as a container's: that container's namespace.

Those are read and the prediction runs again, until nothing new is wanted. What this changes in
meaning: an address held by a namespace no runtime names and the walk never reaches is not seen
(a full listing would make the destination's owner ambiguous). An address the runtimes give to
several containers takes the full listing (:func:`needs_full`), as does a source that is not a
runtime's container (a named namespace or `host` may be a host, which only the listing tells).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from cntrace.model import Container, Netns, Path, Snapshot
from cntrace.sources import port_read, sparse, targeted
from cntrace.sources.lazy import LazyNetns
from cntrace.sources.namespaces import (
    Space,
    netconf,
    open_many,
    read_detail,
    read_links,
    to_netns,
)
from cntrace.sources.namespaces import detail as detail_of
from cntrace.sources.peers import _nsids

WIDE_RUNTIMES = ("kubernetes",)  # kube-proxy's walk scans every namespace (path.kube)


def claimed(containers: Iterable[Container]) -> dict[str, set[int]]:
    """Address -> the namespaces whose container a runtime says holds it."""
    out: dict[str, set[int]] = {}
    for c in containers:
        if c.netns is None:
            continue
        for n in c.networks:
            for ip in (n.ip, n.ipv6):
                if ip:
                    out.setdefault(ip, set()).add(c.netns)
    return out


def needs_full(containers: Iterable[Container], destination: str) -> bool:
    """Whether a path to ``destination`` must list every namespace: a Kubernetes host, or an
    address the runtimes give to several containers (its owner is then "none", host-wide)."""
    listed = list(containers)
    if any(c.runtime in WIDE_RUNTIMES for c in listed):
        return True
    host = _address_of(destination)
    return host is not None and len(claimed(listed).get(host, ())) > 1


def seeds(containers: Iterable[Container], destination: str) -> set[int]:
    """Namespaces to read before the first prediction: the destination's, when a runtime names
    it (a container's name or its address)."""
    listed = list(containers)
    host = _address_of(destination)
    if host is not None:
        return set(claimed(listed).get(host, ()))
    name = destination.rsplit(":", 1)[0] if destination.count(":") == 1 else destination
    return {c.netns for c in listed if c.netns is not None and name in (c.name, c.id[:12])}


def wants(
    snap: Snapshot, result: Path, containers: Iterable[Container]
) -> tuple[set[int], set[tuple[int, int]]]:
    """What ``result`` points at that ``snap`` has not read: namespaces by inode (runtime
    containers holding an address on the way) and (namespace, netnsid) pairs (veth peers of
    interfaces on the way, named by the netnsid the namespace uses)."""
    read = {ns.inode for ns in snap.netns}
    owners = claimed(containers)
    ips = {result.source.ip, result.destination.ip}
    nsids: set[tuple[int, int]] = set()
    for hops in (result.hops, *(b.hops for b in result.branches)):
        for h in hops:
            for p in (h.packet, h.observed_packet):
                if p is not None:
                    ips |= {p.src, p.dst}
            ns = snap.ns(h.netns)
            if ns is None or h.interface is None:
                continue
            for lk in ns.links:
                if lk.name == h.interface and lk.peer_nsid is not None and lk.peer_netns is None:
                    nsids.add((ns.inode, lk.peer_nsid))
    inodes = {i for ip in ips if ip for i in owners.get(ip, ()) if i not in read}
    return inodes, nsids


def owner_unseen(snap: Snapshot, result: Path) -> bool:
    """Whether the destination is an address no namespace read holds: the walk stopped short
    of it or it is off the host. Only the full listing says whether some namespace holds it
    (its owner), so the read widens to every namespace (the last resort)."""
    ip = result.destination.ip
    if result.destination.kind != "ip" or ip is None or result.destination.netns is not None:
        return False
    return not any(a.address == ip for ns in snap.netns for lk in ns.links for a in lk.addresses)


def _address_of(destination: str) -> str | None:
    """The IP a DEST argument names (``IP``, ``IP:PORT``, ``[IPv6]:PORT``), else None."""
    text = destination
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _named_by(sp: Space, among: list[Space], nsid: int, batch: int = 64) -> set[int]:
    """The namespaces of ``among`` that ``sp`` calls ``nsid``: asked in batches, stopping at the
    first batch that has it (a netnsid names one namespace; a host has ~1,000 to ask about)."""
    assert sp.conn is not None
    for start in range(0, len(among), batch):
        hits = {i for i, n in _nsids(sp.conn, among[start : start + batch]).items() if n == nsid}
        if hits:
            return hits
    return set()


UPLINKS = 4


class PathRead:
    """The live namespaces one path has read so far (links and addresses; detail on first
    access, kept across widenings), and the means to read more of them."""

    def __init__(
        self,
        spaces: dict[int, Space],
        root: int | None,
        start: list[Container],
        base: Snapshot,
        finish: Callable[[Snapshot], Snapshot],
        *,
        sockets: bool,
        rulesets: bool,
    ) -> None:
        self.spaces, self.root, self.base, self.finish = spaces, root, base, finish
        self.sockets, self.rulesets = sockets, rulesets
        read, self.peers, _ = targeted.read_around(
            start, spaces, root, sockets=sockets, rulesets=rulesets
        )
        self.read = {sp.inode: sp for sp in read}
        self.details: dict[int, dict[str, Any]] = {}
        self.built: dict[int, tuple[tuple[tuple[int, int], ...], Netns]] = {}
        self.widen(set(), self._uplinks())

    def _uplinks(self) -> set[tuple[int, int]]:
        """The far ends of a namespace's few point-to-point links that are not bridge ports
        (an uplink veth to a router namespace, a nested host's): where most walks leave a host,
        so read before the first prediction rather than after it. A namespace with more of
        them than UPLINKS (routed veths, one per container) is left to the walk."""
        out: set[tuple[int, int]] = set()
        for sp in self.read.values():
            ends = {
                lk.link_netnsid
                for lk in sp.raw_links
                if lk.link_netnsid is not None
                and lk.kind in sparse.PAIRS
                and lk.ifindex not in sp.ports
                and (sp.inode, lk.ifindex) not in self.peers
            }
            if len(ends) <= UPLINKS:
                out |= {(sp.inode, nsid) for nsid in ends if nsid is not None}
        return out

    def widen(self, inodes: set[int], nsids: set[tuple[int, int]]) -> bool:
        """Read ``inodes`` and the namespaces ``nsids`` name (as seen from the namespace
        paired with each); False when none of them is new."""
        new = {i for i in inodes if i in self.spaces and i not in self.read}
        unread = [sp for i, sp in self.spaces.items() if i not in self.read and i not in new]
        for inode, nsid in nsids:
            sp = self.read.get(inode)
            if sp is None or sp.conn is None or not unread:
                continue
            new |= _named_by(sp, unread, nsid)
        if not new:
            return False
        spaces = [self.spaces[i] for i in sorted(new)]
        read_links(spaces, full=False, sockets=self.sockets, rulesets=self.rulesets, narrow=True)
        self.read.update((sp.inode, sp) for sp in spaces)
        among = list(self.read.values())
        for sp in among:
            targeted._resolve(sp, among, self.peers)
        for sp in port_read.bring_back(among, self.peers):
            targeted._resolve(sp, among, self.peers)
        return True

    def snapshot(self) -> Snapshot:
        """What has been read, as a Snapshot whose unread detail fills on first access."""
        netns = tuple(self._netns(self.read[i]) for i in sorted(self.read))
        notes = tuple(n for i in sorted(self.read) if (n := sparse.note(self.read[i])))
        warnings = (*self.base.warnings, *notes)
        return self.finish(replace(self.base, netns=netns, warnings=warnings))

    def close(self) -> None:
        for sp in self.spaces.values():
            if sp.conn is not None:
                sp.conn.close()
                sp.conn = None

    def _netns(self, sp: Space) -> Netns:
        """``sp`` as a Netns, built again only when a widening resolved more of its peers (a
        host's 1,000 links are not rebuilt for every prediction)."""
        key = tuple(sorted((k[1], v) for k, v in self.peers.items() if k[0] == sp.inode))
        cached = self.built.get(sp.inode)
        if cached is not None and cached[0] == key:
            return cached[1]
        omit = sparse.left_out(sp, self.peers)
        if omit != sp.omit:  # a widening read the far end of ports left out: they come back
            sp.omit = omit
            if sp.inode in self.details:
                netconf(sp)
                self.details[sp.inode] = detail_of(sp)
        done = self.details.get(sp.inode)
        if done is not None:
            out = replace(to_netns(sp, self.root, self.peers), **done)
        else:
            out = to_netns(sp, self.root, self.peers, cls=LazyNetns)
            out.__dict__["_fill"] = lambda: self._fill(sp)
        self.built[sp.inode] = (key, out)
        return out

    def _fill(self, sp: Space) -> dict[str, Any]:
        """``sp``'s detail, read as sources.lazy.deferred does; its socket stays open (a later
        widening asks it for netnsids)."""
        done = self.details.get(sp.inode)
        if done is None:
            if sp.conn is not None:
                open_many([sp], full=True, sockets=self.sockets, rulesets=self.rulesets)
                read_detail([sp], sockets=self.sockets, rulesets=self.rulesets)
            done = self.details[sp.inode] = detail_of(sp)
            if not sp.ports:
                sp.dumps = {}  # decoded once: later Snapshots reuse `done`
        return done
