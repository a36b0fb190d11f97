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

import errno
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
        payload = padded_payload(packet, marker, size)
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


def padded_payload(packet: Packet, marker: Marker, size: int = 0) -> bytes:
    """A UDP or ICMP probe's payload: the marker first, padded so the IP packet is ``size``."""
    header = (40 if packet.family == 6 else 20) + 8  # IP + UDP or ICMP header
    return marker.payload + b"\0" * max(0, size - header - len(marker.payload))


@dataclass(frozen=True, slots=True)
class Injected:
    packet: Packet  # as sent: source address and port filled in
    marker: Marker
    t_ns: int  # CLOCK_MONOTONIC when it was handed to the kernel
    raw: bytes
    t_realtime_ns: int = 0


def complete(netns_path: str, packet: Packet, *, route: bool = True) -> Packet:
    """Fill in what the plan left open: source address (from routing, unless ``route`` is
    False: there is none, and the send will say so) and source port."""
    fam = 6 if ":" in packet.dst else 4
    changes: dict[str, object] = {}
    if fam != packet.family:
        changes["family"] = fam
    if route and (not packet.src or ipaddress.ip_address(packet.src).is_unspecified):
        changes["src"] = source_address(netns_path, packet.dst)
    elif not packet.src:
        changes["src"] = "::" if fam == 6 else "0.0.0.0"
    if packet.sport is None:
        changes["sport"] = random.randint(32768, 60999)
    if packet.proto in ("tcp", "udp") and packet.dport is None:
        raise ValueError(f"a {packet.proto} probe needs a destination port")
    if packet.proto == "icmp" and packet.icmp_type is None:
        changes["icmp_type"] = 8 if fam == 4 else 128
    return packet.rewritten(**changes) if changes else packet


def send(netns_path: str, packet: Packet, marker: Marker, size: int = 0) -> Injected:
    """Send the probe from inside ``netns_path``; ``packet`` must be complete()d."""
    with Sender(netns_path, packet) as sender:
        return sender.send(marker, size)


# socket options the sender uses (linux/in.h, linux/in6.h, linux/errqueue.h)
IP_MTU_DISCOVER, IP_RECVERR, IP_MTU = 10, 11, 14
IPV6_MTU_DISCOVER, IPV6_MTU, IPV6_RECVERR = 23, 24, 25
PMTUDISC_DO = 2
MSG_ERRQUEUE = 0x2000
SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 = 2, 3
_EXT_ERR = struct.Struct("=IBBBBII")  # sock_extended_err


class Sender:
    """The socket the probe leaves by, opened in the source namespace before the trace is armed.

    TCP SYNs and ICMP echoes go through a raw socket (the kernel would not let a TCP socket
    send a lone SYN with our sequence number). UDP goes through a connected UDP socket bound to
    the probe's address and port, with the DF bit forced (IP_PMTUDISC_DO) and IP_RECVERR on, so
    the source's kernel itself reports what it knows: EMSGSIZE with the path MTU, ICMP errors
    for the flow (ECONNREFUSED after a port unreachable) and the reply, which it delivers to
    this socket instead of answering it with a port unreachable. ``error`` holds the errno that
    opening met (no route: the probe cannot leave; that is the observation)."""

    def __init__(self, netns_path: str, packet: Packet) -> None:
        self.netns_path = netns_path
        self.packet = packet
        self.error: OSError | None = None
        self._t0 = 0
        family = socket.AF_INET6 if packet.family == 6 else socket.AF_INET
        self.sock: socket.socket | None = None
        if packet.proto == "udp":
            self.sock = nsenter.socket_in(
                netns_path, family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK
            )
            try:
                self._udp_setup(family)
            except OSError as exc:
                self.error = exc
        else:
            self.sock = nsenter.socket_in(netns_path, family, socket.SOCK_RAW, socket.IPPROTO_RAW)
            if family == socket.AF_INET6:
                self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)

    def _udp_setup(self, family: int) -> None:
        assert self.sock is not None
        v6 = family == socket.AF_INET6
        level = socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP
        self.sock.setsockopt(level, IPV6_MTU_DISCOVER if v6 else IP_MTU_DISCOVER, PMTUDISC_DO)
        self.sock.setsockopt(level, IPV6_RECVERR if v6 else IP_RECVERR, 1)
        p = self.packet
        for _ in range(20):
            try:
                self.sock.bind((p.src, p.sport or 0))
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                p = p.rewritten(sport=random.randint(32768, 60999))
        self.packet = p
        self.sock.connect((p.dst, p.dport or 0))

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    def send(self, marker: Marker, size: int = 0) -> Injected:
        """Hand the probe to the kernel; raises OSError as the kernel refuses (EPERM ...)."""
        assert self.sock is not None
        t_ns, t_rt = time.monotonic_ns(), time.time_ns()
        self._t0 = t_ns
        p = self.packet
        if self.error is not None:
            raise self.error
        if p.proto == "udp":
            raw = padded_payload(p, marker, size)
            self.sock.send(raw)
        else:
            raw = build(p, marker, size)
            self.sock.sendto(raw, (p.dst, 0))
        return Injected(p, marker, t_ns, raw, t_rt)

    def path_mtu(self) -> int | None:
        """The path MTU the source's kernel holds towards the destination (the route's, or one
        learned from ICMP), read from a connected UDP socket."""
        v6 = self.packet.family == 6
        try:
            with nsenter.socket_in(
                self.netns_path, socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM
            ) as s:
                s.connect((self.packet.dst, self.packet.dport or 9))
                level = socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP
                return int(s.getsockopt(level, IPV6_MTU if v6 else IP_MTU))
        except OSError:
            return None

    def news(self) -> list[SourceNews]:
        """What the socket holds now: ICMP errors queued for the flow, replies (UDP only)."""
        out: list[SourceNews] = []
        if self.sock is None or self.packet.proto != "udp" or self.error is not None:
            return out
        while True:
            try:
                _data, anc, _flags, _addr = self.sock.recvmsg(512, 512, MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            t = time.monotonic_ns() - self._t0
            for _level, kind, payload in anc:
                if kind not in (IP_RECVERR, IPV6_RECVERR) or len(payload) < _EXT_ERR.size:
                    continue
                err, origin, etype, code, _pad, info, _d = _EXT_ERR.unpack_from(payload)
                if origin not in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
                    continue  # a local error: send() has reported it already
                offender = _sockaddr_ip(payload[_EXT_ERR.size :])
                mtu = info if err == errno.EMSGSIZE and info else None
                out.append(SourceNews("icmp-error", t, err, etype, code, offender, mtu))
        while True:
            try:
                self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # a pending error not on the queue (without IP_RECVERR)
                out.append(SourceNews("icmp-error", time.monotonic_ns() - self._t0, exc.errno))
                break
            out.append(SourceNews("reply", time.monotonic_ns() - self._t0))
        return out

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class SourceNews:
    """One thing the sending socket reported (trace/events.SourceEvent in the result)."""

    kind: str  # icmp-error | reply
    t_ns: int
    errno: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    offender: str | None = None
    mtu: int | None = None


def _sockaddr_ip(raw: bytes) -> str | None:
    """The address of a sockaddr_in or sockaddr_in6 (the ICMP error's sender)."""
    if len(raw) >= 8 and int.from_bytes(raw[:2], "little") == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8])
    if len(raw) >= 24 and int.from_bytes(raw[:2], "little") == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[8:24])
    return None
