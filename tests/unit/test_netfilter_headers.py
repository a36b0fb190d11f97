"""Header, meta and conntrack fields decided as the kernel decides them (issue 20, round 2).

Each construct: the kernel's answer for a probe (a missing header breaks the rule; an
``exists`` test reads 0), and what stays uncertain names its reason.
"""

from __future__ import annotations

import json
from typing import Any

from cntrace.model import Packet
from cntrace.netfilter import iptables_save, nft_json
from cntrace.netfilter.matching import match_holds
from cntrace.netfilter.model import Netfilter, Rule, Table
from cntrace.netfilter.probe import Probe
from cntrace.netfilter.results import NetnsFacts
from cntrace.netfilter.state import State
from cntrace.netfilter.steps import Effect, Match

TCP = Packet("tcp", "10.0.0.1", "10.0.0.2", 40000, 80)
UDP = Packet("udp", "10.0.0.1", "10.0.0.2", 40000, 53)
ECHO = Packet("icmp", "10.0.0.1", "10.0.0.2", None, None, icmp_type=8)
TCP6 = Packet("tcp", "2001:db8::1", "2001:db8::2", 40000, 80, 6)
FACTS = NetnsFacts(
    frozenset({"10.0.0.2"}), {"eth0": ("10.0.0.2",)},
    iface_kinds={"eth0": "veth", "lo": "loopback"}, groups={"eth0": 3},
)  # fmt: skip


def _rule(exprs: list[Any], family: str = "inet") -> tuple[Netfilter, Table, Rule]:
    items: list[Any] = [
        {"table": {"family": family, "name": "t", "handle": 1}},
        {"chain": {"family": family, "table": "t", "name": "c", "handle": 1, "type": "filter",
                   "hook": "input", "prio": 0, "policy": "accept"}},
        {"rule": {"family": family, "table": "t", "chain": "c", "handle": 2, "expr": exprs}},
    ]  # fmt: skip
    parsed = nft_json.parse(json.dumps({"nftables": items}))
    table = parsed.tables[0]
    return Netfilter(tuple(parsed.tables)), table, table.chains["c"].rules[0]


def _m(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def holds(
    left: Any, right: Any, p: Packet = TCP, *, op: str = "==", iif: str | None = "eth0",
    probe: Probe | None = None, ctstate: str = "new",
) -> bool | str:  # fmt: skip
    nf, table, rule = _rule([_m(left, right, op)])
    st = State(nf, p, FACTS, ctstate, 0, None, None, None)
    st.iif, st.ct_attached = iif, True
    if probe is not None:
        st.probe = probe
    (m,) = [s for s in rule.steps if isinstance(s, Match)]
    return match_holds(st, m, table)


def test_ether_addresses_parse_as_macs_not_addresses() -> None:
    left = {"payload": {"protocol": "ether", "field": "saddr"}}
    _, _, rule = _rule([_m(left, "00:0f:54:0c:11:04")], "bridge")
    (m,) = [s for s in rule.steps if isinstance(s, Match)]
    assert m.values[0][0].lo == "00:0f:54:0c:11:04"


def test_ipv6_extension_headers_are_absent_on_a_probe() -> None:
    frag = {"exthdr": {"name": "frag"}}
    assert holds(frag, True, TCP6) is False  # exists
    assert holds(frag, False, TCP6) is True  # missing
    field = {"exthdr": {"name": "hbh", "field": "nexthdr"}}
    assert holds(field, 6, TCP6) is False
    assert holds(field, 6, TCP6, op="!=") is False  # a missing header breaks the rule
    assert holds(frag, True, TCP6, probe=Probe(fragment=True)) is True
    assert holds(frag, True, TCP) is False  # no IPv6 header at all


def test_ip_options_are_absent() -> None:
    assert holds({"ip option": {"name": "rr"}}, True) is False
    assert holds({"ip option": {"name": "ra", "field": "value"}}, 0, op="!=") is False


def test_tcp_options_of_a_syn_and_of_other_packets() -> None:
    mss = {"tcp option": {"name": "maxseg"}}
    assert holds(mss, True) is True  # a SYN carries MSS
    assert holds(mss, True, ctstate="established") is False  # an ACK carries only timestamps
    assert holds(mss, True, UDP) is False
    assert holds({"tcp option": {"name": "eol"}}, True) is False
    assert holds({"tcp option": {"name": "sack0", "field": "left"}}, 1) is False
    size = {"tcp option": {"name": "maxseg", "field": "size"}}
    assert "crafted probe" in str(holds(size, 1460))
    assert holds(size, 1460, probe=Probe(header=(("tcpopt.maxseg.size", 1460),))) is True
    assert holds({"tcp option": {"name": "maxseg", "field": "length"}}, 4) is True
    assert holds({"tcp option": {"base": 255, "len": 8, "offset": 0}}, False) is True  # missing


def test_sctp_chunks_of_a_tcp_probe_are_absent() -> None:
    assert holds({"sctp chunk": {"name": "data"}}, True) is False
    assert holds({"sctp chunk": {"name": "init", "field": "tag"}}, 1, op="!=") is False


def test_tcp_header_fields() -> None:
    def tcp(f: str) -> dict[str, Any]:
        return {"payload": {"protocol": "tcp", "field": f}}

    assert holds(tcp("ackseq"), 0) is True  # a SYN's ack_seq is 0
    assert holds(tcp("urgptr"), 0) is True
    assert holds(tcp("doff"), 10) is True  # 20 bytes of SYN options
    assert "crafted probe" in str(holds(tcp("sequence"), 0))
    assert holds(tcp("sequence"), 5, probe=Probe(header=(("tcp.sequence", 5),))) is True
    assert holds(tcp("window"), 5, UDP) is False


def test_headers_of_other_protocols_break_the_rule() -> None:
    for proto, fld in (("esp", "spi"), ("ah", "spi"), ("comp", "cpi"), ("dccp", "type"),
                       ("igmp", "type"), ("sctp", "vtag"), ("vlan", "id")):  # fmt: skip
        left = {"payload": {"protocol": proto, "field": fld}}
        assert holds(left, 1) is False, proto
        assert holds(left, 1, op="!=") is False, proto


def test_udp_length_from_the_probe_length() -> None:
    left = {"payload": {"protocol": "udp", "field": "length"}}
    assert holds(left, 40, UDP, probe=Probe(length=60)) is True
    assert "length" in str(holds(left, 40, UDP))


def test_icmp_fields_follow_nfts_hidden_type_dependency() -> None:
    def icmp(f: str) -> dict[str, Any]:
        return {"payload": {"protocol": "icmp", "field": f}}

    assert holds(icmp("mtu"), 33, ECHO) is False  # needs destination-unreachable
    assert holds(icmp("gateway"), 1, ECHO, op="!=") is False  # needs redirect
    assert holds(icmp("id"), 7, ECHO, probe=Probe(header=(("icmp.id", 7),))) is True
    assert "crafted probe" in str(holds(icmp("id"), 7, ECHO))


def test_meta_priority_groups_types_cgroup_cpu() -> None:
    assert holds({"meta": {"key": "priority"}}, "none") is True
    assert holds({"meta": {"key": "priority"}}, "1:2") is False
    assert holds({"meta": {"key": "iifgroup"}}, 3) is True
    assert holds({"meta": {"key": "oifgroup"}}, 0) is False  # no output device at input
    assert holds({"meta": {"key": "iiftype"}}, "ether") is True
    assert holds({"meta": {"key": "iiftype"}}, "loopback", iif="lo") is True
    assert holds({"meta": {"key": "cgroup"}}, 1) is False  # forwarded/input: no socket
    assert "cgroup" in str(holds({"meta": {"key": "cgroup"}}, 1, iif=None))
    assert "kernel state" in str(holds({"meta": {"key": "cpu"}}, 1))
    assert holds({"meta": {"key": "ipsec"}}, True) is False
    assert holds({"meta": {"key": "sdifname"}}, "vrf1", op="!=") is True
    nf = NetnsFacts(frozenset(), {"eth0": ()})
    left = {"meta": {"key": "iifgroup"}}
    _, table, rule = _rule([_m(left, 0)])
    st = State(Netfilter(()), TCP, nf, "new", 0, None, None, None)
    st.iif = "eth0"
    (m,) = [s for s in rule.steps if isinstance(s, Match)]
    assert "group of eth0" in str(match_holds(st, m, table))


def test_conntrack_counters_zone_helper_status_of_a_new_connection() -> None:
    assert holds({"ct": {"key": "packets"}}, 1) is True
    assert holds({"ct": {"key": "bytes", "dir": "original"}}, 60, probe=Probe(length=60)) is True
    assert holds({"ct": {"key": "bytes", "dir": "reply"}}, 0) is True
    assert "stateful" in str(holds({"ct": {"key": "packets"}}, 1, ctstate="established"))
    assert holds({"ct": {"key": "zone"}}, 0) is True
    assert holds({"ct": {"key": "helper"}}, "ftp", op="!=") is False  # no helper: break
    assert holds({"ct": {"key": "protocol"}}, "tcp") is True
    assert holds({"ct": {"key": "l3proto"}}, "ipv4") is True
    assert holds({"ct": {"key": "status"}}, "expected") is False
    assert holds({"ct": {"key": "status"}}, "dnat", op="!") is True
    assert "kernel state" in str(holds({"ct": {"key": "id"}}, 1))


def test_ipsec_socket_osf_rt() -> None:
    assert holds({"ipsec": {"dir": "in", "key": "reqid", "spnum": 0}}, 1) is False
    assert "kernel state" in str(holds({"ipsec": {"dir": "out", "key": "reqid", "spnum": 0}}, 1))
    assert holds({"socket": {"key": "transparent"}}, 0, iif=None) is True
    assert "kernel state" in str(holds({"socket": {"key": "transparent"}}, 0))
    assert holds({"osf": {"key": "name"}}, "Linux", UDP) is False
    assert "kernel state" in str(holds({"rt": {"key": "classid"}}, "cosmos"))


def test_dup_and_reset_have_no_say_in_the_verdict() -> None:
    _, _, rule = _rule([{"dup": {"addr": "192.0.2.1"}}, {"accept": None}], "ip")
    assert isinstance(rule.steps[0], Effect)
    _, _, rule = _rule([{"reset": {"tcp option": {"name": "mptcp"}}}], "ip")
    assert isinstance(rule.steps[0], Effect)


def _ipt(
    rule: str, p: Packet = TCP6, probe: Probe | None = None, iif: str | None = "eth0"
) -> list[bool | str]:

    fam = "ip6" if p.family == 6 else "ip"
    parsed = iptables_save.parse(f"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT {rule}\nCOMMIT\n")
    nf = Netfilter(tuple(parsed.tables))
    rules = parsed.tables[0].chains["INPUT"].rules
    assert rules[0].family in (fam, "ip")
    st = State(nf, p, FACTS, "new", 0, None, None, None)
    st.iif, st.ct_attached = iif, True
    if probe is not None:
        st.probe = probe
    return [match_holds(st, s, None) for s in rules[0].steps if isinstance(s, Match)]


def test_iptables_ipv6_header_modules_are_false_on_a_probe() -> None:
    assert _ipt("-m frag --fragid 0:42") == [False]
    assert _ipt("-m frag ! --fragid 0:42") == [False]
    assert _ipt("-m rt --rt-type 0") == [False]
    assert _ipt("-m dst --dst-opts 92,12:12") == [False]
    assert _ipt("-m hbh --hbh-len 8") == [False]


def test_iptables_other_protocol_headers_are_false() -> None:
    assert _ipt("-m esp --espspi 0", TCP) == [False]
    assert _ipt("-m ah ! --ahspi 0", TCP) == [False]
    assert _ipt("-p sctp -m sctp --chunk-types all DATA", TCP)[-1] is False
    assert _ipt("-p dccp -m dccp --dccp-types REQUEST", TCP)[-1] is False


def test_iptables_tcpmss_ecn_mac_cgroup() -> None:
    mss = Probe(header=(("tcpopt.maxseg.size", 1460),))
    assert _ipt("-p tcp -m tcpmss --mss 1000:1500", TCP, mss) == [True, True]
    assert _ipt("-p tcp -m ecn --ecn-tcp-cwr", TCP) == [True, False]
    assert _ipt("-m ecn --ecn-ip-ect 0", TCP) == [True]
    assert "ether.saddr" in str(_ipt("-m mac --mac-source 02:00:00:00:00:01", TCP)[0])
    assert _ipt("-m cgroup --cgroup 1", TCP) == [False]  # not locally generated: no socket


def test_walk_and_evaluate_hook_take_the_probe() -> None:
    from cntrace.netfilter.evaluate import evaluate_hook, walk

    left = {"payload": {"protocol": "tcp", "field": "sequence"}}
    nf, _, _ = _rule([_m(left, 5), {"drop": None}], "ip")
    crafted = Probe(header=(("tcp.sequence", 5),))
    assert walk(nf, TCP, FACTS, kind="input", iif="eth0", probe=crafted).verdict == "drop"
    predicted = walk(nf, TCP, FACTS, kind="input", iif="eth0")
    assert predicted.uncertain and predicted.verdict == "drop"  # assumed to hold, labelled
    other = Probe(header=(("tcp.sequence", 6),))
    res = evaluate_hook(nf, "input", TCP, FACTS, iif="eth0", oif=None, probe=other)
    assert res.verdict == "accept" and not res.uncertain
