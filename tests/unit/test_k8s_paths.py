"""Paths on the recorded k8s-node lab (both variants): Service forks, Kubernetes findings, refs."""

from __future__ import annotations

import io
import json
import sys
from functools import cache
from pathlib import Path

import jsonschema
import pytest
from rich.console import Console

from cntrace.errors import BadInput
from cntrace.model import Snapshot
from cntrace.path import predict
from cntrace.render import path as render_path
from cntrace.sources import recorded
from cntrace.topology import resolve_ref

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from k8scases import CASES, UP, K8sCase  # noqa: E402

FIXTURES = {
    "bridge-iptables": REPO / "fixtures" / "k8s" / "node-bridge-iptables.json",
    "ptp-nft": REPO / "fixtures" / "k8s" / "node-ptp-nft.json",
}
SCHEMA = json.loads((REPO / "docs" / "schemas" / "path.schema.json").read_text())


@cache
def snap(name: str) -> Snapshot:
    return recorded.load(str(FIXTURES[name]))


def _src(s: Snapshot, src: str) -> str:
    if src != UP:
        return src
    return "netns:" + next(n.name for n in s.netns if n.name and n.name.endswith(".up"))


@pytest.mark.parametrize("variant", sorted(FIXTURES))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(variant: str, case: K8sCase) -> None:
    s = snap(variant)
    p = predict(s, _src(s, case.src), case.dst)
    assert p.verdict.status == case.status, p.verdict.summary
    got = [(b.pod, b.verdict.status) for b in p.branches]
    assert got == list(case.branches)
    if case.branches:
        assert sum(b.probability for b in p.branches) == pytest.approx(1.0)
    if case.service:
        assert p.service is not None and p.service.ref == case.service
        assert p.service.kind == case.kind
        assert p.service.proxy == ("iptables" if "iptables" in variant else "nftables")
        assert p.destination.kind == "service" and p.destination.name == case.service
    else:
        assert p.service is None
    codes = {f.code for f in p.findings}
    if case.finding:
        assert case.finding in codes, [f.summary for f in p.findings]
    # a fork replaces the "cannot evaluate a random rule" warning
    assert "rule-uncertain" not in codes
    if case.dest_pod:
        assert p.destination.pod == case.dest_pod
    doc = render_path.to_document(p)
    _check_schema(doc)
    buf = io.StringIO()
    render_path.render(p, Console(file=buf, width=140, color_system=None))
    if case.branches:
        assert "fork at hop" in buf.getvalue() and case.service in buf.getvalue()


def _check_schema(doc: dict[str, object]) -> None:
    jsonschema.validate(doc, SCHEMA)


def test_three_endpoint_ladder() -> None:
    """The recorded node's webapp Service: kube-proxy's 1/3, 1/2, rest ladder is a third each."""
    s = recorded.load(str(REPO / "fixtures" / "discovery" / "k8s-node.json"))
    p = predict(s, "default/client-5c7b9d8f4-q9wzt", "10.96.12.34:80")
    assert [round(b.probability, 4) for b in p.branches] == [0.3333, 0.3333, 0.3333]
    assert [b.endpoint for b in p.branches] == [
        "10.244.1.7:8080",
        "10.244.2.9:8080",
        "10.244.3.4:8080",
    ]
    assert p.branches[0].pod == "default/webapp-6d4cf56db6-x7k2p"
    assert p.service is not None and p.service.ref == "default/webapp:http"


@pytest.mark.parametrize("variant", sorted(FIXTURES))
def test_kubernetes_refs(variant: str) -> None:
    s = snap(variant)
    assert resolve_ref(s, "default/web-a").name == "default/web-a"  # type: ignore[union-attr]
    assert resolve_ref(s, "default/web-a/web").name == "default/web-a/web"  # type: ignore[union-attr]
    assert resolve_ref(s, "pod:client").name == "tools/client"  # type: ignore[union-attr]
    assert resolve_ref(s, "pod:tools/client").name == "tools/client"  # type: ignore[union-attr]
    with pytest.raises(BadInput, match="pod:nope"):
        resolve_ref(s, "pod:nope")
