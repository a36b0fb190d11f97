"""Which namespace each veth's peer (and each macvlan's lower device) lives in.

A veth end names its peer by ifindex plus a netnsid only meaningful inside its own namespace
(ids are per namespace: B may be 0 in A and 3 in C). Peers are matched by the mutual reference
(A.link == B.ifindex and B.link == A.ifindex); that also teaches each namespace's netnsid map,
which resolves macvlan lower devices. Anything ambiguous (both ends of veths made inside
namespaces often have ifindex 2, so several pairs mirror each other) or contradictory is settled
by asking the kernel (RTM_GETNSID with the candidate's fd), whichever namespace holds either end.
"""

from __future__ import annotations

import os

from cntrace.sources.namespaces import Space, open_many
from cntrace.sources.netlink import decode, dumps


def resolve_peers(spaces: list[Space]) -> dict[tuple[int, int], int]:
    """(netns inode, ifindex) -> the inode of the namespace its IFLA_LINK_NETNSID points to."""
    by_index: dict[int, list[Space]] = {}
    by_pair: dict[tuple[int, int], list[Space]] = {}  # (ifindex, IFLA_LINK) of veth ends
    for sp in spaces:
        for lk in sp.raw_links:
            by_index.setdefault(lk.ifindex, []).append(sp)
            if lk.link_netnsid is not None and lk.link is not None:
                by_pair.setdefault((lk.ifindex, lk.link), []).append(sp)
    resolved: dict[tuple[int, int], int] = {}
    nsid_map: dict[int, dict[int, set[int]]] = {}
    pending: list[tuple[Space, decode.RawLink, list[Space]]] = []
    for sp in spaces:
        for lk in sp.raw_links:
            if lk.link_netnsid is None or lk.link is None:
                continue
            if lk.kind in ("veth", "netkit"):
                mutual = [o for o in by_pair.get((lk.link, lk.ifindex), ()) if o is not sp]
                if len(mutual) == 1:
                    resolved[(sp.inode, lk.ifindex)] = mutual[0].inode
                    nsid_map.setdefault(sp.inode, {}).setdefault(lk.link_netnsid, set()).add(
                        mutual[0].inode
                    )
                    continue
                if mutual:
                    pending.append((sp, lk, mutual))
                    continue
            pending.append((sp, lk, [o for o in by_index.get(lk.link, ()) if o is not sp]))
    # One netnsid names one namespace: a mutual match that contradicts another (two unrelated
    # pairs whose indexes happen to mirror each other) is settled by the kernel instead.
    by_inode = {sp.inode: sp for sp in spaces}
    for sp in spaces:
        for lk in sp.raw_links:
            seen = nsid_map.get(sp.inode, {}).get(
                -1 if lk.link_netnsid is None else lk.link_netnsid, set()
            )
            if len(seen) > 1 and (sp.inode, lk.ifindex) in resolved:
                del resolved[(sp.inode, lk.ifindex)]
                pending.append((sp, lk, [by_inode[i] for i in sorted(seen)]))
    unsettled: dict[int, list[tuple[decode.RawLink, list[Space]]]] = {}
    for sp, lk, cands in pending:
        known = nsid_map.get(sp.inode, {}).get(
            -1 if lk.link_netnsid is None else lk.link_netnsid, set()
        )
        if len(known) == 1:
            resolved[(sp.inode, lk.ifindex)] = next(iter(known))
        elif cands:
            unsettled.setdefault(sp.inode, []).append((lk, cands))
    for inode, items in unsettled.items():
        if by_inode[inode].conn is None and by_inode[inode].listed:
            open_many([by_inode[inode]], full=False, sockets=False, rulesets=False)
        conn = by_inode[inode].conn
        if conn is None:
            continue
        targets = sorted({c.inode for _, cs in items for c in cs})
        ids = _nsids(conn, [by_inode[t] for t in targets])
        for lk, cs in items:
            for cand in cs:
                if ids.get(cand.inode) == lk.link_netnsid:
                    resolved[(inode, lk.ifindex)] = cand.inode
                    break
    return resolved


def _nsids(conn: dumps.Conn, targets: list[Space]) -> dict[int, int | None]:
    """The netnsid ``conn``'s namespace uses for each target (by inode)."""
    fds: list[int] = []
    opened: list[Space] = []
    try:
        for t in targets:
            for path in t.candidates():
                try:
                    fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
                    opened.append(t)
                    break
                except OSError:
                    continue
        answers = dumps.nsids(conn, fds)
    except OSError:
        return {}
    finally:
        for fd in fds:
            os.close(fd)
    return {t.inode: a for t, a in zip(opened, answers, strict=True)}
