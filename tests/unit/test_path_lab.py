"""Path prediction on snapshots recorded from the real lab, healthy and under each fault.

No root needed: the predictor is pure. The cases (tests/labcases.py) are also checked against the
live lab in tests/integration/test_path_live_lab.py.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jsonschema
import pytest
from labcases import CASES, IDS, LabCase

from cntrace.errors import BadInput
from cntrace.model import Path as PathResult
from cntrace.model import Snapshot
from cntrace.path import predict
from cntrace.path.findings import CODES
from cntrace.render.path import to_document
from cntrace.sources import recorded

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "fixtures" / "snapshots" / "lab"
SCHEMA = json.loads((REPO / "docs" / "schemas" / "path.schema.json").read_text())


@cache
def snap(state: str) -> Snapshot:
    return recorded.load(str(LAB / f"{state}.json"))


def run(state: str, src: str, dst: str, **kw: object) -> PathResult:
    result = predict(snap(state), src, dst, **kw)  # type: ignore[arg-type]
    jsonschema.validate(to_document(result), SCHEMA)
    return result


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_lab_paths(case: LabCase) -> None:
    result = run(case.state, case.src, case.recorded_dst, **case.options)
    v = result.verdict
    assert v.status == case.status, v.summary
    assert v.at_hop is not None
    assert result.hops[v.at_hop - 1].kind == case.hop
    errors = [f.code for f in result.findings if f.severity == "error"]
    if case.code is None:
        assert errors == []
    else:
        assert errors[0] == case.code
        f = next(f for f in result.findings if f.code == case.code)
        assert f.evidence and f.fix and f.hop is not None


def test_every_lab_fault_is_covered() -> None:
    from cntrace.lab.faults import FAULTS

    assert set(FAULTS) <= {c.state for c in CASES}


def test_egress_shows_masquerade_with_the_uplink_address() -> None:
    result = run("healthy", "client", "203.0.113.10:80")
    nat = [h for h in result.hops if h.kind == "nat" and h.direction == "request"]
    assert len(nat) == 1
    assert nat[0].packet.src == "192.0.2.2" and nat[0].rule is not None
    assert "MASQUERADE" in nat[0].rule.text
    arrived = next(h for h in result.hops if h.kind == "socket")
    assert arrived.netns_label == "upstream" and arrived.packet.src == "192.0.2.2"
    # The reply is de-NATed back to the container's own address.
    last = result.hops[-1]
    assert last.direction == "reply" and last.packet.dst == "10.210.0.3"


def test_published_port_shows_dnat_and_reaches_web() -> None:
    result = run("healthy", "upstream", "host:8080")
    nat = next(h for h in result.hops if h.kind == "nat")
    assert (nat.packet.dst, nat.packet.dport) == ("10.210.0.2", 80)
    assert "DNAT" in nat.summary
    assert result.destination.kind == "published-port"
    assert result.destination.netns_label == "web"
    reply_nat = [h for h in result.hops if h.kind == "nat" and h.direction == "reply"]
    assert reply_nat and reply_nat[0].packet.sport == 8080


def test_bridged_traffic_passes_br_netfilter_forward() -> None:
    result = run("healthy", "client", "web:80")
    nf = [h for h in result.hops if h.kind == "netfilter" and h.direction == "request"]
    assert nf and nf[0].rule is not None and "-i lab0 -o lab0" in nf[0].rule.text
    kinds = [h.kind for h in result.hops if h.direction == "request"]
    assert kinds == ["route", "interface", "veth", "netfilter", "bridge", "veth", "socket"]


def test_mtu_mismatch_warns_even_when_small_packets_pass() -> None:
    result = run("mtu-mismatch", "client", "web:80")
    assert result.verdict.status == "delivered"
    warn = [f for f in result.findings if f.code == "mtu-mismatch"]
    assert warn and warn[0].severity == "warning" and "veth-web" in warn[0].summary


def test_forward_drop_names_the_rule_and_how_to_remove_it() -> None:
    result = run("forward-drop", "client", "203.0.113.10:80")
    assert result.verdict.rule is not None
    assert result.verdict.rule.chain == "DOCKER-USER"
    f = next(f for f in result.findings if f.code == "forward-drop")
    assert "iptables -D DOCKER-USER -d 203.0.113.0/24 -j DROP" in f.fix


def test_no_route_from_a_namespace_without_default_route() -> None:
    result = run("healthy", "upstream", "10.210.0.2:80")
    assert result.verdict.status == "no-route"
    assert [f.code for f in result.findings] == ["no-route"]


def test_bad_refs_are_bad_input() -> None:
    with pytest.raises(BadInput, match="nosuch"):
        predict(snap("healthy"), "nosuch", "web:80")
    with pytest.raises(BadInput):
        predict(snap("healthy"), "client", "web:99999")
    with pytest.raises(BadInput):
        predict(snap("healthy"), "client", "web", proto="tcp")


def test_findings_catalogue_matches_the_docs() -> None:
    doc = (REPO / "docs" / "findings.md").read_text()
    for code in CODES:
        assert f"`{code}`" in doc, f"{code} is not documented in docs/findings.md"


def test_prediction_is_deterministic() -> None:
    a = to_document(run("healthy", "client", "203.0.113.10:80"))
    b = to_document(run("healthy", "client", "203.0.113.10:80"))
    assert a == b


def test_port_not_published_lists_who_listens_on_this_host_but_not_the_source() -> None:
    """The candidates that could serve an unpublished host port are the containers on the asked
    host, not the source asking (it cannot be the fix) nor containers on another node."""

    def listeners(s: Snapshot, src: str) -> list[str]:
        p = predict(s, src, "host:80")
        (f,) = [f for f in p.findings if f.code == "port-not-published"]
        return [e.split()[0] for e in f.evidence if " listens on " in e]

    assert listeners(snap("healthy"), "web") == ["client", "api", "db", "upstream"]
    assert listeners(snap("healthy"), "upstream") == ["web", "client", "api", "db"]
    two = recorded.load(str(REPO / "fixtures" / "snapshots" / "two-node" / "healthy.json"))
    assert listeners(two, "client") == ["upstream"]  # web is on node2; client is asking


def test_port_not_published_lists_only_running_containers_ports() -> None:
    """A container gone since it was listed publishes nothing: its ports are not offered as the
    ones published on this host."""
    import dataclasses

    healthy = snap("healthy")

    def published(s: Snapshot) -> str:
        p = predict(s, "upstream", "host:80")
        (f,) = [f for f in p.findings if f.code == "port-not-published"]
        return f.evidence[-1]

    assert published(healthy) == "published ports: web: 8080->80/tcp"
    gone = tuple(
        dataclasses.replace(c, state="gone") if c.name == "web" else c for c in healthy.containers
    )
    assert published(dataclasses.replace(healthy, containers=gone)) == "published ports: none"
