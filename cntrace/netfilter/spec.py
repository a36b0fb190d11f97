"""The ``--packet`` description: one line a person can type, parsed into a Packet and its context.

Syntax (docs/netfilter.md)::

    PROTO SRC[:PORT] -> DST[:PORT] [in IFACE] [out IFACE] [state STATE] [mark N] [ctmark N]
          [type ICMPTYPE] [physin IFACE] [physout IFACE]

    tcp 172.17.0.2:40000 -> 203.0.113.10:80 in docker0
    udp [2001:db8::5]:5353 -> [2001:db8::1]:53 in eth0 out docker0
    icmp 10.0.0.5 -> 10.0.0.1 type echo-request
    tcp 127.0.0.1:40000 -> 127.0.0.1:8080            (sent from the namespace itself)

``in`` names the interface the packet arrives on (absent: the namespace sends it); ``out`` the
one it leaves by (absent: found from the routes when known).
"""

from __future__ import annotations

from dataclasses import dataclass

from cntrace.errors import BadInput
from cntrace.model import Packet
from cntrace.netfilter.model import PROTO_NUMBERS
from cntrace.netfilter.values import ICMP_TYPES, ICMPV6_TYPES, int_value, ip_to_int, port_number

STATES = ("new", "established", "related", "invalid", "untracked")
_KEYWORDS = {"in", "out", "state", "mark", "ctmark", "type", "physin", "physout"}


@dataclass(frozen=True, slots=True)
class PacketSpec:
    """A parsed ``--packet``: the packet and where/how it meets the namespace."""

    packet: Packet
    iif: str | None = None
    oif: str | None = None
    ctstate: str = "NEW"
    ctmark: int = 0
    physdev_in: str | None = None
    physdev_out: str | None = None
    text: str = ""


def _endpoint(text: str, what: str) -> tuple[str, int | None]:
    if text.startswith("["):
        addr, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        if rest and not rest.startswith(":"):
            raise BadInput(f"bad {what} {text!r}: expected [IPv6]:PORT")
    elif text.count(":") == 1:
        addr, port = text.split(":")
    else:
        addr, port = text, None
    try:
        ip_to_int(addr)
    except ValueError:
        raise BadInput(f"bad {what} address {addr!r}") from None
    if port is None or port == "":
        return addr, None
    try:
        return addr, port_number(port)
    except ValueError:
        raise BadInput(f"bad {what} port {port!r}") from None


def parse_packet(spec: str) -> PacketSpec:
    """Parse a packet description; BadInput (exit 2) with what is wrong otherwise."""
    words = spec.replace("→", " -> ").split()
    if "->" not in words:
        raise BadInput(
            f"bad packet {spec!r}: expected 'PROTO SRC[:PORT] -> DST[:PORT] [in IFACE] ...'"
        )
    arrow = words.index("->")
    if arrow != 2 or len(words) < 4:
        raise BadInput(f"bad packet {spec!r}: expected 'PROTO SRC[:PORT] -> DST[:PORT] ...'")
    proto = words[0].lower()
    if proto not in PROTO_NUMBERS and not proto.isdigit():
        raise BadInput(f"bad packet {spec!r}: unknown protocol {words[0]!r}")
    src, sport = _endpoint(words[1], "source")
    dst, dport = _endpoint(words[3], "destination")
    family = 6 if ":" in src else 4
    if (":" in dst) != (family == 6):
        raise BadInput(f"bad packet {spec!r}: source and destination are of different families")
    if proto in ("icmp", "icmpv6", "ipv6-icmp"):
        proto = "icmp"
        if sport is not None or dport is not None:
            raise BadInput(f"bad packet {spec!r}: ICMP has no ports")
    elif proto in ("tcp", "udp", "sctp", "udplite", "dccp") and (sport is None or dport is None):
        raise BadInput(f"bad packet {spec!r}: {proto} needs SRC:PORT and DST:PORT")
    opts: dict[str, str] = {}
    rest = words[4:]
    if len(rest) % 2:
        raise BadInput(f"bad packet {spec!r}: {rest[-1]!r} needs a value")
    for key, value in zip(rest[::2], rest[1::2], strict=True):
        if key not in _KEYWORDS:
            raise BadInput(
                f"bad packet {spec!r}: unknown word {key!r} (in, out, state, mark, ctmark, "
                "type, physin, physout)"
            )
        opts[key] = value
    icmp_type = None
    if proto == "icmp":
        names = ICMPV6_TYPES if family == 6 else ICMP_TYPES
        t = opts.get("type", "echo-request")
        if t in names:
            icmp_type = names[t]
        elif t.isdigit():
            icmp_type = int(t)
        else:
            raise BadInput(f"bad packet {spec!r}: unknown ICMP type {t!r}")
    elif "type" in opts:
        raise BadInput(f"bad packet {spec!r}: 'type' is for ICMP only")
    state = opts.get("state", "new").lower()
    if state not in STATES:
        raise BadInput(f"bad packet {spec!r}: state is one of {', '.join(STATES)}")
    try:
        mark = int_value(opts.get("mark", "0"))
        ctmark = int_value(opts.get("ctmark", "0"))
    except ValueError:
        raise BadInput(f"bad packet {spec!r}: mark and ctmark are numbers") from None
    packet = Packet(proto, src, dst, sport, dport, family, icmp_type, mark)
    return PacketSpec(
        packet=packet,
        iif=opts.get("in"),
        oif=opts.get("out"),
        ctstate=state.upper(),
        ctmark=ctmark,
        physdev_in=opts.get("physin"),
        physdev_out=opts.get("physout"),
        text=spec,
    )
