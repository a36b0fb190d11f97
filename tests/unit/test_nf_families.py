"""The bridge, netdev and arp families (issue 20): parsing, evaluation, and the walk meeting them.

The rulesets are what the kernel printed (nft 1.0.6, `nft -j list ruleset` and `nft list chains`
in a private namespace); the walk cases add tables to the recorded lab (its host has br_netfilter
on). tests/integration/test_nf_families.py checks the same shapes against real connections.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest

from cntrace import netfilter
from cntrace.model import Packet, Snapshot
from cntrace.netfilter import families
from cntrace.path import predict
from cntrace.sources import recorded

LAB = Path(__file__).resolve().parents[2] / "fixtures" / "snapshots" / "lab" / "healthy.json"

CHAINS_TEXT = """table netdev nfhnd {
\tchain ing {
\t\ttype filter hook ingress device "nfhv0" priority filter; policy accept;
\t}
\tchain eg {
\t\ttype filter hook egress devices = { lo, nfhv0 } priority filter; policy accept;
\t}
}
table inet nfhi {
\tchain ing {
\t\ttype filter hook ingress device "nfhv0" priority filter - 10; policy accept;
\t}
}
"""


def _doc(*items: dict[str, object]) -> str:
    return json.dumps({"nftables": list(items)})


def _chain(family: str, table: str, name: str, hook: str, prio: int, handle: int = 1) -> dict:  # type: ignore[type-arg]
    body = {"family": family, "table": table, "name": name, "handle": handle, "type": "filter"}
    return {"chain": {**body, "hook": hook, "prio": prio, "policy": "accept"}}


def _rule(family: str, table: str, chain: str, *expr: object) -> dict:  # type: ignore[type-arg]
    return {"rule": {"family": family, "table": table, "chain": chain, "expr": list(expr)}}


def _m(left: object, right: object) -> dict:  # type: ignore[type-arg]
    return {"match": {"op": "==", "left": left, "right": right}}


def _p(proto: str, field: str) -> dict:  # type: ignore[type-arg]
    return {"payload": {"protocol": proto, "field": field}}


DROP, ACCEPT = {"drop": None}, {"accept": None}
TCP_DPORT, ARP_OP, ARP_TIP = _p("tcp", "dport"), _p("arp", "operation"), _p("arp", "daddr ip")
KERNEL_JSON = _doc(
    {"table": {"family": "netdev", "name": "nfhnd", "handle": 1}},
    _chain("netdev", "nfhnd", "ing", "ingress", 0),
    _chain("netdev", "nfhnd", "eg", "egress", 0, 2),
    _rule("netdev", "nfhnd", "ing", _m(_p("ip", "saddr"), "10.1.1.1"), _m(TCP_DPORT, 81), DROP),
    _rule("netdev", "nfhnd", "ing", _m(_p("ether", "type"), "arp"), {"accept": None}),
    _rule("netdev", "nfhnd", "eg", _m(_p("udp", "dport"), 99), DROP),
    {"table": {"family": "inet", "name": "nfhi", "handle": 4}},
    _chain("inet", "nfhi", "ing", "ingress", -10),
    _rule("inet", "nfhi", "ing", _m(_p("tcp", "dport"), 5), DROP),
    {"table": {"family": "arp", "name": "nfharp", "handle": 3}},
    _chain("arp", "nfharp", "in", "input", 0),
    _rule("arp", "nfharp", "in", _m(ARP_OP, "request"), _m(ARP_TIP, "10.0.0.9"), DROP),
    _rule("arp", "nfharp", "in", _m(_p("arp", "saddr ether"), "02:00:00:00:00:01"), ACCEPT),
)  # fmt: skip


def test_chain_devices_come_from_nft_text_when_the_json_has_none() -> None:
    assert families.chain_devices(CHAINS_TEXT) == {
        ("netdev", "nfhnd", "ing"): ("nfhv0",),
        ("netdev", "nfhnd", "eg"): ("lo", "nfhv0"),
        ("inet", "nfhi", "ing"): ("nfhv0",),
    }
    nf = _nf(families.with_devices(KERNEL_JSON, CHAINS_TEXT))
    assert [c.devices for c in families.family_chains(nf, "netdev", "egress", "lo")] == [
        ("lo", "nfhv0")
    ]
    assert not [w for w in nf.warnings if "not known" in w]
    blind = _nf(KERNEL_JSON)  # no devices: listed, never run, and said so
    assert families.family_chains(blind, "netdev", "ingress", "nfhv0") == ()
    assert any("device of this ingress chain is not known" in w for w in blind.warnings)


def _nf(text: str) -> netfilter.Netfilter:
    return netfilter.load(replace(_empty_ruleset(), nft_json=text))


def _empty_ruleset():  # type: ignore[no-untyped-def]
    from cntrace.model import Ruleset

    return Ruleset()


def _eval(nf: netfilter.Netfilter, family: str, hook: str, p: Packet, **kw: object):  # type: ignore[no-untyped-def]
    return families.evaluate_family(
        nf, family, hook, p, netfilter.NetnsFacts.unknown(), iif=kw.pop("iif", None), oif=None, **kw
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("packet", "verdict", "chain", "position"),
    [
        (Packet("tcp", "10.1.1.1", "10.0.0.2", 1000, 81), "drop", ("netdev", "ing"), 1),
        (Packet("tcp", "10.1.1.1", "10.0.0.2", 1000, 5), "drop", ("inet", "ing"), 1),  # -10 first
        # no rule decides: the last policy does (a policy is a decision, with no position)
        (Packet("tcp", "10.1.1.2", "10.0.0.2", 1000, 81), "accept", ("netdev", "ing"), None),
        (Packet("arp", "10.0.0.1", "10.0.0.2"), "accept", ("netdev", "ing"), 2),
    ],
)
def test_netdev_and_inet_ingress_run_in_priority_order_on_their_device(
    packet: Packet, verdict: str, chain: tuple[str, str] | None, position: int | None
) -> None:
    nf = _nf(families.with_devices(KERNEL_JSON, CHAINS_TEXT))
    res = _eval(nf, "netdev", "ingress", packet, device="nfhv0", iif="nfhv0")
    assert res is not None and res.verdict == verdict
    got = (res.deciding.family, res.deciding.chain) if res.deciding else None
    assert got == chain and (res.deciding.position if res.deciding else None) == position
    assert _eval(nf, "netdev", "ingress", packet, device="other", iif="other") is None


def test_arp_chains_read_the_operation_addresses_and_macs() -> None:
    nf = _nf(KERNEL_JSON)
    ask = Packet("arp", "10.0.0.1", "10.0.0.9")
    res = _eval(nf, "arp", "input", ask, arp_op=1, ether=("02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff"))
    assert res is not None and res.verdict == "drop" and res.deciding is not None
    assert res.deciding.position == 1
    res = _eval(nf, "arp", "input", ask, arp_op=2, ether=("02:00:00:00:00:01", "02:00:00:00:00:02"))
    assert res is not None and res.verdict == "accept" and res.deciding.position == 2  # type: ignore[union-attr]
    unknown = _eval(nf, "arp", "input", Packet("arp", "10.0.0.1", "10.0.0.2"), arp_op=2)
    assert unknown is not None and unknown.uncertain  # the MAC is not known: said so
    assert "arp.sha is not known" in unknown.uncertain[0][1]


# ---------------------------------------------------------------------- the walk


@cache
def _lab() -> Snapshot:
    return recorded.load(str(LAB))


def _with(snap: Snapshot, label: str, *items: dict[str, object]) -> Snapshot:
    """The lab with nft ``items`` added to the namespace ``label``."""
    spaces = []
    for ns in snap.netns:
        if ns.label == label:
            doc = json.loads(ns.ruleset.nft_json or '{"nftables": []}')
            doc["nftables"].extend(items)
            spaces.append(replace(ns, ruleset=replace(ns.ruleset, nft_json=json.dumps(doc))))
        else:
            spaces.append(ns)
    return replace(snap, netns=tuple(spaces))


def _bridge_drop(prio: int) -> tuple[dict[str, object], ...]:
    return (
        {"table": {"family": "bridge", "name": "t", "handle": 90}},
        _chain("bridge", "t", "fw", "forward", prio),
        _rule(
            "bridge", "t", "fw",
            _m({"meta": {"key": "iifname"}}, "veth-client"),
            _m({"meta": {"key": "oifname"}}, "veth-web"),
            _m(_p("tcp", "dport"), 80), DROP,
        ),
    )  # fmt: skip


@pytest.mark.parametrize("prio", [-200, 0, 100])
def test_a_bridge_forward_chain_drops_between_two_ports_at_any_priority(prio: int) -> None:
    snap = _with(_lab(), "cntrace-fx.host", *_bridge_drop(prio))
    path = predict(snap, "client", "web:80")
    v = path.verdict
    assert v.status == "dropped" and v.rule is not None, v
    assert (v.rule.family, v.rule.chain) == ("bridge", "fw")
    forward = [h.summary for h in path.hops if "FORWARD" in h.summary]
    # br_netfilter calls iptables' FORWARD at priority -1: before the chain at 0 and 100 only
    assert any(s.startswith("bridged FORWARD") for s in forward) == (prio > -1), forward
    assert "forward-drop" in {f.code for f in path.findings}
    assert predict(snap, "client", "web:9000", proto="udp").verdict.status == "delivered"


def test_without_br_netfilter_the_bridge_chain_still_runs_and_iptables_does_not() -> None:
    snap = _with(_lab(), "cntrace-fx.host", *_bridge_drop(0))
    host = next(n for n in snap.netns if n.label == "cntrace-fx.host")
    off = replace(host, sysctls={**host.sysctls, "net.bridge.bridge-nf-call-iptables": "0"})
    snap = replace(snap, netns=tuple(off if n is host else n for n in snap.netns))
    path = predict(snap, "client", "web:80")
    assert path.verdict.rule is not None and path.verdict.rule.family == "bridge"
    assert not [h for h in path.hops if h.summary.startswith("bridged ")]


def test_a_netdev_ingress_drop_and_an_arp_drop_on_the_path() -> None:
    ingress = _with(
        _lab(),
        "cntrace-fx.web",
        {"table": {"family": "netdev", "name": "n", "handle": 1}},
        {"chain": {**_chain("netdev", "n", "i", "ingress", 0)["chain"], "dev": "eth0"}},  # type: ignore[dict-item]
        _rule("netdev", "n", "i", _m(_p("tcp", "dport"), 80), DROP),
    )
    v = predict(ingress, "client", "web:80").verdict
    assert v.status == "dropped" and v.rule is not None and v.rule.family == "netdev"
    arp = _with(
        _lab(),
        "cntrace-fx.web",
        {"table": {"family": "arp", "name": "a", "handle": 1}},
        _chain("arp", "a", "in", "input", 0),
        _rule("arp", "a", "in", _m(_p("arp", "operation"), "request"), DROP),
    )
    path = predict(arp, "client", "web:80")
    assert path.verdict.status == "unreachable" and path.verdict.reason == "NEIGH_FAILED"
    assert path.verdict.rule is not None and path.verdict.rule.family == "arp"
    failed = [f for f in path.findings if f.code == "neighbor-failed"]
    assert failed and "a netfilter rule drops the ARP request" in failed[0].summary
