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

The packet is built with scapy and sent through a raw IP socket created inside the source
namespace, so the namespace's own routes, neighbours and netfilter OUTPUT rules apply to it.
"""

from __future__ import annotations

import ipaddress
import random
import secrets
import socket
import threading
import time
from dataclasses import dataclass

from cntrace.model import Packet
from cntrace.sources import nsenter

MAGIC = b"cnTR"
PAYLOAD_TAIL = b" cntrace probe\n"
IPV6_HDRINCL = 36
PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1}

_scapy_ready = threading.Event()
_scapy_error: list[BaseException] = []


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


def preload() -> None:
    """Import scapy in the background (it takes ~0.7 s) while the probes are being attached."""
    if _scapy_ready.is_set() or getattr(preload, "_started", False):
        return
    preload._started = True  # type: ignore[attr-defined]

    def _import() -> None:
        try:
            import scapy.layers.inet  # noqa: PLC0415
            import scapy.layers.inet6  # noqa: F401, PLC0415
        except BaseException as exc:  # reported when a probe is built
            _scapy_error.append(exc)
        finally:
            _scapy_ready.set()

    threading.Thread(target=_import, name="cntrace-scapy-import", daemon=True).start()


def source_address(netns_path: str, dst: str) -> str:
    """The address the namespace's routing would send from towards ``dst`` (no packet sent)."""
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with nsenter.socket_in(netns_path, family, socket.SOCK_DGRAM) as s:
        s.connect((dst, 9))
        return str(s.getsockname()[0])


def build(packet: Packet, marker: Marker, size: int = 0) -> bytes:
    """The probe's bytes (IP header included), built with scapy. ``size`` pads a UDP or ICMP
    probe's payload so the IP packet has that length (to test MTUs); the marker stays first."""
    preload()
    _scapy_ready.wait()
    if _scapy_error:
        raise RuntimeError(f"scapy is not importable: {_scapy_error[0]}")
    from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: PLC0415
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6  # noqa: PLC0415

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
    header = (40 if packet.family == 6 else 20) + 8  # IP + UDP or ICMP header
    payload = marker.payload + b"\0" * max(0, size - header - len(marker.payload))
    if packet.proto == "udp":
        return bytes(l3 / UDP(sport=packet.sport, dport=packet.dport) / payload)
    if packet.proto == "icmp":
        ident = (packet.sport or 0) & 0xFFFF
        if packet.family == 6:
            return bytes(l3 / ICMPv6EchoRequest(id=ident, seq=1) / payload)
        return bytes(l3 / ICMP(type=8, id=ident, seq=1) / payload)
    raise ValueError(f"cannot send a {packet.proto} probe")


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
