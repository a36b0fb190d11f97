"""The probe: one marked packet sent from inside the source namespace.

The marker is a 32-bit random nonce, placed where NAT does not touch it:

* TCP: the SYN's sequence number is the nonce. The answer to a SYN acknowledges seq + 1 whether
  it is a SYN-ACK or a RST, so replies are matched by ``ack == nonce + 1``.
* UDP and ICMP echo: the first 8 payload bytes are ``b"cnTR"`` and the nonce (big endian). An
  echo reply carries the payload back; a UDP reply is matched by its flow, reversed from the
  probe's addresses and ports as seen at the same hop (so after NAT too).
* ICMP errors quote the probe's IP header and the start of its payload: the quoted sequence
  number or payload carries the nonce.

NAT may rewrite addresses, ports and ICMP identifiers, never these bytes. Each run draws its own
nonce, so concurrent runs never see each other's packets. The IP ID is set from the nonce too,
which helps to spot the probe in a capture by eye.

The packet is built with struct and sent through a raw IP socket created inside the source
namespace, so the namespace's own routes, neighbours and netfilter OUTPUT rules apply to it.
"""

from __future__ import annotations

import ipaddress
import random
import secrets
import socket
import struct
import time
from dataclasses import dataclass

from cntrace.model import Packet
from cntrace.sources import nsenter

MAGIC = b"cnTR"
PAYLOAD_TAIL = b" cntrace probe\n"
IPV6_HDRINCL = 36
PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1}


@dataclass(frozen=True, slots=True)
class Marker:
    """A run's marker; see the module docstring for where it travels."""

    nonce: int

    @property
    def payload(self) -> bytes:
        return MAGIC + self.nonce.to_bytes(4, "big") + PAYLOAD_TAIL

    @property
    def reply_ack(self) -> int:
        return (self.nonce + 1) & 0xFFFFFFFF


def new_marker(avoid: set[int] | frozenset[int] = frozenset()) -> Marker:
    """A fresh nonce: never 0, never 0xffffffff (its + 1 would be 0), not one in use."""
    while True:
        nonce = secrets.randbits(32)
        if 0 < nonce < 0xFFFFFFFF and nonce not in avoid:
            return Marker(nonce)


def proto_number(packet: Packet) -> int:
    if packet.proto == "icmp" and packet.family == 6:
        return 58
    try:
        return PROTO_NUMBERS[packet.proto]
    except KeyError:
        raise ValueError(f"cannot send a {packet.proto} probe (tcp, udp or icmp)") from None


def source_address(netns_path: str, dst: str) -> str:
    """The address the namespace's routing would send from towards ``dst`` (no packet sent)."""
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with nsenter.socket_in(netns_path, family, socket.SOCK_DGRAM) as s:
        s.connect((dst, 9))
        return str(s.getsockname()[0])


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build(packet: Packet, marker: Marker, size: int = 0) -> bytes:
    """The probe's bytes (IP header included). ``size`` pads a UDP or ICMP probe's payload so the
    IP packet has that length (to test MTUs); the marker stays first.

    Built with struct rather than scapy: importing scapy costs ~0.5 s of a live path's budget,
    and these five headers are all a probe needs (tests/unit/test_trace_probe_bytes.py checks
    them byte for byte against scapy's)."""
    proto = proto_number(packet)
    v6 = packet.family == 6
    src = ipaddress.ip_address(packet.src).packed
    dst = ipaddress.ip_address(packet.dst).packed
    if packet.proto == "tcp":
        # SYN, data offset 6 words (one MSS option), window 64240, MSS 1460.
        l4 = struct.pack(
            "!HHIIBBHHH",
            packet.sport or 0,
            packet.dport or 0,
            marker.nonce,
            0,
            6 << 4,
            0x02,
            64240,
            0,
            0,
        ) + struct.pack("!BBH", 2, 4, 1460)
    else:
        header = (40 if v6 else 20) + 8  # IP + UDP or ICMP header
        payload = marker.payload + b"\0" * max(0, size - header - len(marker.payload))
        if packet.proto == "udp":
            l4 = struct.pack("!HHHH", packet.sport or 0, packet.dport or 0, 8 + len(payload), 0)
        else:
            ident = (packet.sport or 0) & 0xFFFF
            l4 = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, 1)
        l4 += payload
    if v6 or proto != 1:  # the pseudo header counts for TCP, UDP and ICMPv6, not for ICMP
        if v6:
            pseudo = src + dst + struct.pack("!IxxxB", len(l4), proto)
        else:
            pseudo = src + dst + struct.pack("!xBH", proto, len(l4))
        ck = _checksum(pseudo + l4)
    else:
        ck = _checksum(l4)
    if proto == 17 and ck == 0:
        ck = 0xFFFF  # a UDP checksum of 0 means "none"
    at = 16 if proto == 6 else 6 if proto == 17 else 2
    l4 = l4[:at] + struct.pack("!H", ck) + l4[at + 2 :]
    if v6:
        return struct.pack("!IHBB", 6 << 28, len(l4), proto, 64) + src + dst + l4
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(l4),
        marker.nonce & 0xFFFF,
        0x4000,
        64,
        proto,
        0,
        src,
        dst,
    )
    return ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:] + l4


@dataclass(frozen=True, slots=True)
class Injected:
    packet: Packet  # as sent: source address and port filled in
    marker: Marker
    t_ns: int  # CLOCK_MONOTONIC when it was handed to the kernel
    raw: bytes
    t_realtime_ns: int = 0


def complete(netns_path: str, packet: Packet) -> Packet:
    """Fill in what the plan left open: source address (from routing) and source port."""
    fam = 6 if ":" in packet.dst else 4
    changes: dict[str, object] = {}
    if fam != packet.family:
        changes["family"] = fam
    if not packet.src or ipaddress.ip_address(packet.src).is_unspecified:
        changes["src"] = source_address(netns_path, packet.dst)
    if packet.sport is None:
        changes["sport"] = random.randint(32768, 60999)
    if packet.proto in ("tcp", "udp") and packet.dport is None:
        raise ValueError(f"a {packet.proto} probe needs a destination port")
    if packet.proto == "icmp" and packet.icmp_type is None:
        changes["icmp_type"] = 8 if fam == 4 else 128
    return packet.rewritten(**changes) if changes else packet


def send(netns_path: str, packet: Packet, marker: Marker, size: int = 0) -> Injected:
    """Send the probe from inside ``netns_path``; ``packet`` must be complete()d."""
    raw = build(packet, marker, size)
    family = socket.AF_INET6 if packet.family == 6 else socket.AF_INET
    with nsenter.socket_in(netns_path, family, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)
        t_ns, t_rt = time.monotonic_ns(), time.time_ns()
        s.sendto(raw, (packet.dst, 0))
    return Injected(packet, marker, t_ns, raw, t_rt)
