"""Marker matching in user space (capture back end, nftables events), on packets built by the
same code that sends probes. NAT may rewrite addresses, ports and ICMP ids: the match must not
depend on them."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror

from cntrace.model import Packet
from cntrace.trace import inject
from cntrace.trace.packet import Matcher, parse_ip, tcp_flag_text

MARKER = inject.Marker(0x12345678)
OTHER = inject.Marker(0x0BADF00D)


def probe(proto: str, dport: int | None = 80) -> bytes:
    p = Packet(proto, "10.0.0.2", "10.0.1.5", 40000 if proto != "icmp" else 7, dport)
    return inject.build(p, MARKER)


def matcher(*markers: inject.Marker) -> Matcher:
    m = Matcher()
    for mk in markers or (MARKER,):
        m.arm(mk.nonce)
    return m


def nat(raw: bytes, src: str = "198.51.100.1", sport: int | None = 61000) -> bytes:
    """What a MASQUERADE would make of the packet."""
    pkt = IP(raw)
    pkt.src = src
    del pkt.chksum
    if pkt.haslayer(TCP) or pkt.haslayer(UDP):
        l4 = pkt.getlayer(TCP) or pkt.getlayer(UDP)
        if sport is not None:
            l4.sport = sport
        del l4.chksum
    if pkt.haslayer(ICMP):
        pkt[ICMP].id = 999
        del pkt[ICMP].chksum
    return bytes(pkt)


@pytest.mark.parametrize("proto", ["tcp", "udp", "icmp"])
def test_probe_matches_before_and_after_nat(proto: str) -> None:
    m = matcher()
    for raw in (probe(proto), nat(probe(proto))):
        p = parse_ip(raw)
        assert p is not None
        assert m.match(p) == ("marker", MARKER.nonce, False)


def test_another_runs_marker_does_not_match() -> None:
    m = matcher(OTHER)
    for proto in ("tcp", "udp", "icmp"):
        p = parse_ip(probe(proto))
        assert p is not None and m.match(p) is None


def test_tcp_marker_is_the_sequence_number() -> None:
    p = parse_ip(probe("tcp"))
    assert p is not None and p.seq == MARKER.nonce and tcp_flag_text(p.tcp_flags) == "S"
    assert IP(probe("tcp")).id == MARKER.nonce & 0xFFFF


@pytest.mark.parametrize("flags,name", [("SA", "SA"), ("RA", "RA")])
def test_syn_ack_and_rst_acknowledge_the_probe(flags: str, name: str) -> None:
    m = matcher()
    raw = bytes(
        IP(src="10.0.1.5", dst="10.0.0.2")
        / TCP(sport=80, dport=40000, flags=flags, seq=0, ack=MARKER.reply_ack)
    )
    p = parse_ip(raw)
    assert p is not None and tcp_flag_text(p.tcp_flags) == name
    assert m.match(p) == ("ack", MARKER.nonce, True)


def test_a_plain_ack_with_that_number_is_not_a_reply() -> None:
    raw = bytes(IP(src="10.0.1.5", dst="10.0.0.2") / TCP(flags="A", ack=MARKER.reply_ack))
    p = parse_ip(raw)
    assert p is not None and matcher().match(p) is None


def test_icmp_echo_reply_carries_the_payload_back() -> None:
    raw = bytes(IP(src="10.0.1.5", dst="10.0.0.2") / ICMP(type=0, id=999) / MARKER.payload)
    p = parse_ip(raw)
    assert p is not None and matcher().match(p) == ("marker", MARKER.nonce, True)


def test_udp_reply_is_matched_by_the_flow_learnt_from_the_probe() -> None:
    m = matcher()
    sent = parse_ip(nat(probe("udp", 53)))
    assert sent is not None and m.match(sent) is not None
    reply = bytes(IP(src="10.0.1.5", dst="198.51.100.1") / UDP(sport=53, dport=61000) / b"x")
    p = parse_ip(reply)
    assert p is not None and m.match(p) == ("flow", MARKER.nonce, True)
    stranger = bytes(IP(src="10.0.1.5", dst="198.51.100.1") / UDP(sport=53, dport=61001) / b"x")
    p2 = parse_ip(stranger)
    assert p2 is not None and m.match(p2) is None


@pytest.mark.parametrize("proto", ["tcp", "udp", "icmp"])
def test_icmp_error_quoting_the_probe(proto: str) -> None:
    quoted = nat(probe(proto))
    err = bytes(IP(src="10.0.9.9", dst="198.51.100.1") / ICMP(type=3, code=1) / quoted)
    p = parse_ip(err)
    assert p is not None and p.inner is not None and p.icmp_code == 1
    assert matcher().match(p) == ("icmp-quote", MARKER.nonce, True)


def test_icmp_error_quoting_only_8_bytes_is_matched_by_flow() -> None:
    """RFC 792 routers quote the IP header and 8 bytes: the UDP payload marker is cut off."""
    m = matcher()
    sent = nat(probe("udp", 53))
    p0 = parse_ip(sent)
    assert p0 is not None and m.match(p0) is not None
    quote = sent[:28]
    err = bytes(IP(src="10.0.9.9", dst="198.51.100.1") / ICMP(type=11) / quote)
    p = parse_ip(err)
    assert p is not None and m.match(p) == ("icmp-quote", MARKER.nonce, True)


def test_icmp_error_about_a_reply_is_not_the_probes() -> None:
    """The source has no socket for a raw probe's reply and answers it with an ICMP error;
    that error quotes the reply and must not be taken for the probe or its answer."""
    m = matcher()
    sent = parse_ip(probe("udp", 53))
    assert sent is not None and m.match(sent) is not None
    reply = IP(src="10.0.1.5", dst="10.0.0.2") / UDP(sport=53, dport=40000) / MARKER.payload
    err = bytes(IP(src="10.0.0.2", dst="10.0.1.5") / ICMP(type=3, code=3) / bytes(reply))
    p = parse_ip(err)
    assert p is not None and m.match(p) is None


def test_scapy_quote_layers_parse_too() -> None:
    err = (
        IP(src="10.0.9.9", dst="10.0.0.2")
        / ICMP(type=11)
        / IPerror(src="10.0.0.2", dst="10.0.1.5")
        / TCPerror(sport=40000, dport=80, seq=MARKER.nonce)
    )
    p = parse_ip(bytes(err))
    assert p is not None and matcher().match(p) == ("icmp-quote", MARKER.nonce, True)
    err2 = (
        IP(src="10.0.9.9", dst="10.0.0.2")
        / ICMP(type=3)
        / IPerror(src="10.0.0.2", dst="10.0.1.5")
        / UDPerror(sport=1, dport=2)
        / MARKER.payload
    )
    p2 = parse_ip(bytes(err2))
    assert p2 is not None and matcher().match(p2) == ("icmp-quote", MARKER.nonce, True)


def test_fragments_and_garbage_are_ignored() -> None:
    frag = bytes(IP(src="10.0.0.2", dst="10.0.1.5", frag=10, proto=6) / (b"\0" * 20))
    assert parse_ip(frag) is None
    assert parse_ip(b"\x00" * 40) is None
    assert parse_ip(b"\x45") is None


def test_new_marker_avoids_unusable_and_taken_nonces() -> None:
    taken = {inject.new_marker().nonce for _ in range(50)}
    for _ in range(200):
        n = inject.new_marker(taken).nonce
        assert 0 < n < 0xFFFFFFFF and n not in taken


def test_payload_layout_is_documented() -> None:
    assert MARKER.payload[:8] == b"cnTR\x12\x34\x56\x78"
    assert MARKER.reply_ack == 0x12345679
    assert inject.Marker(0xFFFFFFFE).reply_ack == 0xFFFFFFFF


def test_ipv6_probe_parses() -> None:
    p6 = Packet("tcp", "2001:db8::2", "2001:db8::5", 40000, 443, family=6)
    p = parse_ip(inject.build(p6, MARKER))
    assert p is not None and p.family == 6 and p.dst == "2001:db8::5" and p.seq == MARKER.nonce
    icmp6 = parse_ip(inject.build(Packet("icmp", "2001:db8::2", "2001:db8::5", 3, None, 6), MARKER))
    assert icmp6 is not None and icmp6.proto == 58 and matcher().match(icmp6) is not None
