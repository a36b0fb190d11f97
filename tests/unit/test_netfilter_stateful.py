"""Stateful matches decided from the kernel state a Snapshot recorded (issue 20, stateful).

One test per construct: the verdict the kernel's state implies (quota used, xt_recent lists,
the conntrack table), and the reason where the kernel does not expose the state.
"""

from __future__ import annotations

import json
from typing import Any

from cntrace import netfilter
from cntrace.model import Packet, Ruleset
from cntrace.netfilter.probe import Probe
from cntrace.netfilter.results import HookResult, NetnsFacts
from cntrace.sources.rulesets import _RECENT_NAME

UDP = Packet("udp", "10.0.0.1", "10.0.0.2", 40000, 53)
FACTS = NetnsFacts(frozenset({"10.0.0.2"}), {"eth0": ("10.0.0.2",)})
HEAD = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
# xt_recent's /proc format: src=ADDR ttl: T last_seen: J oldest_pkt: I J1, J2, ...
RECENT = (
    "src=10.0.0.1 ttl: 64 last_seen: 10000 oldest_pkt: 3 9000, 9500, 10000\n"
    "src=10.0.0.9 ttl: 64 last_seen: 5000 oldest_pkt: 1 5000\n"
)
CONNTRACK = (
    "ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1000 dport=22 "
    "src=10.0.0.2 dst=10.0.0.1 sport=22 dport=1000 [ASSURED] mark=0 zone=0 use=2\n"
    "ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1001 dport=22 "
    "src=10.0.0.2 dst=10.0.0.1 sport=22 dport=1001 [ASSURED] mark=0 zone=0 use=2\n"
    "ipv4     2 tcp      6 100 TIME_WAIT src=10.0.0.1 dst=10.0.0.2 sport=1002 dport=22 "
    "src=10.0.0.2 dst=10.0.0.1 sport=22 dport=1002 [ASSURED] mark=0 zone=0 use=2\n"
    "ipv4     2 udp      17 20 src=10.0.0.1 dst=10.0.0.2 sport=1003 dport=53 "
    "src=10.0.0.2 dst=10.0.0.1 sport=53 dport=1003 mark=0 zone=0 use=2\n"
)
SSH = Packet("tcp", "10.0.0.1", "10.0.0.2", 2000, 22)


def _ipt(rule: str, state: tuple[tuple[str, str], ...] = (), counters: str = "") -> Ruleset:
    text = f"{HEAD}{counters}-A INPUT {rule} -j DROP\nCOMMIT\n"
    return Ruleset(iptables_nft=text, kernel_state=state)


def _nft(exprs: list[Any], objects: list[Any] | None = None) -> Ruleset:
    items: list[Any] = [
        {"table": {"family": "ip", "name": "t", "handle": 1}},
        *(objects or []),
        {"chain": {"family": "ip", "table": "t", "name": "c", "handle": 1, "type": "filter",
                   "hook": "input", "prio": 0, "policy": "accept"}},
        {"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 2,
                  "expr": [*exprs, {"drop": None}]}},
    ]  # fmt: skip
    return Ruleset(nft_json=json.dumps({"nftables": items}))


def _run(rs: Ruleset, p: Packet = UDP, length: int | None = None) -> HookResult:
    nf = netfilter.load(rs)
    probe = Probe(length=length) if length is not None else None
    return netfilter.evaluate_hook(nf, "input", p, FACTS, iif="eth0", oif=None, probe=probe)


def _verdict(rs: Ruleset, p: Packet = UDP, length: int | None = None) -> str:
    res = _run(rs, p, length)
    assert not res.uncertain, res.uncertain
    return res.verdict


def _why(rs: Ruleset, p: Packet = UDP, length: int | None = None) -> str:
    res = _run(rs, p, length)
    assert res.uncertain, "expected an uncertain walk"
    return res.uncertain[0][1]


# --------------------------------------------------------------------------- nft quota


def _quota(val: int, used: int, inv: bool = False) -> dict[str, Any]:
    q: dict[str, Any] = {"val": val, "val_unit": "bytes", "used": used, "used_unit": "bytes"}
    if inv:
        q["inv"] = True
    return {"quota": q}


def test_nft_quota_exhausted_breaks_the_rule_and_over_matches() -> None:
    assert _verdict(_nft([_quota(1000, 1000)])) == "accept"  # until 1000: used up
    assert _verdict(_nft([_quota(1000, 1000, inv=True)])) == "drop"  # over 1000
    assert _verdict(_nft([_quota(1000, 990)]), length=28) == "accept"  # 990 + 28 >= 1000


def test_nft_quota_fresh_holds_for_any_packet() -> None:
    assert _verdict(_nft([_quota(100000, 0)])) == "drop"
    assert _verdict(_nft([_quota(100000, 0, inv=True)])) == "accept"


def test_nft_quota_units_and_unknown_length() -> None:
    q = {"quota": {"val": 1, "val_unit": "kbytes", "used": 1000, "used_unit": "bytes"}}
    assert _verdict(_nft([q]), length=20) == "drop"  # 1000 + 20 < 1024
    assert "the probe's length decides" in _why(_nft([q]))


def test_nft_named_quota_object() -> None:
    obj = {"quota": {"family": "ip", "name": "q1", "table": "t", "handle": 3,
                     "bytes": 2000, "used": 1968, "inv": True}}  # fmt: skip
    assert _verdict(_nft([{"quota": "q1"}], [obj]), length=40) == "drop"  # over: 2008 >= 2000
    assert "not in the ruleset" in _why(_nft([{"quota": "q2"}], [obj]))


# --------------------------------------------------------------------------- iptables quota


def test_iptables_quota_exhausted_by_its_counter() -> None:
    # iptables-save prints the configured quota, not what is left: the counter bounds it
    rs = _ipt("-m quota --quota 1000", counters="[3:984] ")
    assert _verdict(rs, length=328) == "accept"
    assert _verdict(_ipt("-m quota ! --quota 1000", counters="[1:328] "), length=328) == "drop"


def test_iptables_quota_left_is_uncertain_with_the_bound() -> None:
    why = _why(_ipt("-m quota --quota 100000", counters="[1:100] "), length=328)
    assert "at most 99900 of 100000 bytes left" in why
    assert "does not expose" in why


# --------------------------------------------------------------------------- recent


def _recent(rule: str, jiffies: str = "10100 250") -> Ruleset:
    state = (("xt_recent/SSH", RECENT), ("jiffies", jiffies))
    return _ipt(f"-m recent {rule} --name SSH --mask 255.255.255.255 --rsource", state)


def test_recent_rcheck_finds_the_source_address() -> None:
    assert _verdict(_recent("--rcheck")) == "drop"
    assert _verdict(_recent("--rcheck"), Packet("udp", "10.0.0.7", "10.0.0.2", 1, 53)) == "accept"
    assert _verdict(_recent("! --rcheck")) == "accept"


def test_recent_seconds_and_hitcount() -> None:
    # now 10100, HZ 250: --seconds 2 reaches back to 9600 (one hit), 5 to 8850 (three)
    assert _verdict(_recent("--rcheck --seconds 2")) == "drop"
    assert _verdict(_recent("--rcheck --seconds 2 --hitcount 2")) == "accept"
    assert _verdict(_recent("--update --seconds 5 --hitcount 3")) == "drop"
    assert _verdict(_recent("--rcheck --hitcount 4")) == "accept"
    old = Packet("udp", "10.0.0.9", "10.0.0.2", 1, 53)
    assert _verdict(_recent("--rcheck --seconds 10"), old) == "accept"  # seen 20 s ago


def test_recent_set_always_holds_and_rdest_reads_the_destination() -> None:
    assert _verdict(_ipt("-m recent --set --name X --rsource")) == "drop"
    rs = _recent("--rcheck").iptables_nft or ""
    dest = _ipt("-m recent --rcheck --name SSH --rdest", (("xt_recent/SSH", RECENT),))
    assert "--rsource" in rs
    assert _verdict(dest, Packet("udp", "10.0.0.2", "10.0.0.1", 53, 1)) == "drop"
    assert _verdict(dest) == "accept"


def test_recent_list_not_read_is_uncertain() -> None:
    assert "was not read" in _why(_ipt("-m recent --rcheck --name OTHER --rsource"))
    assert "jiffies" in _why(_ipt("-m recent --rcheck --seconds 5 --name SSH --rsource",
                                  (("xt_recent/SSH", RECENT),)))  # fmt: skip


def test_recent_names_found_for_reading() -> None:
    line = "-A INPUT -m recent --rcheck --seconds 60 --name SSH --mask 255.255.255.255 --rsource"
    m = _RECENT_NAME.search(line)
    assert m is not None and m.group(1) == "SSH"


# --------------------------------------------------------------------------- connlimit, ct count


def test_connlimit_counts_the_keys_connections_and_the_new_one() -> None:
    state = (("nf_conntrack", CONNTRACK),)
    rule = "-p tcp -m tcp --dport 22 -m connlimit --connlimit-above {} --connlimit-mask 32 " \
        "--connlimit-saddr"  # fmt: skip
    # two established ssh connections (TIME_WAIT and the udp flow are not counted) + the probe
    assert _verdict(_ipt(rule.format(2), state), SSH) == "drop"
    assert _verdict(_ipt(rule.format(3), state), SSH) == "accept"
    other = Packet("tcp", "10.0.0.5", "10.0.0.2", 2000, 22)
    assert _verdict(_ipt(rule.format(0), state), other) == "drop"  # its own connection only
    upto = rule.replace("above", "upto")
    assert _verdict(_ipt(upto.format(3), state), SSH) == "drop"
    assert "conntrack table was not read" in _why(_ipt(rule.format(2)), SSH)


def test_nft_ct_count_counts_connections_through_the_rule() -> None:
    tcp22 = {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                       "right": 22}}  # fmt: skip
    for val, inv, want in ((2, True, "drop"), (3, True, "accept"), (2, False, "accept")):
        rs = _nft([tcp22, {"ct count": {"val": val, "inv": inv}}])
        rs = Ruleset(nft_json=rs.nft_json, kernel_state=(("nf_conntrack", CONNTRACK),))
        assert _verdict(rs, SSH) == want, (val, inv)


# --------------------------------------------------------------------------- what stays unknown


def test_limit_nth_and_numgen_inc_name_what_the_kernel_hides() -> None:
    assert "token bucket" in _why(_ipt("-m limit --limit 5/sec"))
    assert "token bucket" in _why(_nft([{"limit": {"rate": 1, "burst": 5, "per": "second"}}]))
    assert "packet counter" in _why(_ipt("-m statistic --mode nth --every 2 --packet 0"))
    inc = {"match": {"op": "==", "left": {"numgen": {"mode": "inc", "mod": 2, "offset": 0}},
                     "right": 0}}  # fmt: skip
    assert "does not expose the counter" in _why(_nft([inc]))
