"""`cntrace path` on the recorded lab topologies (issue 12): the answers the kernel gave.

Every topology snapshot (fixtures/snapshots/<topology>/, healthy and under each fault; the router
under all three firewall back ends) is asked every connection tests/topocases.py lists; the
predicted verdict must be the outcome measured by tests/integration/test_lab_topologies.py.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from topocases import BREAKS, CHECKS

from cntrace.model import Path as PathResult
from cntrace.model import Snapshot
from cntrace.path import predict
from cntrace.sources import recorded

SNAPSHOTS = Path(__file__).resolve().parents[2] / "fixtures" / "snapshots"
# predicted status -> the connection's outcome
OUTCOME = {
    "delivered": "ok",
    "refused": "refused",
    "dropped": "timeout",
    "timeout": "timeout",
    "unreachable": "timeout",
    "no-route": "enetunreach",
}


def _files() -> list[tuple[str, str, Path]]:
    out = []
    for topology in CHECKS:
        for f in sorted((SNAPSHOTS / topology).rglob("*.json")):
            out.append((topology, f.stem, f))
    return out


@cache
def _snap(path: Path) -> Snapshot:
    return recorded.load(str(path))


def _ask(snap: Snapshot, src: str, ip: str, port: int, proto: str, size: int) -> PathResult:
    names = {c.name for c in snap.containers}
    ref = src if src in names else f"netns:cntrace-lab.{src}"
    return predict(snap, ref, f"{ip}:{port}", proto=proto, size=size or None)


@pytest.mark.parametrize(
    ("topology", "state", "path"), _files(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_predictions_match_the_kernel(topology: str, state: str, path: Path) -> None:
    snap = _snap(path)
    want = {name: c.healthy for name, c in CHECKS[topology].items()}
    want.update(BREAKS[topology].get(state, {}))
    wrong = []
    for name, c in CHECKS[topology].items():
        res = _ask(snap, c.src, c.ip, c.port, c.proto, c.size)
        got = OUTCOME.get(res.verdict.status, res.verdict.status)
        if got != want[name]:
            wrong.append(
                f"{name}: predicted {res.verdict.status} ({res.verdict.summary}), "
                f"kernel {want[name]}"
            )
    assert not wrong, f"{topology}/{state}:\n" + "\n".join(wrong)


def test_nested_node_is_a_host_inside_the_host() -> None:
    from cntrace.render import discovery_json, topo_json
    from cntrace.topology import Topology

    snap = _snap(SNAPSHOTS / "nested" / "healthy.json")
    topo = Topology(snap)
    label = {c.name: topo.label(c.host_netns) for c in snap.containers}
    assert label["node"] == "cntrace-lab.host"  # not one of its own pods
    assert label["web"] == label["client"] == "node"
    hosts = {h["netns"]["label"]: h for h in topo_json.topo_doc(snap)["hosts"]}
    assert hosts["node"]["inside"]["label"] == "cntrace-lab.host"
    assert hosts["cntrace-lab.host"]["inside"] is None
    rows = {r["name"]: r for r in discovery_json.ls_doc(snap)["containers"]}
    assert [v["name"] for v in rows["node"]["host_veths"]] == ["veth-node"]
