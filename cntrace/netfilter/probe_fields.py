"""The values of the fields a probe's headers, socket and clock decide (see probe.py).

``probe_value`` answers for the keys ``state.value`` does not compute itself; a field nobody
knows is ``UNKNOWN`` (the match is then uncertain) and a field the packet lacks is None (the
match is false, as in the kernel, where a missing header or socket breaks the rule).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cntrace.netfilter.probe import tcp_flags, tcp_options

if TYPE_CHECKING:
    from cntrace.netfilter.state import State

UNKNOWN = object()  # a field that cannot be known for this packet: the match is uncertain


def apply_ops(v: int, ops: tuple[tuple[str, int], ...]) -> int:
    for op, n in ops:
        if op == "&":
            v &= n
        elif op == "|":
            v |= n
        elif op == "^":
            v ^= n
        elif op == ">>":
            v >>= n
        elif op == "<<":
            v = (v << n) & 0xFFFFFFFF
    return v


def probe_value(st: State, key: str) -> object:
    """A header, socket or clock field of the probe (UNKNOWN when it cannot be known)."""
    p, pr = st.packet, st.probe
    if key == "length":
        return pr.length if pr.length is not None else UNKNOWN
    if key == "l3.payload_length":  # ip6 length: the payload after the fixed header
        return pr.length - 40 if pr.length is not None else UNKNOWN
    if key == "dscp":
        return pr.dscp
    if key == "ecn":
        return pr.ecn
    if key == "tos":
        return (pr.dscp << 2) | pr.ecn
    if key == "ttl":
        return pr.ttl
    if key == "ipversion":
        return p.family
    if key == "iphdrlength":
        return 5
    if key == "fragoff":  # flags and offset, as the IPv4 header holds them
        return (0x4000 if pr.dont_fragment else 0) | (1 if pr.fragment else 0)
    if key == "fragment":
        return 1 if pr.fragment else 0
    if key == "ip.id":
        return pr.ip_id if pr.ip_id is not None else UNKNOWN
    if key == "flowlabel":  # the kernel hashes the flow (auto flow labels): a crafted probe's own
        label = pr.known("flowlabel")
        return label if label is not None else UNKNOWN
    if key in ("tcpflags", "tcpoption"):
        if p.proto != "tcp":
            return None
        flags = tcp_flags(pr, st.ctstate)
        return flags if key == "tcpflags" else tcp_options(pr, flags)
    if key in ("skuid", "skgid"):
        if st.iif is not None:
            return None  # not locally generated: no socket
        v = pr.uid if key == "skuid" else pr.gid
        return v if v is not None else UNKNOWN
    if key in ("hour", "day", "time", "date"):
        if pr.time is None:
            return UNKNOWN
        secs = int(pr.time)
        if key == "hour":
            return secs % 86400
        if key == "day":
            return (secs // 86400 + 4) % 7  # 1970-01-01 was a Thursday; Sunday is 0
        if key == "date":
            return int(pr.time)
        return int(pr.time * 1_000_000_000)
    return UNKNOWN
