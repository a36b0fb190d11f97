"""iptables -m hashlimit decided from /proc/net/ipt_hashlimit (issue 20), against the kernel.

    a  a0 10.85.0.1/24 =veth= b0 10.85.0.2/24  b

b's INPUT drops TCP to ports 94-95 above 1/hour (burst 2) per source address and destination
port. A first connection to 94 spends the bucket (SYN and ACK pass, the rest is over), so the
prediction for the next connection to 94 is "over the limit: dropped", and for 95, a key with no
bucket yet, "within: delivered". `cntrace path` from a reads b's rules and the hashlimit table
and must give the kernel's outcome without uncertainty; the rule's counter confirms the drop.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clirun import run_json
from harness import require_root
from hostkit import World, new_world

A, B = "10.85.0.1", "10.85.0.2"
NAME = "NFHL2"
IPT = f"""*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 94:95 -m hashlimit --hashlimit-above 1/hour --hashlimit-burst 2 \
--hashlimit-mode srcip,dstport --hashlimit-name {NAME} -j DROP
COMMIT
"""
KERNEL = {"delivered": "delivered", "dropped": "timeout"}


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_root()
    w = new_world("hl")
    try:
        w.pair(A, B, 94, 95)
        w.run("b", "iptables-nft-restore", stdin=IPT)
        yield w
    finally:
        w.down()


def _dropped(w: World) -> int:
    for line in w.run("b", "iptables-nft-save", "-c").splitlines():
        if NAME in line:
            return int(line[1:].split(":")[0])
    raise AssertionError("no hashlimit rule")


def _both(w: World, port: int) -> str:
    doc = run_json("path", f"netns:{w.ns('a')}", f"{B}:{port}", "--json", rc=(0, 1), inproc=True)
    unsure = [f for f in doc["findings"] if f["code"] == "rule-uncertain"]
    assert not unsure, unsure  # decided from the kernel's buckets, not assumed
    real = w.connect("a", B, port)
    v = doc["verdict"]
    assert KERNEL.get(v["status"], v["status"]) == real, (v, real)
    return real


def test_bucket_a_burst_emptied_is_over_and_a_fresh_key_within(world: World) -> None:
    assert world.connect("a", B, 94) == "delivered"  # SYN and ACK spend the burst of 2
    table = world.run("b", "cat", f"/proc/net/ipt_hashlimit/{NAME}")
    assert f"{A}:0->0.0.0.0:94" in table, table  # the key: source and destination port
    before = _dropped(world)
    assert _both(world, 94) == "timeout"
    assert _dropped(world) > before  # the hashlimit rule dropped the new SYN
    assert f"{A}:0->0.0.0.0:95" not in world.run("b", "cat", f"/proc/net/ipt_hashlimit/{NAME}")
    assert _both(world, 95) == "delivered"  # no bucket for (A, 95): within the limit
    assert f"{A}:0->0.0.0.0:95" in world.run("b", "cat", f"/proc/net/ipt_hashlimit/{NAME}")
