"""Stateful matches decided from the kernel's state (issue 20), each against a real connection.

    a  a0 10.84.0.1/24 =veth= b0 10.84.0.2/24  b

b's INPUT holds an nft quota used up by earlier traffic and a fresh one, an iptables-nft
``-m quota`` used up by one SYN (iptables-save prints the configured quota: the rule counter
tells what is left), and an ``-m recent --rcheck`` list. `cntrace path` from a reads b's
rules and their state (quota used, /proc/net/xt_recent) and must give the kernel's outcome for
a real TCP connection; the kernel's rule counters confirm which rule decided.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from clirun import run_json
from harness import require_root
from hostkit import World, new_world

A, B = "10.84.0.1", "10.84.0.2"
NFT = """table ip nfst {
  chain in {
    type filter hook input priority filter; policy accept;
    tcp dport 90 quota over 100 bytes counter drop
    tcp dport 91 quota over 1 mbytes counter drop
  }
}
"""
IPT = f"""*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 92 -m quota --quota 60 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 92 -j DROP
-A INPUT -s {A}/32 -p tcp -m tcp --dport 93 -m recent --rcheck --name NFSTATE --rsource -j DROP
COMMIT
"""
KERNEL = {"delivered": "delivered", "dropped": "timeout"}


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_root()
    w = new_world("q")
    try:
        w.pair(A, B, 90, 91, 92, 93)
        w.run("b", "nft", "-f", "-", stdin=NFT)
        w.run("b", "iptables-nft-restore", stdin=IPT)
        yield w
    finally:
        w.down()


def _both(w: World, port: int) -> tuple[dict[str, Any], str]:
    doc = run_json("path", f"netns:{w.ns('a')}", f"{B}:{port}", "--json", rc=(0, 1), inproc=True)
    real = w.connect("a", B, port)
    v = doc["verdict"]
    assert KERNEL.get(v["status"], v["status"]) == real, (v, real)
    unsure = [f for f in doc["findings"] if f["code"] == "rule-uncertain"]
    assert not unsure, unsure  # decided from the kernel's state, not assumed
    return doc, real


def _counted(w: World, port: int) -> int:
    for line in w.run("b", "nft", "list", "table", "ip", "nfst").splitlines():
        if f"dport {port} " in line:
            return int(line.split("packets ")[1].split()[0])
    raise AssertionError(f"no rule for port {port}")


def test_nft_quota_used_up_drops_and_a_fresh_one_passes(world: World) -> None:
    assert world.connect("a", B, 90) == "delivered"  # SYN 60 + ACK 52 bytes: 112 > 100
    used = world.run("b", "nft", "list", "table", "ip", "nfst")
    assert "used 1" in used, used  # the kernel reports what was used
    before = _counted(world, 90)
    _doc, real = _both(world, 90)
    assert real == "timeout" and _counted(world, 90) > before  # the quota rule dropped it
    _doc, real = _both(world, 91)
    assert real == "delivered" and _counted(world, 91) == 0


def test_iptables_quota_used_up_by_one_syn(world: World) -> None:
    assert world.connect("a", B, 92) == "delivered"  # the SYN (60 bytes) used the quota up
    saved = world.run("b", "iptables-nft-save", "-c")
    assert "[1:60] -A INPUT -p tcp -m tcp --dport 92 -m quota --quota 60" in saved, saved
    doc, real = _both(world, 92)
    assert real == "timeout"
    rule = doc["verdict"]["rule"]
    assert rule and "-j DROP" in rule["text"] and "--dport 92" in rule["text"], rule


def test_recent_list_holding_the_senders_address(world: World) -> None:
    _doc, real = _both(world, 93)  # the list is empty: the rule does not match
    assert real == "delivered"
    world.run("b", "sh", "-c", f"echo +{A} > /proc/net/xt_recent/NFSTATE")
    doc, real = _both(world, 93)
    assert real == "timeout"
    rule = doc["verdict"]["rule"]
    assert rule and "--rcheck" in rule["text"], rule
    saved = world.run("b", "iptables-nft-save", "-c")
    assert any(ln.startswith("[") and "recent" in ln and not ln.startswith("[0:")
               for ln in saved.splitlines()), saved  # fmt: skip
