"""A path read narrowly (sources.pathread: around the source, widened where the walk leads)
answers as a full read, for every lab fault, source and destination.

The narrow reads are simulated on recorded lab snapshots: a namespace not read is absent and the
links leading to it keep only a netnsid, as the live loader (sources.live.read_path) leaves them;
tests/integration/test_lazy_live.py compares the live narrow read with a full one on the lab.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cntrace.errors import BadInput
from cntrace.model import Snapshot
from cntrace.path import predict
from cntrace.sources import pathread
from tests.unit.test_lazy import DESTS, LAB, answer


def narrowed(full: Snapshot, inodes: set[int]) -> Snapshot:
    """``full`` as a read of ``inodes`` only (peers elsewhere named by netnsid = inode)."""

    def cut(ns):  # type: ignore[no-untyped-def]
        links = tuple(
            replace(lk, peer_netns=None, peer_nsid=lk.peer_netns)
            if lk.peer_netns is not None and lk.peer_netns not in inodes
            else lk
            for lk in ns.links
        )
        return replace(ns, links=links)

    return replace(full, netns=tuple(cut(ns) for ns in full.netns if ns.inode in inodes))


def around(full: Snapshot, inodes: set[int]) -> set[int]:
    """``inodes`` with where their links lead (targeted.read_around's own namespaces)."""
    out = set(inodes)
    for i in inodes:
        ns = full.ns(i)
        out |= {lk.peer_netns for lk in ns.links if lk.peer_netns is not None} if ns else set()
    return out


def narrow_answer(full: Snapshot, src: str, dst: str) -> tuple[str, int]:
    c = next(c for c in full.containers if c.name == src)
    assert not pathread.needs_full(full.containers, dst)
    start = {c.netns, c.host_netns, *(ns.inode for ns in full.netns if ns.is_root)}
    own = {c.netns} | pathread.seeds(full.containers, dst)
    read = around(full, {i for i in own if i is not None}) | {i for i in start if i is not None}
    for _ in range(10):
        snap = narrowed(full, read)
        try:
            result = predict(snap, src, dst)
        except BadInput:
            break
        inodes, nsids = pathread.wants(snap, result, full.containers)
        new = (inodes | {nsid for _, nsid in nsids}) - read
        if not new:
            if pathread.owner_unseen(snap, result):
                read = {ns.inode for ns in full.netns}
            break
        read |= new
    return answer(narrowed(full, read), src, dst), len(read)


@pytest.mark.parametrize("path", LAB, ids=lambda p: p.stem)
def test_narrow_path_read_answers_as_full(path: Path) -> None:
    from cntrace.sources import recorded

    full = recorded.load(str(path))
    sources = sorted({c.name for c in full.containers if c.runtime == "lab"})
    narrower = 0
    for src in sources:
        for dst in DESTS:
            got, read = narrow_answer(full, src, dst)
            assert got == answer(full, src, dst), f"{src} -> {dst}"
            narrower += read < len(full.netns)
    assert narrower
