"""Across nodes (issue 19): the predicted path through the VXLAN overlay and the host-gw routes
of the recorded two-node labs, every fault named at the right hop (tests/overlaycases.py)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from overlaycases import CASES, IDS, OverlayCase

from cntrace.model import Path as PathDoc
from cntrace.model import Snapshot
from cntrace.path.predict import predict
from cntrace.sources import recorded

SNAPSHOTS = Path(__file__).resolve().parents[2] / "fixtures" / "snapshots"
LAB = "cntrace-lab"


@cache
def snapshot(topology: str, state: str) -> Snapshot:
    return recorded.load(str(SNAPSHOTS / topology / f"{state}.json"))


def predicted(case: OverlayCase) -> PathDoc:
    snap = snapshot(case.topology, case.state)
    return predict(snap, case.src, case.dst, proto=case.proto, size=case.size)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_overlay_case(case: OverlayCase) -> None:
    path = predicted(case)
    assert path.verdict.status == case.status, path.verdict
    errors = [f for f in path.findings if f.severity == "error"]
    assert not [f for f in path.findings if f.code == "no-masquerade"]
    if case.code is None:
        assert not errors, errors
        return
    first = errors[0]
    assert first.code == case.code, [f.code for f in errors]
    assert first.evidence and first.fix
    assert first.hop is not None
    hop = path.hops[first.hop - 1]
    assert (hop.kind, hop.netns_label) == (case.hop, f"{LAB}.{case.node}"), hop


def test_the_wrap_says_what_the_tunnel_does() -> None:
    """VNI, outer addresses and port, the FDB and neighbour entries used, the overhead."""
    path = predict(snapshot("two-node", "healthy"), "client", "web:80")
    kinds = [h.kind for h in path.hops]
    assert kinds.count("vxlan") == 4  # wrap and unwrap, both ways
    wrap, unwrap = (h for h in path.hops if h.kind == "vxlan" and h.direction == "request")
    assert (wrap.packet.proto, wrap.packet.src, wrap.packet.dst, wrap.packet.dport) == (
        "udp",
        "10.100.0.1",
        "10.100.0.2",
        8472,
    )
    assert "VNI 1" in wrap.summary
    assert wrap.evidence[0].startswith("neighbour 10.244.2.0 lladdr 0e:fa:00:00:02:01")
    assert wrap.evidence[1] == "fdb 0e:fa:00:00:02:01 dev flannel.1 dst 10.100.0.2 self permanent"
    assert "60-byte packet + 50 bytes" in wrap.evidence[2]
    assert (unwrap.netns_label, unwrap.interface, unwrap.tap) == (
        f"{LAB}.node2",
        "flannel.1",
        "ingress",
    )
    assert unwrap.packet.dst == "10.244.2.2"
    # The outer packet is routed by node1's underlay route and leaves by eth0.
    after = path.hops[wrap.index]
    assert (after.kind, after.interface, after.packet.dst) == ("route", "eth0", "10.100.0.2")


def test_host_gw_has_no_tunnel() -> None:
    path = predict(snapshot("two-node-host-gw", "healthy"), "client", "web:80")
    assert path.verdict.status == "delivered"
    assert "vxlan" not in {h.kind for h in path.hops}
    fix = predict(snapshot("two-node-host-gw", "no-route"), "client", "web:80").findings[0].fix
    assert "10.244.2.0/24 via 10.100.0.2 dev eth0" in fix


def test_vxlan_fix_names_the_remote_node() -> None:
    f = predict(snapshot("two-node", "no-fdb"), "client", "web:80").findings[0]
    assert (
        "bridge fdb append 0e:fa:00:00:02:01 dev flannel.1 dst 10.100.0.2 self permanent" in f.fix
    )
    route = predict(snapshot("two-node", "no-route"), "client", "web:80").findings[0]
    assert "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink" in route.fix
