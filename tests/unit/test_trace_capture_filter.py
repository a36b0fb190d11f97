"""The capture back end's kernel filter (classic BPF), run here by a small interpreter of the
opcodes it uses, on real probe bytes: it must pass the probe and its replies after NAT, and
little else."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6

from cntrace.model import Packet
from cntrace.trace import inject
from cntrace.trace.capture import SNAPLEN, marker_filter

MARKER = inject.Marker(0x0A0B0C0D)


def run_cbpf(prog: bytes, pkt: bytes) -> int:
    """Interpret the subset of classic BPF that marker_filter emits."""
    insns = [struct.unpack_from("<HBBI", prog, i) for i in range(0, len(prog), 8)]
    a = x = 0
    pc = 0

    def load(off: int, size: int) -> int | None:
        if off + size > len(pkt):
            return None
        return int.from_bytes(pkt[off : off + size], "big")

    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code in (0x20, 0x28, 0x30, 0x40, 0x48, 0x50):
            size = {0x00: 4, 0x08: 2, 0x10: 1}[code & 0x18]
            off = k + (x if code & 0x40 else 0)
            v = load(off, size)
            if v is None:
                return 0  # out of bounds: the kernel drops the packet
            a = v
        elif code == 0xB1:
            v = load(k, 1)
            if v is None:
                return 0
            x = (v & 0x0F) * 4
        elif code == 0x54:
            a &= k
        elif code == 0x15:
            pc += jt if a == k else jf
        elif code == 0x45:
            pc += jt if a & k else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"opcode {code:#x} not interpreted")


PROG = marker_filter(MARKER.nonce, 40000)


def sent(proto: str, dport: int | None = 80) -> bytes:
    return inject.build(Packet(proto, "10.0.0.2", "10.0.1.5", 40000, dport), MARKER)


@pytest.mark.parametrize("proto", ["tcp", "udp", "icmp"])
def test_probe_passes(proto: str) -> None:
    assert run_cbpf(PROG, sent(proto)) == SNAPLEN


def test_syn_ack_and_rst_pass() -> None:
    for flags in ("SA", "RA"):
        raw = bytes(IP(src="10.0.1.5", dst="10.0.0.2") / TCP(flags=flags, ack=MARKER.reply_ack))
        assert run_cbpf(PROG, raw) == SNAPLEN


def test_quoting_icmp_errors_pass() -> None:
    for proto in ("tcp", "udp"):
        err = bytes(IP(src="10.0.9.9", dst="10.0.0.2") / ICMP(type=3) / sent(proto))
        assert run_cbpf(PROG, err) == SNAPLEN


def test_udp_reply_to_the_source_port_passes() -> None:
    raw = bytes(IP(src="10.0.1.5", dst="10.0.0.2") / UDP(sport=53, dport=40000) / b"answer")
    assert run_cbpf(PROG, raw) == SNAPLEN
    assert run_cbpf(marker_filter(MARKER.nonce, None), raw) == 0


@pytest.mark.parametrize(
    "raw",
    [
        bytes(IP(src="10.0.0.2", dst="10.0.1.5") / TCP(flags="S", seq=1)),
        bytes(IP(src="10.0.0.2", dst="10.0.1.5") / UDP(sport=1, dport=2) / b"cnTRxxxx"),
        bytes(IP(src="10.0.0.2", dst="10.0.1.5") / ICMP() / b"hello world!"),
        bytes(IP(src="10.0.0.2", dst="10.0.1.5") / UDP(sport=1, dport=2) / (b"\x00" * 40)),
        b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\x00" * 20,  # ARP
    ],
    ids=["other-syn", "magic-other-nonce", "other-ping", "other-udp", "arp"],
)
def test_unrelated_traffic_is_rejected(raw: bytes) -> None:
    assert run_cbpf(PROG, raw) == 0


def test_ipv6() -> None:
    syn6 = inject.build(Packet("tcp", "2001:db8::2", "2001:db8::5", 40000, 80, family=6), MARKER)
    assert run_cbpf(PROG, syn6) == SNAPLEN
    err6 = bytes(IPv6(src="2001:db8::9", dst="2001:db8::2") / ICMPv6DestUnreach() / syn6)
    assert run_cbpf(PROG, err6) == SNAPLEN
    other = bytes(IPv6(src="2001:db8::2", dst="2001:db8::5") / TCP(seq=5))
    assert run_cbpf(PROG, other) == 0


def test_jumps_fit_classic_bpf() -> None:
    for i in range(0, len(PROG), 8):
        code, jt, jf, _k = struct.unpack_from("<HBBI", PROG, i)
        if code & 0x07 == 0x05:  # a conditional jump: both targets inside the program
            assert i // 8 + 1 + max(jt, jf) < len(PROG) // 8
