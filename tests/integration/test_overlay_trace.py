"""Live across the tunnel (issue 19): the tc programs on the underlay find the probe inside the
VXLAN payload, so it is seen leaving node1 and arriving at node2 with its outer and inner
addresses; a drop of the outer packet is attributed to it, with the rule."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from harness import require_root
from labkit import Lab, cntrace, lab_up, unique_name


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_root()
    with lab_up(unique_name("ovt"), "--topology", "two-node") as lab:
        yield lab


def _live(lab: Lab) -> dict[str, Any]:
    res = cntrace("path", "--live", "--json", f"{lab.name}.client", f"{lab.name}.web:80")
    assert res.returncode in (0, 1), res.stderr
    doc = json.loads(res.stdout)
    assert isinstance(doc, dict)
    return doc


def _hop(doc: dict[str, Any], node: str, iface: str, tap: str, direction: str) -> dict[str, Any]:
    return next(
        h
        for h in doc["hops"]
        if (h["netns_label"], h["interface"], h["tap"], h["direction"])
        == (node, iface, tap, direction)
    )


def test_the_probe_is_seen_wrapped_on_both_nodes(lab: Lab) -> None:
    doc = _live(lab)
    assert doc["verdict"]["status"] == "delivered", doc["verdict"]
    n1, n2 = f"{lab.name}.node1", f"{lab.name}.node2"
    for node, tap, src, dst, way in (
        (n1, "egress", "10.100.0.1", "10.100.0.2", "request"),
        (n2, "ingress", "10.100.0.1", "10.100.0.2", "request"),
        (n2, "egress", "10.100.0.2", "10.100.0.1", "reply"),
        (n1, "ingress", "10.100.0.2", "10.100.0.1", "reply"),
    ):
        h = _hop(doc, node, "eth0", tap, way)
        assert h["observed"] is True, h
        seen = h["observed_packet"]
        assert (seen["proto"], seen["src"], seen["dst"], seen["dport"]) == ("udp", src, dst, 8472)
        inner = "tcp 10.244.1.2" if way == "request" else "tcp 10.244.2.2:80"
        assert any(
            n.startswith(f"hop {h['index']} ") and "VNI 1" in n and f"inner {inner}" in n
            for n in doc["notes"]
        ), doc["notes"]
    # The unwrapped probe is seen on node2's flannel.1 and on in web.
    unwrap = _hop(doc, n2, "flannel.1", "ingress", "request")
    assert unwrap["observed"] is True and unwrap["observed_packet"]["dst"] == "10.244.2.2"


def test_a_drop_of_the_outer_packet_is_attributed(lab: Lab) -> None:
    assert lab.run("lab", "break", "vxlan-blocked").returncode == 0
    try:
        doc = _live(lab)
    finally:
        assert lab.run("lab", "fix", "vxlan-blocked").returncode == 0
    v = doc["verdict"]
    assert (v["status"], v["reason"]) == ("dropped", "NETFILTER_DROP"), v
    at = doc["hops"][v["at_hop"] - 1]
    assert (at["kind"], at["netns_label"]) == ("netfilter", f"{lab.name}.node2")
    assert v["rule"]["text"] == "-A INPUT -p udp -m udp --dport 8472 -j DROP"
    dropped = [n for n in doc["notes"] if n.startswith("the kernel dropped the VXLAN packet")]
    assert dropped and "outer udp 10.100.0.1:" in dropped[0] and "-> 10.100.0.2:8472" in dropped[0]
    assert "inner tcp 10.244.1.2:" in dropped[0]
    assert doc["findings"][0]["code"] == "vxlan-dropped"
