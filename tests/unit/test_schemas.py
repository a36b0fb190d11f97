"""Every --json document has a published schema, and real outputs conform to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from clirun import run_json
from harness import FIXTURES, REPO
from schemas import BY_NAME, SCHEMAS, validate

from cntrace.lab import build, spec
from cntrace.model import DISCOVERY_SCHEMA, PATH_SCHEMA

RS = FIXTURES / "rulesets"
IFACES = ["--iface", "nfup0=198.51.100.2/24", "--iface", "docker0=172.17.0.1/16"]
RULESETS = sorted(
    p for p in RS.iterdir() if p.suffix in (".save", ".json") and "addr" not in p.name
)
PACKETS = (
    "tcp 203.0.113.10:40000 -> 198.51.100.2:8080 in nfup0",
    "tcp 172.17.0.2:40000 -> 203.0.113.10:443 in docker0",
    "udp 198.51.100.2:5353 -> 172.17.0.2:53",
    "icmp 203.0.113.10 -> 198.51.100.2 in nfup0",
    "tcp [2001:db8::5]:40000 -> [2001:db8::1]:80 in nfup0",
)


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    doc = run_json(*argv, rc=(0, 1), inproc=True)
    assert isinstance(doc, dict)
    return doc


def test_every_schema_the_code_writes_is_published() -> None:
    written = set()
    for path in (REPO / "cntrace").rglob("*.py"):
        written.update(re.findall(r'"(cntrace\.[a-z.-]+/v\d+)"', path.read_text()))
    # Files (snapshot, report, lab state) are inputs, read back by cntrace; documents are output.
    inputs = {
        "cntrace.snapshot/v1",
        "cntrace.report/v1",
        "cntrace.lab/v1",
        "cntrace.redact-map/v1",
    }
    assert written - inputs == set(BY_NAME), "a --json document without a schema, or vice versa"
    assert {DISCOVERY_SCHEMA, PATH_SCHEMA} <= set(BY_NAME)
    for filename in BY_NAME.values():
        assert (SCHEMAS / filename).is_file()


@pytest.mark.parametrize("ruleset", RULESETS, ids=[p.name for p in RULESETS])
def test_rules_listing_and_walks_match_their_schemas(
    capsys: pytest.CaptureFixture[str], ruleset: Path
) -> None:
    base = ["rules", "--ruleset-file", str(ruleset), *IFACES, "--json"]
    validate(_json(capsys, *base))
    for packet in PACKETS:
        validate(_json(capsys, *base, "--packet", packet))


def test_rules_on_snapshots_match_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    snap = str(FIXTURES / "snapshots" / "lab" / "healthy.json")
    for ref in ("web", "client", "netns:4026602678"):
        validate(_json(capsys, "rules", ref, "--snapshot", snap, "--json"))
    doc = _json(
        capsys, "rules", "web", "--snapshot", snap, "--json",
        "--packet", "tcp 10.210.0.3:40000 -> 10.210.0.2:80 in eth0",
    )  # fmt: skip
    validate(doc)


def test_lab_status_matches_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from cntrace.commands import lab as lab_command

    state = build._initial_state(spec.plan("cntrace-sch", 3))
    state = replace(state, status="up", upstream_pid=1, faults=("no-masquerade",))
    monkeypatch.setattr(build, "pid_alive", lambda pid: pid is not None)
    report = lab_command._status(state)
    validate(report)
    assert report["schema"] == "cntrace.lab-status/v1" and report["missing_namespaces"]


def test_whatif_matches_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    snap = str(REPO / "fixtures" / "snapshots" / "lab" / "forward-drop.json")
    fix = "iptables -D DOCKER-USER -d 203.0.113.0/24 -j DROP"
    doc = _json(
        capsys, "path", "--snapshot", snap, "client", "203.0.113.10:80", "--what-if", fix, "--json"
    )
    validate(doc)
