"""Every decision named exactly (issue 13): policies as RuleRefs, several firewalls on one hook,
and chain loops that a hostile or recorded snapshot can hold but the kernel would refuse."""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from pathlib import Path

import pytest
import schemas

from cntrace import netfilter
from cntrace.model import Packet, Ruleset, Snapshot
from cntrace.netfilter import NetnsFacts
from cntrace.path import predict
from cntrace.render import path as render_path
from cntrace.sources import recorded

ROUTER = Path(__file__).resolve().parents[2] / "fixtures" / "snapshots" / "router" / "healthy.json"
P = Packet("tcp", "10.0.0.5", "10.0.0.1", 40000, 22)
FWD = Packet("tcp", "10.1.0.5", "10.2.0.5", 40000, 80)


def _facts() -> NetnsFacts:
    addrs = {"lo": ("127.0.0.1",), "eth0": ("10.0.0.1",), "eth1": ("10.2.0.1",)}
    return NetnsFacts(frozenset(a for v in addrs.values() for a in v), addrs)


def _input(body: str) -> netfilter.Walk:
    save = "*filter\n:INPUT DROP [3:180]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    nf = netfilter.load(Ruleset(iptables_nft=save + body + "COMMIT\n"))
    return netfilter.walk(nf, P, _facts(), kind="input", iif="eth0")


def _uncertain(w: netfilter.Walk) -> list[str]:
    return [why for _, why in w.uncertain]


# --------------------------------------------------------------------------- loops


def test_goto_to_itself_is_a_loop_not_a_hang() -> None:
    w = _input(":USER - [0:0]\n-A INPUT -j USER\n-A INPUT -j ACCEPT\n-A USER -g USER\n")
    assert w.verdict == "accept"  # the loop is not taken: USER ends, INPUT accepts
    assert any("goto USER loops (USER -> USER)" in u for u in _uncertain(w)), _uncertain(w)


def test_jump_loop_a_b_a_names_the_cycle() -> None:
    body = ":A - [0:0]\n:B - [0:0]\n-A INPUT -j A\n-A A -j B\n-A B -j A\n-A B -j DROP\n"
    w = _input(body)
    assert w.verdict == "drop" and w.deciding is not None and w.deciding.chain == "B"
    assert any("jump A loops (A -> B -> A)" in u for u in _uncertain(w)), _uncertain(w)


def test_goto_loop_through_two_chains() -> None:
    w = _input(":A - [0:0]\n:B - [0:0]\n-A INPUT -j A\n-A A -g B\n-A B -g A\n")
    assert w.verdict == "drop" and w.deciding is not None and w.deciding.policy
    assert any("goto A loops (A -> B -> A)" in u for u in _uncertain(w))


def test_nft_loop_in_a_snapshot_is_bounded() -> None:
    def rule(chain: str, h: int, expr: list[object]) -> dict[str, object]:
        return {"rule": {"family": "inet", "table": "t", "chain": chain, "handle": h, "expr": expr}}

    doc = {"nftables": [
        {"table": {"family": "inet", "name": "t", "handle": 1}},
        {"chain": {"family": "inet", "table": "t", "name": "in", "handle": 1, "type": "filter",
                   "hook": "input", "prio": 0, "policy": "accept"}},
        {"chain": {"family": "inet", "table": "t", "name": "a", "handle": 2}},
        rule("in", 3, [{"jump": {"target": "a"}}]),
        rule("a", 4, [{"goto": {"target": "a"}}]),
        rule("in", 5, [{"drop": None}]),
    ]}  # fmt: skip
    nf = netfilter.load(Ruleset(nft_json=json.dumps(doc)))
    w = netfilter.walk(nf, P, _facts(), kind="input", iif="eth0")
    assert w.verdict == "drop" and w.deciding is not None and w.deciding.handle == 5
    assert any("goto a loops (a -> a)" in u for u in _uncertain(w))


# --------------------------------------------------------------------------- policies


def test_policy_is_a_rule_reference() -> None:
    w = _input("-A INPUT -p udp -j ACCEPT\n")
    d = w.deciding
    assert d is not None and d.policy and d.position is None and d.text == "policy drop"
    assert (d.backend, d.family, d.table, d.chain, d.hook, d.priority) == (
        "iptables-nft", "ip", "filter", "INPUT", "input", 0,
    )  # fmt: skip
    assert d.counters == (3, 180) and d.verdict == "drop"
    visit = w.hooks[-1].chains[0]
    assert visit.rule == d  # a chain visit names its policy too


def test_rule_reference_carries_the_base_chain_it_was_reached_from() -> None:
    w = _input(":USER - [0:0]\n-A INPUT -j USER\n-A USER -p tcp -j ACCEPT\n")
    d = w.deciding
    assert d is not None and not d.policy and (d.chain, d.position) == ("USER", 1)
    assert (d.hook, d.priority) == ("input", 0)


def _two_firewalls(
    native_prio: int, native_policy: str, ipt_rule: str, *, native_newer: bool = False
) -> netfilter.Netfilter:
    """iptables-nft filter FORWARD (priority 0) and a native inet table on the forward hook; the
    table handles say which was registered first (at equal priority the newer runs first)."""
    save = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    native = 9 if native_newer else 1
    doc = {"nftables": [
        {"table": {"family": "ip", "name": "filter", "handle": 5}},
        {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 2,
                   "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
        {"table": {"family": "inet", "name": "filter", "handle": native}},
        {"chain": {"family": "inet", "table": "filter", "name": "forward", "handle": 1,
                   "type": "filter", "hook": "forward", "prio": native_prio,
                   "policy": native_policy}},
        {"rule": {"family": "inet", "table": "filter", "chain": "forward", "handle": 2,
                  "expr": [{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}},
                                      "right": "udp"}}, {"accept": None}]}},
    ]}  # fmt: skip
    return netfilter.load(
        Ruleset(iptables_nft=save + ipt_rule + "COMMIT\n", nft_json=json.dumps(doc))
    )


def _forward(nf: netfilter.Netfilter) -> netfilter.Walk:
    return netfilter.walk(nf, FWD, _facts(), kind="forward", iif="eth0", oif="eth1")


@pytest.mark.parametrize(
    ("prio", "newer", "native_first"),
    [(-10, False, True), (0, False, False), (0, True, True), (10, True, False)],
)
def test_native_policy_drops_what_iptables_accepts(
    prio: int, newer: bool, native_first: bool
) -> None:
    nf = _two_firewalls(prio, "drop", "-A FORWARD -p tcp -j ACCEPT\n", native_newer=newer)
    w = _forward(nf)
    d = w.deciding
    assert w.verdict == "drop" and d is not None and d.policy
    assert (d.backend, d.family, d.table, d.chain, d.priority) == (
        "nftables", "inet", "filter", "forward", prio,
    )  # fmt: skip
    fwd = next(h for h in w.hooks if h.hook == "forward")
    ran = [(v.backend, v.verdict) for v in fwd.chains]
    if native_first:  # the native chain drops: iptables never sees the packet
        assert ran == [("nftables", "drop")]
    else:  # iptables accepts, which ends only its own chain
        assert ran == [("iptables-nft", "accept"), ("nftables", "drop")]


def test_both_accept_names_the_last_rule_that_accepted() -> None:
    nf = _two_firewalls(10, "accept", "-A FORWARD -p tcp -j ACCEPT\n")
    w = _forward(nf)
    assert w.verdict == "accept" and w.deciding is not None
    assert (w.deciding.backend, w.deciding.position) == ("iptables-nft", 1)


def test_iptables_policy_drop_with_native_accept() -> None:
    nf = _two_firewalls(-10, "accept", "")
    w = _forward(nf)
    assert w.verdict == "drop" and w.deciding is not None and w.deciding.policy
    assert (w.deciding.backend, w.deciding.chain) == ("iptables-nft", "FORWARD")
    assert w.policy == "iptables-nft ip filter FORWARD policy drop"


# --------------------------------------------------------------------------- blame and fix


@cache
def _router() -> Snapshot:
    return recorded.load(str(ROUTER))


def _with_native_forward_drop(snap: Snapshot) -> Snapshot:
    """The router with Debian's /etc/nftables.conf loaded next to its iptables-nft rules."""
    netns = []
    for orig in snap.netns:
        ns = orig
        if ns.name == "cntrace-lab.router":
            doc = json.loads(ns.ruleset.nft_json or '{"nftables": []}')
            for e in doc["nftables"]:  # nftables.service loaded its table before the lab's
                if "table" in e:
                    e["table"]["handle"] += 10
            doc["nftables"] += [
                {"table": {"family": "inet", "name": "filter", "handle": 1}},
                {"chain": {"family": "inet", "table": "filter", "name": "forward", "handle": 1,
                           "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
            ]  # fmt: skip
            rs = dataclasses.replace(ns.ruleset, nft_json=json.dumps(doc))
            ns = dataclasses.replace(ns, ruleset=rs)
        netns.append(ns)
    return dataclasses.replace(snap, netns=tuple(netns))


def test_debian_native_forward_policy_is_blamed_not_iptables() -> None:
    healthy = predict(_router(), "client", "10.220.2.10:80")
    assert healthy.verdict.status == "delivered"
    res = predict(_with_native_forward_drop(_router()), "client", "10.220.2.10:80")
    v = res.verdict
    assert v.status == "dropped" and v.rule is not None and v.rule.policy
    assert (v.rule.backend, v.rule.family, v.rule.table, v.rule.chain) == (
        "nftables", "inet", "filter", "forward",
    )  # fmt: skip
    hop = res.hops[(v.at_hop or 0) - 1]
    assert hop.rule == v.rule
    assert "DROP by nftables inet filter forward policy drop" in hop.summary
    f = next(f for f in res.findings if f.code == "forward-drop")
    assert "nftables inet filter forward (hook forward, priority 0) is drop" in f.summary
    assert f.fix.startswith("accept this traffic in nftables inet filter forward (its policy")
    assert "nft add rule inet filter forward ct state established,related accept && " in f.fix
    assert (
        "nft add rule inet filter forward iifname lan0 oifname dmz0 ip daddr 10.220.2.10 " in f.fix
    )
    assert "iptables" not in f.fix
    assert any(
        e.startswith("iptables-nft ip filter FORWARD (priority 0) accepted it") for e in f.evidence
    )
    doc = render_path.to_document(res)
    schemas.validate(doc)
    assert doc["verdict"]["rule"]["policy"] is True and doc["verdict"]["rule"]["position"] is None


def test_netfilter_hop_rule_is_never_null() -> None:
    """Wherever a netfilter hop exists, it names what decided (a rule or a policy)."""
    snap = _router()
    for src, dst in [("client", "10.220.2.10:80"), ("web", "10.220.1.10:80"),
                     ("upstream", "192.0.2.2:8080"), ("client", "10.220.2.20:5432")]:  # fmt: skip
        res = predict(snap, src, dst)
        for h in res.hops:
            if h.kind == "netfilter":
                assert h.rule is not None, (src, dst, h.summary)
        if res.verdict.status in ("dropped", "refused") and res.verdict.reason == "NETFILTER_DROP":
            assert res.verdict.rule is not None
