"""Several firewalls on one forward hook (issue 13): cntrace's verdict and deciding reference
against a real TCP connection, and the kernel's own counters.

    cli c0 10.87.1.10/24 =veth= up0 10.87.1.1/24 rtr dn0 10.87.2.1/24 =veth= s0 10.87.2.10/24 srv

In rtr a native nftables table (``table inet hoN``), iptables-nft's filter FORWARD and
iptables-legacy's filter FORWARD are loaded in several orders of priority and verdict: an accept
in one and a drop in another, both accept, a policy drop, different and equal priorities (where
the chain registered last runs first). For each case `cntrace path --json` from cli (a live
snapshot, through the CLI) must give the verdict the real connection gets and name the chain
that decided, rule or policy; where two chains both drop, the kernel's counters say which one
saw the packet. A policy drop's printed fix is run and the connection must then work.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from clirun import run_json
from harness import require_root
from hostkit import World, new_world

CLI, UP, DN, SRV = "10.87.1.10", "10.87.1.1", "10.87.2.1", "10.87.2.10"
PORT = 80
PREDICTED = {"delivered": "delivered", "dropped": "timeout", "timeout": "timeout"}


def nft(prio: int, policy: str = "accept", rule: str = "", table: str = "ho") -> str:
    return (
        f"table inet {table} {{\n  chain forward {{\n    type filter hook forward priority {prio}; "
        f"policy {policy};\n    {rule}\n  }}\n}}\n"
    )


def ipt(policy: str = "ACCEPT", rule: str = "") -> str:
    body = f"-A FORWARD {rule}\n" if rule else ""
    head = f"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD {policy} [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    return f"{head}{body}COMMIT\n"


ACCEPT_80 = f"-p tcp -m tcp --dport {PORT} -j ACCEPT"
DROP_80 = f"-p tcp -m tcp --dport {PORT} -j DROP"
NFT_ACCEPT = f"tcp dport {PORT} counter accept"
NFT_DROP = f"tcp dport {PORT} counter drop"


@dataclass(frozen=True)
class Case:
    """Rulesets loaded in ``order``; the outcome; the decision (backend, table, chain, policy)."""

    name: str
    order: tuple[tuple[str, str], ...]  # (nft | iptables-nft | iptables-legacy, ruleset text)
    outcome: str  # delivered | timeout
    decided: tuple[str, str, str, bool] | None  # what verdict.rule (or the hop) names
    silent: tuple[str, ...] = ()  # back ends whose drop rule the kernel never reached


NATIVE = ("nftables", "ho", "forward")
IPT_NFT = ("iptables-nft", "filter", "FORWARD")
IPT_LEGACY = ("iptables-legacy", "filter", "FORWARD")

CASES = (
    # Debian's /etc/nftables.conf (loaded at boot, so older) next to Docker's accept.
    Case("native-policy-drop-iptables-accepts", (("nft", nft(0, "drop")),
         ("iptables-nft", ipt(rule=ACCEPT_80))), "timeout", (*NATIVE, True)),
    Case("native-accepts-iptables-policy-drop", (("nft", nft(0, rule=NFT_ACCEPT)),
         ("iptables-nft", ipt("DROP"))), "timeout", (*IPT_NFT, True)),
    Case("both-accept-native-last", (("iptables-nft", ipt(rule=ACCEPT_80)),
         ("nft", nft(10, rule=NFT_ACCEPT))), "delivered", (*NATIVE, False)),
    Case("both-accept-iptables-last", (("iptables-nft", ipt(rule=ACCEPT_80)),
         ("nft", nft(-10, rule=NFT_ACCEPT))), "delivered", (*IPT_NFT, False)),
    Case("both-drop-native-first", (("iptables-nft", ipt(rule=DROP_80)),
         ("nft", nft(-10, rule=NFT_DROP))), "timeout", (*NATIVE, False), ("iptables-nft",)),
    Case("both-drop-iptables-first", (("iptables-nft", ipt(rule=DROP_80)),
         ("nft", nft(10, rule=NFT_DROP))), "timeout", (*IPT_NFT, False), ("nft",)),
    # Equal priorities: the chain registered last runs first.
    Case("equal-prio-iptables-newer", (("nft", nft(0, rule=NFT_DROP)),
         ("iptables-nft", ipt(rule=DROP_80))), "timeout", (*IPT_NFT, False), ("nft",)),
    Case("equal-prio-native-newer", (("iptables-nft", ipt(rule=DROP_80)),
         ("nft", nft(0, rule=NFT_DROP))), "timeout", (*NATIVE, False), ("iptables-nft",)),
    # iptables-legacy's tables hook in too (registered first here: the world loads it at once).
    Case("legacy-policy-drop-native-accepts", (("iptables-legacy", ipt("DROP")),
         ("nft", nft(-10, rule=NFT_ACCEPT))), "timeout", (*IPT_LEGACY, True)),
    Case("legacy-accepts-native-policy-drop", (("iptables-legacy", ipt(rule=ACCEPT_80)),
         ("nft", nft(10, "drop"))), "timeout", (*NATIVE, True)),
    Case("three-accept", (("iptables-legacy", ipt(rule=ACCEPT_80)),
         ("iptables-nft", ipt(rule=ACCEPT_80)), ("nft", nft(10, rule=NFT_ACCEPT))),
         "delivered", (*NATIVE, False)),
    Case("legacy-drop-before-native", (("iptables-legacy", ipt(rule=DROP_80)),
         ("nft", nft(10, rule=NFT_DROP))), "timeout", (*IPT_LEGACY, False), ("nft",)),
    Case("native-drop-before-legacy", (("iptables-legacy", ipt(rule=DROP_80)),
         ("nft", nft(-10, rule=NFT_DROP))), "timeout", (*NATIVE, False), ("iptables-legacy",)),
)  # fmt: skip

EMPTY_LEGACY = ipt()


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_root()
    w = new_world("ho")
    try:
        w.router(CLI, UP, DN, SRV)
        w.listen("srv", PORT)
        # iptables-legacy's filter table registers its hooks when first used: do it now, so it
        # is the oldest chain on the hook in every case, as cntrace assumes.
        w.run("rtr", "iptables-legacy-restore", stdin=EMPTY_LEGACY)
        yield w
    finally:
        w.down()


def _reset(w: World) -> None:
    w.run("rtr", "nft", "flush", "ruleset")
    w.run("rtr", "iptables-legacy-restore", stdin=EMPTY_LEGACY)


def _load(w: World, backend: str, text: str) -> None:
    if backend == "nft":
        w.run("rtr", "nft", "-f", "-", stdin=text)
    else:
        w.run("rtr", f"{backend}-restore", stdin=text)


def _predict(w: World) -> Any:
    return run_json(
        "path", f"netns:{w.ns('cli')}", f"{SRV}:{PORT}", "--json", rc=(0, 1), inproc=True
    )


def _decision(doc: Any) -> Any:
    """verdict.rule where the packet was dropped; else the forward hop's rule."""
    if doc["verdict"]["rule"] is not None:
        return doc["verdict"]["rule"]
    fwd = [h for h in doc["hops"] if h["kind"] == "netfilter" and "FORWARD" in h["summary"]]
    return fwd[0]["rule"] if fwd else None


def _counted(w: World, backend: str) -> int:
    """Packets the back end's drop-on-port-80 rule counted (the kernel's own word)."""
    if backend == "nft":
        out = w.run("rtr", "nft", "list", "chain", "inet", "ho", "forward")
        line = next(ln for ln in out.splitlines() if "counter" in ln)
        return int(line.split("packets")[1].split()[0])
    out = w.run("rtr", f"{backend}-save", "-c", "-t", "filter")
    line = next(ln for ln in out.splitlines() if f"--dport {PORT}" in ln)
    return int(line.split("]")[0].lstrip("[").split(":")[0])


def _fix_commands(doc: Any) -> list[list[str]]:
    """The commands of the forward-drop finding's fix (``...: CMD && CMD; or ...``)."""
    fix = next(f["fix"] for f in doc["findings"] if f["code"] == "forward-drop")
    run = fix.split("): ", 1)[1].split("; or ", 1)[0]
    return [shlex.split(c) for c in run.split(" && ")]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hook_order_matches_the_kernel(world: World, case: Case) -> None:
    _reset(world)
    try:
        for backend, text in case.order:
            _load(world, backend, text)
        doc = _predict(world)
        real = world.connect("cli", SRV, PORT)
        said = PREDICTED.get(doc["verdict"]["status"], doc["verdict"]["status"])
        summary = doc["verdict"]["summary"]
        assert (said, real) == (case.outcome, case.outcome), (
            f"predicted {doc['verdict']['status']} ({summary}), kernel {real}"
        )
        rule = _decision(doc)
        assert rule is not None, f"no deciding reference: {summary}"
        got = (rule["backend"], rule["table"], rule["chain"], rule["policy"])
        assert got == case.decided, f"decided by {got}, expected {case.decided}"
        assert rule["hook"] == "forward" and isinstance(rule["priority"], int)
        if rule["policy"]:
            assert rule["position"] is None and rule["text"] == f"policy {rule['verdict']}"
        for backend in case.silent:  # the later chain never saw the packet
            assert _counted(world, backend) == 0, f"{backend} counted the packet"
        if case.decided is not None and not case.decided[3] and case.outcome == "timeout":
            decider = {"nftables": "nft"}.get(case.decided[0], case.decided[0])
            assert _counted(world, decider) > 0, f"{decider} did not count the packet"
        if case.outcome == "timeout" and case.decided is not None and case.decided[3]:
            cmds = _fix_commands(doc)
            tool = {"nftables": "nft"}.get(case.decided[0], case.decided[0])
            assert {c[0] for c in cmds} == {tool}, f"fix {cmds} for a {case.decided[0]} policy"
            for cmd in cmds:
                world.run("rtr", *cmd)
            assert world.connect("cli", SRV, PORT) == "delivered", f"fix did not work: {cmds}"
            after = _predict(world)
            assert after["verdict"]["status"] == "delivered", after["verdict"]["summary"]
    finally:
        _reset(world)
