"""A dormant nft table on a router (issue 20): read without crashing, and it decides nothing.

    cli c0 10.87.1.2 =veth= up0 rtr dn0 =veth= s0 10.87.2.2 srv

rtr holds a dormant table whose forward chain drops everything, an ordinary table dropping TCP
port 82 and an iptables-nft FORWARD rule dropping port 83. libnftables 1.0.6 prints a dormant
table's flag from freed memory (in-process it cut ~10% of dumps short and aborted the process
within a few hundred reads), so cntrace reads such a namespace with the nft binary and takes the
flags from the kernel. `show` and `snapshot` must succeed, read every table, mark the dormant one,
and `path` must predict what the kernel does for real connections.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import run_json, run_ok
from harness import require_root
from hostkit import World, new_world

CLI, UP, DN, SRV = "10.87.1.2", "10.87.1.1", "10.87.2.1", "10.87.2.2"
RULES = """table ip nfdodormant {
  flags dormant
  chain fw {
    type filter hook forward priority -10; policy drop;
    counter drop
  }
}
table inet nfdolive {
  chain fw {
    type filter hook forward priority 0; policy accept;
    tcp dport 82 counter drop
  }
}
"""
KERNEL = {"delivered": "delivered", "dropped": "timeout"}


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_root()
    w = new_world("dm")
    try:
        w.router(CLI, UP, DN, SRV)
        w.run("rtr", "nft", "-f", "-", stdin=RULES)
        w.run("rtr", "iptables-nft", "-A", "FORWARD", "-p", "tcp", "--dport", "83", "-j", "DROP")
        w.listen("srv", 80, 82, 83)
        yield w
    finally:
        w.down()


def test_snapshot_reads_every_table_and_the_flags_from_the_kernel(
    world: World, tmp_path: Path
) -> None:
    out = tmp_path / "snap.json"
    run_ok("snapshot", "--save", str(out), "--only", f"netns:{world.ns('rtr')}")
    snap = json.loads(out.read_text())
    (rs,) = [
        n["ruleset"]
        for n in snap["netns"]
        if world.ns("rtr") in json.dumps(n.get("names", n.get("paths", "")))
    ]
    assert not rs.get("errors"), rs["errors"]
    tables = {
        (t["family"], t["name"]): t
        for t in (i["table"] for i in json.loads(rs["nft_json"])["nftables"] if "table" in i)
    }
    assert tables[("ip", "nfdodormant")].get("flags") == ["dormant"]
    assert "flags" not in tables[("inet", "nfdolive")]
    rules = {
        i["rule"]["table"]: i["rule"] for i in json.loads(rs["nft_json"])["nftables"] if "rule" in i
    }
    assert {"nfdodormant", "nfdolive"} <= set(rules)  # a dormant table's rules are read too
    assert '"right": 82' in json.dumps(rules["nfdolive"]), rules["nfdolive"]
    assert "--dport 83 -j DROP" in rs["iptables_nft"]


def test_show_succeeds_and_rules_say_the_table_is_dormant(world: World) -> None:
    run_ok("show", f"netns:{world.ns('rtr')}")
    run_json("show", f"netns:{world.ns('rtr')}", "--json")
    doc = run_json("rules", "--netns", world.ns("rtr"), "--json")
    assert any("ip nfdodormant is dormant" in n for n in doc["ignored"]), doc["ignored"]
    forward = json.dumps(doc["hooks"]["forward"])
    assert "nfdolive" in forward and "nfdodormant" not in forward, forward
    assert "FORWARD" in forward, forward


@pytest.mark.parametrize(("port", "real"), [(80, "delivered"), (82, "timeout"), (83, "timeout")])
def test_path_through_the_router_is_predicted(world: World, port: int, real: str) -> None:
    doc = run_json("path", f"netns:{world.ns('cli')}", f"{SRV}:{port}", "--json", rc=(0, 1))
    got = world.connect("cli", SRV, port)
    assert got == real
    v = doc["verdict"]
    assert KERNEL.get(v["status"], v["status"]) == real, v
    if port != 80:
        rule = v["rule"]
        assert rule and rule["table"] == ("nfdolive" if port == 82 else "filter"), rule
