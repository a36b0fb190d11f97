"""nftables tracing, pure parts: the trace table's rules, NFT_MSG_TRACE decoding, and finding a
traced rule's text (nft's, or iptables-nft's own syntax) from recorded listings."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from cntrace.model import Packet
from cntrace.trace.nftrace import (
    parse_iptables_save,
    parse_ruleset,
    parse_trace_messages,
    table_script,
    trace_packet,
    trace_rules,
)

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "trace"


def test_tcp_trace_rules_follow_the_marker() -> None:
    rules = trace_rules(0x10, Packet("tcp", "10.0.0.2", "10.0.1.5", 40000, 80))
    assert rules[0] == "tcp flags & (syn | ack) == syn tcp sequence 16 meta nftrace set 1"
    assert "tcp ackseq 17 meta nftrace set 1" in rules
    assert any(r.startswith("icmp type") and "@th,256,32 16" in r for r in rules)
    assert all(r.endswith("meta nftrace set 1") for r in rules)


def test_udp_trace_rules_follow_the_payload_and_the_source_port() -> None:
    rules = trace_rules(0x10, Packet("udp", "10.0.0.2", "10.0.1.5", 40000, 53))
    assert rules[0].startswith("@th,64,32 0x636e5452 @th,96,32 16")
    assert "meta l4proto udp udp dport 40000 meta nftrace set 1" in rules
    icmp = trace_rules(0x10, Packet("icmp", "10.0.0.2", "10.0.1.5"))
    assert not any("udp dport" in r for r in icmp)


def test_table_hooks_before_everything() -> None:
    text = table_script("cntrace_1_2_0", 5, Packet("tcp", "a", "b", 1, 2))
    assert "table inet cntrace_1_2_0 {" in text
    assert "hook prerouting priority -350" in text and "hook output priority -350" in text
    assert text.count("add rule inet cntrace_1_2_0 pre ") == text.count(
        "add rule inet cntrace_1_2_0 out "
    )


def test_rule_texts_by_handle() -> None:
    rules = parse_ruleset((FIX / "nft-ruleset.txt").read_text())
    fwd = rules[("ip", "filter", "FORWARD")]
    assert fwd[2] == (1, "ip daddr 203.0.113.2 tcp dport 80 counter packets 0 bytes 0 drop")
    assert fwd[3][0] == 2
    assert rules[("ip", "nat", "POSTROUTING")][2][1].endswith("masquerade")
    assert set(rules) == {
        ("ip", "nat", "POSTROUTING"),
        ("ip", "nat", "PREROUTING"),
        ("ip", "filter", "FORWARD"),
    }


def test_iptables_nft_rules_in_order() -> None:
    chains = parse_iptables_save((FIX / "iptables-nft.save").read_text())
    assert chains[("filter", "FORWARD")] == [
        "-A FORWARD -d 203.0.113.2/32 -p tcp -m tcp --dport 80 -j DROP",
        "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    assert chains[("nat", "POSTROUTING")] == ["-A POSTROUTING -o trr1 -j MASQUERADE"]


def _nla(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("<HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)


def _trace_msg(**a: bytes) -> bytes:
    body = struct.pack("<BBH", 2, 0, 0)  # NFPROTO_IPV4
    for kind, payload in a.items():
        body += _nla(int(kind[1:]), payload)
    return struct.pack("<IHHII", 16 + len(body), (10 << 8) | 17, 0, 0, 0) + body


def test_trace_message_decoding() -> None:
    ip = (
        bytes.fromhex("450000280001000040060000")
        + socket.inet_aton("10.77.1.2")
        + socket.inet_aton("203.0.113.2")
    )
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 99, 0, 0x50, 0x02, 64240, 0, 0)
    verdict = _nla(1, struct.pack("!i", 0))
    msg = _trace_msg(
        a1=b"filter\0",
        a2=b"FORWARD\0",
        a3=struct.pack("!Q", 2),
        a4=struct.pack("!I", 3),
        a5=verdict,
        a6=struct.pack("!I", 7),
        a8=ip,
        a9=tcp,
        a10=struct.pack("!I", 2),
        a14=struct.pack("!I", 0x42),
    )
    other = struct.pack("<IHHII", 20, (10 << 8) | 6, 0, 0, 0) + b"\0" * 4  # not a trace
    (t,) = parse_trace_messages(other + msg, 123)
    assert (t.family, t.table, t.chain, t.handle, t.type) == ("ip", "filter", "FORWARD", 2, "rule")
    assert t.verdict == "drop" and t.trace_id == 7 and t.iif == 2 and t.mark == 0x42
    p = trace_packet(t)
    assert p is not None and (p.src, p.dst, p.sport, p.dport, p.seq) == (
        "10.77.1.2",
        "203.0.113.2",
        40000,
        80,
        99,
    )


def test_policy_and_jump_verdicts() -> None:
    pol = _trace_msg(a1=b"t\0", a2=b"c\0", a4=struct.pack("!I", 1), a16=struct.pack("!i", 1))
    jump = _trace_msg(
        a1=b"t\0",
        a2=b"c\0",
        a3=struct.pack("!Q", 9),
        a4=struct.pack("!I", 3),
        a5=_nla(1, struct.pack("!i", -3)) + _nla(2, b"DOCKER\0"),
    )
    p, j = parse_trace_messages(pol + jump, 0)
    assert (p.type, p.verdict, p.handle) == ("policy", "accept", None)
    assert j.verdict == "jump DOCKER"
