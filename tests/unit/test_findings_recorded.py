"""Findings whose state cannot be made on this machine, on the lab's recorded snapshot (issue 13).

conntrack-full: ``nf_conntrack_max`` is read-only in every namespace but the initial one, and
lowering the initial one would drop connections of everything else on the machine. The recorded
lab's host (which holds the netfilter rules on the way out) is given a table as full as the kernel
would report it, and then the raised limit the fix asks for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clirun import run_json

REPO = Path(__file__).resolve().parents[2]
HEALTHY = REPO / "fixtures" / "snapshots" / "lab" / "healthy.json"
HOST = "cntrace-fx.host"
INTERNET = "203.0.113.10:80"


def _with_conntrack(tmp_path: Path, count: int, limit: int) -> str:
    doc: dict[str, Any] = json.loads(HEALTHY.read_text())
    (host,) = [n for n in doc["netns"] if n["name"] == HOST]
    host["sysctls"]["net.netfilter.nf_conntrack_count"] = str(count)
    host["sysctls"]["net.netfilter.nf_conntrack_max"] = str(limit)
    out = tmp_path / f"conntrack-{count}-{limit}.json"
    out.write_text(json.dumps(doc))
    return str(out)


def test_a_full_conntrack_table_drops_new_connections_until_the_limit_is_raised(
    tmp_path: Path,
) -> None:
    full = _with_conntrack(tmp_path, 65536, 65536)
    doc = run_json("path", "--json", "--snapshot", full, "client", INTERNET, rc=1, inproc=True)
    v = doc["verdict"]
    hop = doc["hops"][v["at_hop"] - 1]
    assert v["status"] == "dropped" and v["reason"] == "NF_CONNTRACK_FULL", v
    assert hop["kind"] == "netfilter" and hop["netns_label"] == HOST
    assert [f["code"] for f in doc["findings"] if f["severity"] == "error"] == ["conntrack-full"]
    (f,) = [f for f in doc["findings"] if f["code"] == "conntrack-full"]
    assert f["hop"] == v["at_hop"]
    assert f["summary"] == (
        f"{HOST}'s connection-tracking table is full: new connections are dropped"
    )
    assert f["evidence"] == ["nf_conntrack_count=65536", "nf_conntrack_max=65536"]
    assert "nf_conntrack_max" in f["fix"]
    # The fix: a higher limit than the count.
    raised = _with_conntrack(tmp_path, 65536, 262144)
    ok = run_json("path", "--json", "--snapshot", raised, "client", INTERNET, inproc=True)
    assert ok["verdict"]["status"] == "delivered"
    assert not [f for f in ok["findings"] if f["severity"] == "error"]


def test_a_full_table_spares_a_namespace_without_rules_and_replies(tmp_path: Path) -> None:
    """Only a namespace with netfilter rules on the path is said to drop for a full table."""
    doc: dict[str, Any] = json.loads(HEALTHY.read_text())
    for ns in doc["netns"]:
        if ns["name"] == "cntrace-fx.web":  # no rules there
            ns["sysctls"]["net.netfilter.nf_conntrack_count"] = "10"
            ns["sysctls"]["net.netfilter.nf_conntrack_max"] = "10"
    snap = tmp_path / "web-full.json"
    snap.write_text(json.dumps(doc))
    ok = run_json("path", "--json", "--snapshot", str(snap), "client", "web:80", inproc=True)
    assert ok["verdict"]["status"] == "delivered"
    assert "conntrack-full" not in [f["code"] for f in ok["findings"]]
