"""Per-node snapshots stitched (issue 19): `cntrace path --snapshot node1.json --snapshot
node2.json` gives, hop by hop, the prediction of one machine that sees both nodes.

The per-node files are cut from the recorded two-node labs by stitch.split, the way each node's
own `cntrace snapshot` would see it: the node as its root, its pods, and its underlay veth
without a peer (a cable to another machine)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from clirun import run_json
from overlaycases import CASES, IDS, OverlayCase

from cntrace import codec
from cntrace.errors import BadInput
from cntrace.model import Snapshot
from cntrace.path.predict import predict
from cntrace.sources import recorded, stitch

SNAPSHOTS = Path(__file__).resolve().parents[2] / "fixtures" / "snapshots"
NODES = ["cntrace-lab.node1", "cntrace-lab.node2"]


def single(case: OverlayCase) -> Snapshot:
    return recorded.load(str(SNAPSHOTS / case.topology / f"{case.state}.json"))


def _doc(snap: Snapshot, case: OverlayCase) -> dict[str, object]:
    path = predict(snap, case.src, case.dst, proto=case.proto, size=case.size)
    plain = codec.to_plain(path)
    assert isinstance(plain, dict)
    return plain


def assert_same_hops(got: dict[str, object], want: dict[str, object]) -> None:
    g, w = got["hops"], want["hops"]
    assert isinstance(g, list) and isinstance(w, list)
    for a, b in zip(g, w, strict=False):
        assert a == b, f"hop {b['index']} differs"
    assert len(g) == len(w)
    assert got == want


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_stitched_equals_single_machine(case: OverlayCase) -> None:
    snap = single(case)
    parts = stitch.split(snap, NODES)
    assert [p.root.name for p in parts if p.root] == NODES
    # Each node alone cannot see the other: the split really cut the cable.
    assert not {ns.inode for ns in parts[0].netns} & {ns.inode for ns in parts[1].netns}
    stitched = stitch.stitch(parts)
    assert stitched.nodes == tuple(NODES)
    assert_same_hops(_doc(stitched, case), _doc(snap, case))


def test_the_command_line_stitches_files(tmp_path: Path) -> None:
    case = CASES[0]
    files = []
    for i, part in enumerate(stitch.split(single(case), NODES)):
        files += ["--snapshot", str(tmp_path / f"node{i + 1}.json")]
        recorded.save(part, files[-1])
    whole = tmp_path / "machine.json"
    recorded.save(single(case), str(whole))

    def run(*snaps: str, dst: str = case.dst) -> dict[str, object]:
        out = run_json("path", "--json", *snaps, case.src, dst)
        assert isinstance(out, dict)
        return out

    assert_same_hops(run(*files), run("--snapshot", str(whole)))
    # One node alone: the wrap is predicted, then the outer packet leaves the snapshot.
    alone = run(*files[:2], dst="10.244.2.2:80")
    assert alone["verdict"]["reason"] == "left-host"  # type: ignore[index]
    kinds = [h["kind"] for h in alone["hops"]]  # type: ignore[union-attr]
    assert "vxlan" in kinds and not alone["findings"]


def test_machines_sharing_inode_numbers_are_told_apart() -> None:
    """Two real nodes both have a root namespace 4026531840: the later file's is moved."""
    case = CASES[0]
    one, two = stitch.split(single(case), NODES)
    r1, r2 = one.root, two.root
    assert r1 is not None and r2 is not None
    two = _renumber(two, r2.inode, r1.inode)
    stitched = stitch.stitch([one, two])
    assert len({ns.inode for ns in stitched.netns}) == len(stitched.netns)
    got, want = _doc(stitched, case), _doc(single(case), case)
    strip = [{k: v for k, v in h.items() if k != "netns"} for h in got["hops"]]  # type: ignore[union-attr]
    assert strip == [{k: v for k, v in h.items() if k != "netns"} for h in want["hops"]]  # type: ignore[union-attr]
    assert got["verdict"] == want["verdict"]


def _renumber(snap: Snapshot, old: int, new: int) -> Snapshot:
    netns = []
    for ns in snap.netns:
        links = tuple(
            replace(lk, peer_netns=new) if lk.peer_netns == old else lk for lk in ns.links
        )
        netns.append(replace(ns, inode=new if ns.inode == old else ns.inode, links=links))
    containers = tuple(
        replace(c, host_netns=new if c.host_netns == old else c.host_netns) for c in snap.containers
    )
    return replace(snap, netns=tuple(netns), containers=containers)


def test_the_same_node_twice_is_refused() -> None:
    one, _ = stitch.split(single(CASES[0]), NODES)
    with pytest.raises(BadInput, match="same node"):
        stitch.stitch([one, one])


def test_a_missing_node_is_named() -> None:
    one, _ = stitch.split(single(CASES[0]), NODES)
    upstream_only = replace(one, netns=tuple(ns for ns in one.netns if not ns.is_root))
    stitched = stitch.stitch([one, replace(upstream_only, hostname="other")])
    assert any("10.100.0.2, which none of the snapshots holds" in w for w in stitched.warnings)
