"""The probe builder (struct) gives scapy's bytes for every kind of probe cntrace sends."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6

from cntrace.model import Packet
from cntrace.trace import inject

NONCES = (1, 0x1234, 0xDEADBEEF, 0xFFFFFFFE, 0x0000FFFF, 0x7FFF0001)


def scapy_probe(packet: Packet, marker: inject.Marker, size: int) -> bytes:
    """What cntrace built with scapy before the struct builder replaced it."""
    l3: IP | IPv6
    if packet.family == 6:
        l3 = IPv6(src=packet.src, dst=packet.dst, hlim=64)
    else:
        l3 = IP(src=packet.src, dst=packet.dst, ttl=64, id=marker.nonce & 0xFFFF, flags="DF")
    if packet.proto == "tcp":
        l4 = TCP(
            sport=packet.sport,
            dport=packet.dport,
            flags="S",
            seq=marker.nonce,
            window=64240,
            options=[("MSS", 1460)],
        )
        return bytes(l3 / l4)
    header = (40 if packet.family == 6 else 20) + 8
    payload = marker.payload + b"\0" * max(0, size - header - len(marker.payload))
    if packet.proto == "udp":
        return bytes(l3 / UDP(sport=packet.sport, dport=packet.dport) / payload)
    ident = (packet.sport or 0) & 0xFFFF
    if packet.family == 6:
        return bytes(l3 / ICMPv6EchoRequest(id=ident, seq=1) / payload)
    return bytes(l3 / ICMP(type=8, id=ident, seq=1) / payload)


CASES = [
    Packet("tcp", "10.0.0.2", "203.0.113.10", 40000, 80),
    Packet("tcp", "172.17.0.5", "10.0.1.5", 65535, 1),
    Packet("udp", "10.0.0.2", "10.0.1.5", 40000, 53),
    Packet("udp", "192.0.2.1", "198.51.100.7", 1, 65535),
    Packet("icmp", "10.0.0.2", "10.0.1.5", 4321, None),
    Packet("icmp", "10.0.0.2", "10.0.1.5", None, None),
    Packet("tcp", "2001:db8::2", "2001:db8::5", 40000, 80, family=6),
    Packet("udp", "fd00::1", "fd00:1::9", 5353, 53, family=6),
    Packet("icmp", "2001:db8::2", "2001:db8::5", 3, None, family=6),
]


@pytest.mark.parametrize("packet", CASES, ids=lambda p: f"{p.proto}{p.family}-{p.dst}")
@pytest.mark.parametrize("size", [0, 100, 1400, 1501])
def test_probe_bytes_equal_scapys(packet: Packet, size: int) -> None:
    for nonce in NONCES:
        marker = inject.Marker(nonce)
        assert inject.build(packet, marker, size) == scapy_probe(packet, marker, size), nonce


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="sctp"):
        inject.build(Packet("sctp", "10.0.0.2", "10.0.1.5", 1, 2), inject.Marker(5))
