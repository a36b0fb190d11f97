"""The bridge, netdev and arp families on the path (issue 20), each prediction against the kernel.

    a  a0 10.83.0.1/24 =veth= pa [br0 in br] pb =veth= b0 10.83.0.2/24, 10.83.0.3/24  b

Rules are loaded with the real nft and iptables into these namespaces only: a bridge-family
forward drop between the two ports, a netdev ingress drop on b's veth, a netdev egress drop on
the bridge port pb, an arp-family input drop in b (neighbour resolution of 10.83.0.3 fails), and
an iptables FORWARD drop in br that applies to bridged traffic only while br_netfilter calls
iptables there (bridge-nf-call-iptables, per namespace). For each, `cntrace path` from a must
give the kernel's outcome for a real TCP connection and name the deciding chain.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from clirun import run_json
from harness import require_root, unavailable
from hostkit import World, new_world

A, B, B2 = "10.83.0.1", "10.83.0.2", "10.83.0.3"
PORTS = (80, 81, 82, 83, 84, 85)
BRIDGE_FW = """table bridge nfhbr {
  chain fw {
    type filter hook forward priority filter; policy accept;
    iifname "pa" oifname "pb" tcp dport 81 drop
  }
}
"""
NETDEV_IN = """table netdev nfhnd {
  chain ing {
    type filter hook ingress device "b0" priority filter; policy accept;
    ip daddr 10.83.0.2 tcp dport 82 drop
  }
}
"""
NETDEV_OUT = """table netdev nfhne {
  chain eg {
    type filter hook egress device "pb" priority filter; policy accept;
    tcp dport 84 drop
  }
}
"""
ARP_IN = f"""table arp nfharp {{
  chain in {{
    type filter hook input priority filter; policy accept;
    arp operation request arp daddr ip {B2} drop
  }}
}}
"""
IPT_FORWARD = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p tcp -m tcp --dport 83 -j DROP
COMMIT
"""
KERNEL = {"delivered": "delivered", "dropped": "timeout", "unreachable": "timeout"}


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_root()
    if not os.path.isdir("/proc/sys/net/bridge"):
        unavailable("needs the br_netfilter module (bridge-nf-call-iptables)")
    w = new_world("f")
    try:
        w.add("a", "br", "b")
        w.ip("br", "link add br0 type bridge")
        w.ip("br", "link set br0 up")
        w.veth("br", "pa", "a", "a0")
        w.veth("br", "pb", "b", "b0")
        w.ip("br", "link set pa master br0")
        w.ip("br", "link set pb master br0")
        w.ip("a", f"addr add {A}/24 dev a0")
        w.ip("b", f"addr add {B}/24 dev b0")
        w.ip("b", f"addr add {B2}/24 dev b0")
        w.sysctl("br", "net.bridge.bridge-nf-call-iptables", 0)
        w.listen("b", *PORTS)
        yield w
    finally:
        w.down()


def _flush(w: World) -> None:
    for role in ("a", "br", "b"):
        w.run(role, "nft", "flush", "ruleset")
        w.ip(role, "neigh flush all")
    w.run("br", "conntrack", "-F", check=False)


def _both(w: World, dst: str, port: int) -> tuple[dict[str, Any], str]:
    doc = run_json("path", f"netns:{w.ns('a')}", f"{dst}:{port}", "--json", rc=(0, 1), inproc=True)
    return doc, w.connect("a", dst, port)


def _agree(doc: dict[str, Any], real: str) -> None:
    v = doc["verdict"]
    assert KERNEL.get(v["status"], v["status"]) == real, (v, real)


@pytest.mark.parametrize(
    ("ruleset", "role", "port", "family", "chain"),
    [
        (BRIDGE_FW, "br", 81, "bridge", "fw"),
        (NETDEV_IN, "b", 82, "netdev", "ing"),
        (NETDEV_OUT, "br", 84, "netdev", "eg"),
    ],
    ids=["bridge-forward", "netdev-ingress", "netdev-egress"],
)
def test_a_frame_family_drop_is_predicted_and_named(
    world: World, ruleset: str, role: str, port: int, family: str, chain: str
) -> None:
    _flush(world)
    world.run(role, "nft", "-f", "-", stdin=ruleset)
    try:
        doc, real = _both(world, B, port)
        assert real == "timeout"
        _agree(doc, real)
        rule = doc["verdict"]["rule"]
        assert rule and (rule["family"], rule["chain"]) == (family, chain), doc["verdict"]
        codes = {f["code"] for f in doc["findings"]}
        assert codes & {"forward-drop", "input-drop", "output-drop"}, codes
        doc, real = _both(world, B, 80)  # the same chains let other traffic through
        assert real == "delivered"
        _agree(doc, real)
    finally:
        _flush(world)


def test_an_arp_drop_is_a_neighbour_failure_caused_by_the_rule(world: World) -> None:
    _flush(world)
    world.run("b", "nft", "-f", "-", stdin=ARP_IN)
    try:
        doc, real = _both(world, B2, 80)
        assert real == "timeout"
        _agree(doc, real)
        v = doc["verdict"]
        assert v["status"] == "unreachable" and v["rule"]["family"] == "arp", v
        failed = [f for f in doc["findings"] if f["code"] == "neighbor-failed"]
        assert failed and "rule drops the ARP request" in failed[0]["summary"], doc["findings"]
        doc, real = _both(world, B, 80)  # ARP for b's other address is answered
        assert real == "delivered"
        _agree(doc, real)
    finally:
        _flush(world)


@pytest.mark.parametrize("call_iptables", [1, 0], ids=["br-netfilter-on", "br-netfilter-off"])
def test_br_netfilter_decides_whether_iptables_forward_sees_bridged_traffic(
    world: World, call_iptables: int
) -> None:
    _flush(world)
    world.sysctl("br", "net.bridge.bridge-nf-call-iptables", call_iptables)
    world.run("br", "iptables-nft-restore", stdin=IPT_FORWARD)
    try:
        doc, real = _both(world, B, 83)
        assert real == ("timeout" if call_iptables else "delivered")
        _agree(doc, real)
        if call_iptables:
            rule = doc["verdict"]["rule"]
            assert rule and (rule["table"], rule["chain"]) == ("filter", "FORWARD"), rule
    finally:
        world.sysctl("br", "net.bridge.bridge-nf-call-iptables", 0)
        _flush(world)


@pytest.mark.parametrize("priority", [-200, 100], ids=["bridge-chain-first", "iptables-first"])
def test_bridge_chain_and_br_netfilter_run_in_priority_order(world: World, priority: int) -> None:
    """Both drop port 85: whichever the kernel runs first counts the packet and is named."""
    _flush(world)
    world.sysctl("br", "net.bridge.bridge-nf-call-iptables", 1)
    world.run("br", "iptables-nft-restore", stdin=IPT_FORWARD.replace("83", "85"))
    table = f"""table bridge nfhbo {{
  chain fw {{
    type filter hook forward priority {priority}; policy accept;
    tcp dport 85 counter drop
  }}
}}
"""
    world.run("br", "nft", "-f", "-", stdin=table)
    try:
        doc, real = _both(world, B, 85)
        assert real == "timeout"
        _agree(doc, real)
        counted = "packets 0 " not in world.run("br", "nft", "list", "table", "bridge", "nfhbo")
        assert counted == (priority < -1)  # br_netfilter calls FORWARD at priority -1
        rule = doc["verdict"]["rule"]
        want = ("bridge", "fw") if counted else ("ip", "FORWARD")
        assert rule and (rule["family"], rule["chain"]) == want, rule
    finally:
        world.sysctl("br", "net.bridge.bridge-nf-call-iptables", 0)
        _flush(world)
