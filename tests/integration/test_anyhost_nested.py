"""A node inside the host (kind-like), from the lab's `nested` topology (issue 12).

`ls`, `show` and `topo` must present the node as a host inside the host with its own pods, and
`path` (same node, to the outside, the published port into the node) must agree with real
connections; the live trace must see the probe at the node's own hops.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from harness import require_root
from labkit import Lab, cntrace, lab_up, unique_name

# (source role, destination, kernel outcome: lab.probe)
PATHS = [
    ("client", "10.244.0.2:80", "ok"),  # pod to pod on the node's own bridge
    ("client", "203.0.113.10:80", "ok"),  # to the outside, masqueraded twice
    ("upstream", "192.0.2.2:8080", "ok"),  # published on the host, DNAT into the node twice
    ("host", "10.244.0.2:80", "ok"),  # routed from the host into the node
]


@pytest.fixture(scope="module")
def nested() -> Iterator[Lab]:
    require_root()
    with lab_up(unique_name("nest"), "--topology", "nested") as lab:
        yield lab


def _json(*args: str) -> Any:
    res = cntrace(*args)
    assert res.returncode in (0, 1), res.stderr
    return json.loads(res.stdout)


def test_ls_show_topo_present_a_host_inside_a_host(nested: Lab) -> None:
    node, host = f"{nested.name}.node", f"{nested.name}.host"
    rows = {r["name"]: r for r in _json("ls", "--json")["containers"]}
    assert [v["name"] for v in rows[node]["host_veths"]] == ["veth-node"]
    assert [v["netns_label"] for v in rows[f"{nested.name}.web"]["host_veths"]] == [node]
    show = _json("show", f"{nested.name}.web", "--json")
    assert show["container"]["host_netns"]["label"] == node
    hosts = {h["netns"]["label"]: h for h in _json("topo", "--json")["hosts"]}
    assert hosts[node]["inside"]["label"] == host
    assert [b["name"] for b in hosts[node]["bridges"]] == ["cni0"]
    text = cntrace("topo").stdout
    assert "host inside a host" in text


@pytest.mark.parametrize(("src", "dst", "want"), PATHS, ids=[f"{s}->{d}" for s, d, _ in PATHS])
def test_paths_agree_with_the_kernel(nested: Lab, src: str, dst: str, want: str) -> None:
    ref = f"netns:{nested.name}.host" if src == "host" else f"{nested.name}.{src}"
    doc = _json("path", ref, dst, "--json")
    ip, port = dst.split(":")
    assert nested.probe(src, ip, int(port), "tcp") == want
    assert doc["verdict"]["status"] == "delivered", doc["verdict"]


def test_live_trace_sees_the_probe_at_the_nested_hops(nested: Lab) -> None:
    node = f"{nested.name}.node"
    doc = _json("path", "--live", "--json", f"{nested.name}.client", "10.244.0.2:80")
    assert doc["mode"] == "live" and doc["verdict"]["status"] == "delivered", doc["verdict"]
    assert not [n for n in doc["notes"] if "disagrees" in n], doc["notes"]
    at_node = [h for h in doc["hops"] if h["netns_label"] == node and h["direction"] == "request"]
    assert at_node and any(h["observed"] for h in at_node), at_node
