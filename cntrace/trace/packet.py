"""Parse IP packets and match them against armed markers, in Python.

The same decisions the eBPF programs take in the kernel (probes/cntrace.bpf.c: cnt_parse,
cnt_match), for the places that see raw bytes in user space: the capture back end and nftables
trace events. Keep the two in step.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from cntrace.model import Packet
from cntrace.trace.events_c import (
    CNT_MAGIC,
    CNT_MATCH_ACK,
    CNT_MATCH_FLOW,
    CNT_MATCH_MARKER,
    CNT_MATCH_QUOTE,
    MATCH_NAMES,
)

P_ICMP, P_TCP, P_UDP, P_ICMPV6 = 1, 6, 17, 58
PROTO_NAMES = {P_ICMP: "icmp", P_TCP: "tcp", P_UDP: "udp", P_ICMPV6: "icmp"}
_SYN, _RST, _ACK = 0x02, 0x04, 0x10

Flow = tuple[str, str, int, int, int]  # src, dst, sport, dport, proto


def tcp_flag_text(flags: int) -> str:
    return "".join(c for bit, c in zip(range(8), "FSRPAUEC", strict=True) if flags & (1 << bit))


@dataclass(frozen=True, slots=True)
class Parsed:
    """An IP packet's headers, as cnt_hdr holds them in the kernel."""

    family: int
    proto: int
    src: str
    dst: str
    sport: int = 0
    dport: int = 0
    seq: int = 0
    ack: int = 0
    tcp_flags: int = 0
    icmp_type: int | None = None
    icmp_code: int | None = None
    pay0: int = 0
    pay1: int = 0
    ip_id: int | None = None
    length: int = 0
    inner: Parsed | None = None  # ICMP errors: the quoted packet
    in_tag0: int = 0
    in_tag1: int = 0

    @property
    def flow(self) -> Flow:
        return (self.src, self.dst, self.sport, self.dport, self.proto)

    def to_packet(self, mark: int = 0) -> Packet:
        icmp = self.proto in (P_ICMP, P_ICMPV6)
        return Packet(
            proto=PROTO_NAMES.get(self.proto, str(self.proto)),
            src=self.src,
            dst=self.dst,
            sport=None if icmp else self.sport,
            dport=None if icmp else self.dport,
            family=self.family,
            icmp_type=self.icmp_type if icmp else None,
            mark=mark,
        )


def _is_icmp_error(proto: int, icmp_type: int) -> bool:
    if proto == P_ICMP:
        return icmp_type in (3, 11, 12)
    return proto == P_ICMPV6 and 1 <= icmp_type <= 4


def parse_ip(data: bytes, *, quoted: bool = False) -> Parsed | None:
    """Parse an IPv4/IPv6 packet starting at its IP header (None if it is not one)."""
    if len(data) < 20:
        return None
    ver = data[0] >> 4
    if ver == 4:
        ihl = (data[0] & 0x0F) * 4
        if ihl < 20 or ((data[6] & 0x1F) | data[7]):
            return None
        proto = data[9]
        src = str(ipaddress.IPv4Address(data[12:16]))
        dst = str(ipaddress.IPv4Address(data[16:20]))
        ip_id: int | None = struct.unpack_from("!H", data, 4)[0]
        length = struct.unpack_from("!H", data, 2)[0]
        l4, family = ihl, 4
    elif ver == 6 and len(data) >= 40:
        proto = data[6]
        src = str(ipaddress.IPv6Address(data[8:24]))
        dst = str(ipaddress.IPv6Address(data[24:40]))
        ip_id, length, l4, family = None, 40 + struct.unpack_from("!H", data, 4)[0], 40, 6
    else:
        return None
    return parse_l4(family, proto, src, dst, data[l4:], ip_id=ip_id, length=length, quoted=quoted)


def parse_l4(
    family: int,
    proto: int,
    src: str,
    dst: str,
    th: bytes,
    *,
    ip_id: int | None = None,
    length: int = 0,
    quoted: bool = False,
) -> Parsed:
    """Fill in the transport header fields from ``th`` (the bytes from the L4 header on)."""
    base = Parsed(family, proto, src, dst, ip_id=ip_id, length=length)
    if proto not in (P_TCP, P_UDP, P_ICMP, P_ICMPV6) or len(th) < 8:
        return base
    th16 = th[:16].ljust(16, b"\0")
    if proto == P_TCP:
        sport, dport, seq, ack = struct.unpack_from("!HHII", th16, 0)
        return Parsed(
            family, proto, src, dst, sport, dport, seq, ack, th16[13], ip_id=ip_id, length=length
        )
    pay0, pay1 = struct.unpack_from("!II", th16, 8)
    if proto == P_UDP:
        sport, dport = struct.unpack_from("!HH", th16, 0)
        return Parsed(
            family, proto, src, dst, sport, dport, pay0=pay0, pay1=pay1, ip_id=ip_id, length=length
        )
    icmp_type, icmp_code = th16[0], th16[1]
    ident, inner, tag0, tag1 = 0, None, 0, 0
    if not _is_icmp_error(proto, icmp_type) or quoted:
        ident = struct.unpack_from("!H", th16, 4)[0]  # an echo's id stands in for the port
    else:
        inner = parse_ip(th[8:], quoted=True)
        if inner is not None:
            tag0, tag1 = (inner.seq, 0) if inner.proto == P_TCP else (inner.pay0, inner.pay1)
    return Parsed(
        family,
        proto,
        src,
        dst,
        ident,
        icmp_type=icmp_type,
        icmp_code=icmp_code,
        pay0=pay0,
        pay1=pay1,
        ip_id=ip_id,
        length=length,
        inner=inner,
        in_tag0=tag0,
        in_tag1=tag1,
    )


def reverse(flow: Flow) -> Flow:
    src, dst, sport, dport, proto = flow
    return (dst, src, dport, sport, proto)


class Matcher:
    """Armed markers and the flows learnt from them: cnt_match in user space."""

    def __init__(self) -> None:
        self.nonces: set[int] = set()
        self.flows: dict[Flow, tuple[int, int]] = {}  # flow -> (nonce, 1 request | 2 reply)

    def arm(self, nonce: int) -> None:
        self.nonces.add(nonce)

    def disarm(self, nonce: int) -> None:
        self.nonces.discard(nonce)
        self.flows = {f: v for f, v in self.flows.items() if v[0] != nonce}

    def match(self, p: Parsed, *, learn: bool = True) -> tuple[str, int, bool] | None:
        """(how, nonce, is_reply) when ``p`` belongs to an armed probe."""
        found = self._match(p)
        if found is None:
            return None
        how, nonce, is_reply = found
        if learn and not is_reply:
            self.flows[p.flow] = (nonce, 1)
            self.flows[reverse(p.flow)] = (nonce, 2)
        return MATCH_NAMES[how], nonce, is_reply

    def _match(self, p: Parsed) -> tuple[int, int, bool] | None:
        if p.proto == P_TCP:
            if p.tcp_flags & _SYN and not p.tcp_flags & _ACK and p.seq in self.nonces:
                return CNT_MATCH_MARKER, p.seq, False
            nonce = (p.ack - 1) & 0xFFFFFFFF
            if p.tcp_flags & (_SYN | _RST) and p.tcp_flags & _ACK and nonce in self.nonces:
                return CNT_MATCH_ACK, nonce, True
            return None
        if p.proto not in (P_UDP, P_ICMP, P_ICMPV6):
            return None
        if p.inner is not None:
            v = self.flows.get(p.inner.flow)
            if v and v[1] == 2:
                return None  # an error about a reply (the source answering it)
            if p.inner.proto == P_TCP and p.in_tag0 in self.nonces:
                return CNT_MATCH_QUOTE, p.in_tag0, True
            if p.inner.proto != P_TCP and p.in_tag0 == CNT_MAGIC and p.in_tag1 in self.nonces:
                return CNT_MATCH_QUOTE, p.in_tag1, True
            if v and v[1] == 1:
                return CNT_MATCH_QUOTE, v[0], True
            return None
        if p.pay0 == CNT_MAGIC and p.pay1 in self.nonces:
            v = self.flows.get(p.flow)
            reply = (
                (p.proto == P_ICMP and p.icmp_type == 0)
                or (p.proto == P_ICMPV6 and p.icmp_type == 129)
                or bool(v and v[1] == 2)
            )
            return CNT_MATCH_MARKER, p.pay1, reply
        if p.proto == P_UDP:
            v = self.flows.get(p.flow)
            if v and v[1] == 2:
                return CNT_MATCH_FLOW, v[0], True
        return None


VXLAN_PORTS = (8472, 4789)  # Linux's default and IANA's; the probes unwrap both
VXLAN_INNER = 30  # UDP 8 + VXLAN 8 + inner Ethernet 14


def vxlan_outer(frame: bytes, l3: int) -> tuple[Packet, int] | None:
    """(the outer packet, its VNI) when ``frame`` (its IP header at ``l3``) is a VXLAN packet:
    the probes report the frame it carries, so its own addresses are read from the bytes."""
    outer = parse_ip(frame[l3:])
    if outer is None or outer.proto != P_UDP or outer.dport not in VXLAN_PORTS:
        return None
    ihl = (frame[l3] & 0x0F) * 4 if outer.family == 4 else 40
    vxlan = frame[l3 + ihl + 8 : l3 + ihl + 16]
    if len(vxlan) < 8:
        return None
    return outer.to_packet(), int.from_bytes(vxlan[4:7], "big")
