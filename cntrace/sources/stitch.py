"""Several nodes' snapshots as one: how a multi-node bug report is read (issue 19).

`cntrace snapshot --save nodeN.json` on each node, then `cntrace path --snapshot node1.json
--snapshot node2.json SRC DEST`. Each file's root namespace becomes a namespace named after its
node (the host name), inode numbers that two machines happen to share are moved apart, and the
nodes are matched: every VXLAN FDB entry's remote VTEP must be an address another file holds, or
a warning says which node is missing. The walk then crosses from one node to the next
where the next hop's address lives on the far node (cntrace.path.links), as the wire between the
machines would, so the prediction is the one a single machine seeing both nodes would give.

`split` cuts a machine's snapshot into the per-node files its nodes would each have recorded
(the lab's nodes are namespaces of one machine): what tests and fixtures compare with.
"""

from __future__ import annotations

from dataclasses import replace

from cntrace.errors import BadInput
from cntrace.model import Container, Link, Netns, Snapshot

SHIFT = 1 << 40  # inode numbers of a later file that collide are moved by this much per file


def stitch(snaps: list[Snapshot], origins: list[str] | None = None) -> Snapshot:
    """One Snapshot from per-node snapshots (one file: returned as it is)."""
    if len(snaps) == 1:
        return snaps[0]
    origins = origins or [f"snapshot {i + 1}" for i in range(len(snaps))]
    names = [_node_name(s, o) for s, o in zip(snaps, origins, strict=True)]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise BadInput(f"two snapshots are of the same node ({twice}): give each node once")
    seen: set[int] = set()
    netns: list[Netns] = []
    containers: list[Container] = []
    for i, (snap, name) in enumerate(zip(snaps, names, strict=True)):
        moved = {ns.inode: ns.inode + SHIFT * i for ns in snap.netns if ns.inode in seen}
        for ns in snap.netns:
            n = _moved_ns(ns, moved)
            if ns.is_root:
                n = replace(n, is_root=False, name=ns.name or name)
            netns.append(n)
            seen.add(n.inode)
        containers += [_moved_container(c, moved) for c in snap.containers]
    first = snaps[0]
    reasons: dict[str, str] = {}
    for s in snaps:
        reasons.update(s.drop_reasons)
    out = Snapshot(
        netns=tuple(netns),
        containers=tuple(containers),
        taken_at=min(s.taken_at for s in snaps),
        hostname="+".join(names),
        kernel=first.kernel,
        tool_version=first.tool_version,
        warnings=tuple(w for s in snaps for w in s.warnings),
        drop_reasons=reasons,
        nodes=tuple(names),
    )
    return replace(out, warnings=out.warnings + tuple(unmatched(out)))


def unmatched(snap: Snapshot) -> list[str]:
    """What the nodes point at that no file holds: a VXLAN FDB entry's remote VTEP."""
    held = {a.address for ns in snap.netns for lk in ns.links for a in lk.addresses}
    out = []
    for ns in snap.netns:
        for e in ns.fdb:
            if e.dst and e.dst not in held:
                out.append(
                    f"{ns.label}'s {e.port} sends {e.mac} to {e.dst}, which none of the "
                    "snapshots holds: add that node's snapshot to follow the tunnel there"
                )
    return out


def _node_name(snap: Snapshot, origin: str) -> str:
    root = snap.root
    if root is not None and root.name:
        return root.name
    return snap.hostname or origin


def _moved_ns(ns: Netns, moved: dict[int, int]) -> Netns:
    if not moved:
        return ns
    links = tuple(
        replace(lk, peer_netns=moved.get(lk.peer_netns, lk.peer_netns))
        if lk.peer_netns is not None
        else lk
        for lk in ns.links
    )
    return replace(ns, inode=moved.get(ns.inode, ns.inode), links=links)


def _moved_container(c: Container, moved: dict[int, int]) -> Container:
    if not moved:
        return c
    return replace(
        c,
        netns=moved.get(c.netns, c.netns) if c.netns is not None else None,
        host_netns=moved.get(c.host_netns, c.host_netns) if c.host_netns is not None else None,
    )


# --------------------------------------------------------------------------- one machine, cut


def split(snap: Snapshot, nodes: list[str]) -> list[Snapshot]:
    """The snapshot each node (a named namespace of ``snap``) would have recorded: the node as
    its root, with every namespace reachable from it by veth without crossing another node; the
    links between nodes lose their peer (a cable to another machine)."""
    by_name = {ns.name: ns for ns in snap.netns if ns.name}
    missing = [n for n in nodes if n not in by_name]
    if missing:
        raise BadInput(f"no namespace named {', '.join(missing)} in the snapshot")
    node_inodes = {by_name[n].inode for n in nodes}
    out = []
    for name in nodes:
        root = by_name[name]
        mine = _reachable(snap, root.inode, node_inodes)
        netns = []
        for ns in snap.netns:
            if ns.inode not in mine:
                continue
            links = tuple(_cut(lk, mine) for lk in ns.links)
            netns.append(replace(ns, links=links, is_root=ns.inode == root.inode))
        containers = tuple(c for c in snap.containers if c.netns in mine)
        out.append(replace(snap, netns=tuple(netns), containers=containers, hostname=name))
    return out


def _reachable(snap: Snapshot, start: int, nodes: set[int]) -> set[int]:
    seen = {start}
    todo = [start]
    while todo:
        ns = snap.ns(todo.pop())
        if ns is None:
            continue
        for lk in ns.links:
            far = lk.peer_netns
            if far is None or far in seen or far in nodes:
                continue
            seen.add(far)
            todo.append(far)
    return seen


def _cut(lk: Link, mine: set[int]) -> Link:
    if lk.peer_netns is None or lk.peer_netns in mine:
        return lk
    return replace(lk, peer_netns=None, peer_ifindex=None)
