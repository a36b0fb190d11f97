"""Names, masks, catch-all elements and probe fields as the netfilter tools print them (#20)."""

from __future__ import annotations

import json
from typing import Any

from cntrace.model import Packet
from cntrace.netfilter import iptables_save, nft_json
from cntrace.netfilter.matching import match_holds, vmap_verdict
from cntrace.netfilter.model import Netfilter, Rule, Table
from cntrace.netfilter.probe import Probe
from cntrace.netfilter.results import NetnsFacts
from cntrace.netfilter.state import State
from cntrace.netfilter.steps import Match, Unsupported, VerdictMap

TCP = Packet("tcp", "10.0.0.1", "10.0.0.2", 40000, 80)
FACTS = NetnsFacts(frozenset({"10.0.0.2"}), {"eth0": ("10.0.0.2",)})


def _nft(exprs: list[Any], extra: list[Any] | None = None) -> tuple[Netfilter, Table, Rule]:
    items: list[Any] = [
        {"table": {"family": "ip", "name": "t", "handle": 1}},
        {"chain": {"family": "ip", "table": "t", "name": "c", "handle": 1, "type": "filter",
                   "hook": "input", "prio": 0, "policy": "accept"}},
        *(extra or []),
        {"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 2, "expr": exprs}},
    ]  # fmt: skip
    parsed = nft_json.parse(json.dumps({"nftables": items}))
    nf = Netfilter(tuple(parsed.tables))
    table = parsed.tables[0]
    return nf, table, table.chains["c"].rules[0]


def _ipt(rule: str) -> tuple[Netfilter, Rule]:
    parsed = iptables_save.parse(f"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT {rule}\nCOMMIT\n")
    return Netfilter(tuple(parsed.tables)), parsed.tables[0].chains["INPUT"].rules[0]


def _holds(
    nf: Netfilter,
    rule: Rule,
    table: Table | None = None,
    p: Packet = TCP,
    probe: Probe | None = None,
) -> list[bool | str]:
    st = State(nf, p, FACTS, "new", 0, None, None, None)
    st.iif, st.ct_attached = "eth0", True
    if probe is not None:
        st.probe = probe
    return [match_holds(st, s, table) for s in rule.steps if isinstance(s, Match)]


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


MARK = {"meta": {"key": "mark"}}


def test_catchall_map_element_is_tried_last() -> None:
    elem = [["*", {"drop": None}], [80, {"accept": None}]]
    vmap = {"map": {"family": "ip", "table": "t", "name": "m", "type": "inet_service",
                    "map": "verdict", "elem": elem}}  # fmt: skip
    key = {"payload": {"protocol": "tcp", "field": "dport"}}
    nf, table, rule = _nft([{"vmap": {"key": key, "data": "@m"}}], [vmap])
    (vm,) = [s for s in rule.steps if isinstance(s, VerdictMap)]
    st = State(nf, TCP, FACTS, "new", 0, None, None, None)
    assert vmap_verdict(st, vm, table)[0].kind == "accept"  # type: ignore[union-attr]
    st.set_packet(TCP.rewritten(dport=81))
    assert vmap_verdict(st, vm, table)[0].kind == "drop"  # type: ignore[union-attr]


def test_catchall_set_element_and_unreadable_set_keep_the_ruleset() -> None:
    sets = [
        {"set": {"family": "ip", "table": "t", "name": "s", "type": "ipv4_addr", "elem": ["*"]}},
        {"set": {"family": "ip", "table": "t", "name": "bad", "type": "ipv4_addr",
                 "elem": [{"weird": 1}]}},
    ]  # fmt: skip
    left = {"payload": {"protocol": "ip", "field": "saddr"}}
    nf, table, rule = _nft([_match(left, "@s"), {"accept": None}], sets)
    assert _holds(nf, rule, table) == [True]
    assert table.sets["bad"].elements is None


def test_string_statement_is_opaque() -> None:
    _, _, rule = _nft(["update @m { ip saddr : tcp sport }", {"accept": None}])
    assert isinstance(rule.steps[0], Unsupported)


def test_mark_with_a_mask_is_not_an_address() -> None:
    right = {"prefix": {"addr": "0xff000000", "len": 8}}
    nf, _, rule = _nft([_match(MARK, right)])
    assert _holds(nf, rule) == [False]
    st_rule = _nft([_match(MARK, {"prefix": {"addr": 0, "len": 8}})])
    assert _holds(st_rule[0], st_rule[2]) == [True]


def test_bit_operations() -> None:
    for left, right, want in (
        ({"&": [MARK, 255]}, 1, False),
        ({"|": [MARK, 1]}, 1, True),
        ({">>": [{"|": [MARK, 0x100]}, 8]}, 1, True),
        ({"^": [MARK, 3]}, 3, True),
    ):
        nf, _, rule = _nft([_match(left, right)])
        assert _holds(nf, rule) == [want], left


def test_protocol_names_and_ct_status_case() -> None:
    for name in ("ipcomp", "mobility-header", "eigrp", "xns-idp"):
        nf, rule = _ipt(f"-p {name} -j ACCEPT")
        assert _holds(nf, rule) == [False], name
    nf, rule = _ipt("-m conntrack --ctstatus SEEN_REPLY -j ACCEPT")
    assert _holds(nf, rule) == [False]
    nf, rule = _ipt("-p icmp -m icmp --icmp-type port-unreachable -j ACCEPT")
    icmp = Packet("icmp", "10.0.0.1", "10.0.0.2", icmp_type=3)
    assert _holds(nf, rule, p=icmp, probe=Probe(icmp_code=3)) == [True, True]
    nf, _, rule = _nft(
        [_match({"payload": {"protocol": "icmp", "field": "code"}}, "port-unreachable")]
    )
    assert _holds(nf, rule, p=icmp, probe=Probe(icmp_code=1)) == [False]


def test_unknown_module_option_is_opaque_not_a_rejection() -> None:
    nf, rule = _ipt("-p tcp -m tcp --frobnicate 3 -j ACCEPT")
    assert isinstance(_holds(nf, rule)[-1], str)
    nf, rule = _ipt("-j NOSUCHTARGET --frobnicate 3")
    assert any(isinstance(s, Unsupported) for s in rule.steps)


def test_probe_fields() -> None:
    flags = {"payload": {"protocol": "tcp", "field": "flags"}}
    nf, _, rule = _nft([_match(flags, "syn", "in")])
    assert _holds(nf, rule) == [True]
    nf, _, rule = _nft([_match({"&": [flags, {"|": ["syn", "ack"]}]}, "syn")])
    assert _holds(nf, rule) == [True]
    nf, _, rule = _nft([_match({"payload": {"protocol": "ip", "field": "dscp"}}, "cs1")])
    assert _holds(nf, rule, probe=Probe(dscp=8)) == [True]
    nf, _, rule = _nft([_match({"meta": {"key": "length"}}, 60, ">")])
    assert isinstance(_holds(nf, rule)[0], str)  # the length is the sender's choice
    assert _holds(nf, rule, probe=Probe(length=61)) == [True]
    nf, _, rule = _nft([_match({"meta": {"key": "hour"}}, {"range": ["17:00", "18:00"]})])
    assert isinstance(_holds(nf, rule)[0], str)
    assert _holds(nf, rule, probe=Probe(time=17 * 3600 + 5)) == [True]
    nf, _, rule = _nft([_match({"meta": {"key": "skuid"}}, 0)])
    assert _holds(nf, rule) == [False]  # arrived on eth0: no local socket


def test_iptables_probe_matches() -> None:
    probe = Probe(length=60, dscp=10, ttl=64, time=1_750_000_000.0)  # a Sunday, 15:06:40 UTC
    for rule, want in (
        ("-m length --length 0:100", True),
        ("-m length ! --length 61:65535", True),
        ("-m tos --tos 0x28/0xff", True),
        ("-m dscp --dscp-class AF11", True),
        ("-m ttl --ttl-gt 63", True),
        ("-p tcp -m tcp --tcp-flags SYN,RST,ACK,FIN SYN", True),
        ("-p tcp -m tcp ! --syn", False),
        ("-f", False),
        ("-m time --timestart 23:00 --timestop 16:00", True),
        ("-m time --timestart 16:00 --timestop 23:00", False),
        ("-m time --weekdays Sun", True),
    ):
        nf, r = _ipt(f"{rule} -j ACCEPT")
        got = _holds(nf, r, probe=probe)
        assert all(g is True for g in got) is want, (rule, got)
    nf, r = _ipt("-m owner --uid-owner 0 -j ACCEPT")
    st = State(nf, TCP, FACTS, "new", 0, None, None, None)
    assert [match_holds(st, s, None) for s in r.steps if isinstance(s, Match)] == [True]
