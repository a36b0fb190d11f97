"""What a probe is beyond its addresses: the header fields, socket and clock that matches read.

A predicted probe is what cntrace would send: no options beyond the kernel's defaults, TTL 64,
DSCP/ECN 0, not a fragment, from a root socket, and a TCP segment that opens a connection (SYN)
unless the connection is established (ACK). Its length is known only when the caller says (a
payload size is the sender's choice), and its time only when the caller gives a clock reading:
a match on either is otherwise uncertain, with that reason.

A crafted (live) probe knows every byte it sent: ``header`` carries such values by the names
probe_headers.py reads (``tcp.sequence``, ``udp.checksum``, ``icmp.id``, ``tcpopt.maxseg.size``).
A predicted probe leaves them out: the kernel picks sequence numbers and IDs at random, and a
checksum covers them.
"""

from __future__ import annotations

from dataclasses import dataclass

# TCP options a Linux SYN carries (MSS, SACK permitted, timestamps, window scale, NOPs).
SYN_OPTIONS = frozenset({1, 2, 3, 4, 8})


@dataclass(frozen=True, slots=True)
class Probe:
    """Header, socket and clock facts of the walked packet (None: not known)."""

    length: int | None = None  # IP total length (IPv6: header + payload)
    dscp: int = 0
    ecn: int = 0
    ttl: int = 64  # IPv6: hop limit
    tcp_flags: int | None = None  # None: SYN for a new connection, ACK otherwise
    tcp_options: frozenset[int] | None = None  # None: SYN_OPTIONS on a SYN, else timestamps
    fragment: bool = False  # a non-first fragment (iptables -f)
    dont_fragment: bool = True  # Linux sets DF (path MTU discovery)
    ip_id: int | None = None  # random per packet
    uid: int | None = 0  # of the sending socket (locally generated packets only)
    gid: int | None = 0
    time: float | None = None  # seconds since the epoch, UTC
    icmp_code: int = 0
    priority: int = 0  # skb->priority: 0 unless a socket option or a rule sets it
    cgroup: int | None = None  # cgroup v2 id of the sending socket (locally generated only)
    header: tuple[tuple[str, int], ...] = ()  # header values a crafted probe knows

    def known(self, name: str) -> int | None:
        for k, v in self.header:
            if k == name:
                return v
        return None


PREDICTED = Probe()


def tcp_flags(probe: Probe, ctstate: str) -> int:
    if probe.tcp_flags is not None:
        return probe.tcp_flags
    return 0x02 if ctstate in ("new", "invalid", "untracked") else 0x10


def tcp_options(probe: Probe, flags: int) -> frozenset[int]:
    if probe.tcp_options is not None:
        return probe.tcp_options
    return SYN_OPTIONS if flags & 0x02 else frozenset({1, 8})
