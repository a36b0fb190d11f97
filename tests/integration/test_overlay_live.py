"""`cntrace path` on live two-node labs (issue 19): container to remote container both ways,
through the VXLAN tunnel and over host-gw routes, every fault named at the right hop, and each
prediction checked against a real connection attempt made right after (tests/overlaycases.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from harness import require_root
from labkit import Lab, cntrace, lab_up, unique_name
from overlaycases import CASES, IPS, OverlayCase

TOPOLOGIES = ("two-node", "two-node-host-gw")


@pytest.fixture(scope="module", params=TOPOLOGIES)
def two_node(request: pytest.FixtureRequest) -> Iterator[Lab]:
    require_root()
    with lab_up(unique_name("ov"), "--topology", request.param) as lab:
        yield lab


def _cases(topology: str) -> list[OverlayCase]:
    return [c for c in CASES if c.topology == topology]


def _check(lab: Lab, case: OverlayCase) -> None:
    argv = ["--proto", case.proto] + (["--size", str(case.size)] if case.size else [])
    res = cntrace("path", "--json", f"{lab.name}.{case.src}", f"{lab.name}.{case.dst}", *argv)
    assert res.returncode == (0 if case.status == "delivered" else 1), res.stderr
    doc = json.loads(res.stdout)
    assert doc["verdict"]["status"] == case.status, (case.id, doc["verdict"])
    errors = [f for f in doc["findings"] if f["severity"] == "error"]
    if case.code is None:
        assert not errors, errors
    else:
        assert errors[0]["code"] == case.code, (case.id, [f["code"] for f in errors])
        hop = doc["hops"][errors[0]["hop"] - 1]
        assert (hop["kind"], hop["netns_label"]) == (case.hop, f"{lab.name}.{case.node}")
    assert not [f for f in doc["findings"] if f["code"] == "no-masquerade"]
    got = lab.probe(case.src, IPS[case.name], case.port, case.proto, size=case.size or 0)
    assert ("timeout" if got in ("ehostunreach", "enetunreach") else got) == case.real, case.id


def test_every_case_predicted_and_proven(two_node: Lab) -> None:
    """Healthy cases first, then each fault broken, checked, fixed."""
    topology = two_node.state.topology
    cases = _cases(topology)
    for case in [c for c in cases if c.fault is None]:
        _check(two_node, case)
    for fault in dict.fromkeys(c.fault for c in cases if c.fault):
        assert two_node.run("lab", "break", fault).returncode == 0
        try:
            for case in [c for c in cases if c.fault == fault]:
                _check(two_node, case)
        finally:
            assert two_node.run("lab", "fix", fault).returncode == 0
    assert {c.fault for c in cases} - {None} == set(_faults(topology))


def _faults(topology: str) -> list[str]:
    from cntrace.lab import topologies

    return list(topologies.get(topology).faults)
