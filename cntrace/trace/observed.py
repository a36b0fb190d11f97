"""What a live trace says about each hop in words: neighbour frames, holes, the source's kernel.

live.merge marks every hop seen / not seen / not watched; this module adds the why, as hop
evidence lines starting ``live:`` (the path document has no other place per hop, and a person
reads them under the hop): the ARP/NDP frames seen there (a solicitation sent, flooded by a
bridge to N ports, answered or not), why a hop could not be watched, and the notes that only
the end of a trace can give (how long it waited for a neighbour, the entry's state, a UDP probe
that needed no reply, the path MTU the source's kernel knows).
"""

from __future__ import annotations

from cntrace.model import Hop, Snapshot
from cntrace.trace.events import NeighFrame, TraceResult, TraceTarget, Unwatched

Key = tuple[int, str]  # (netns inode, interface name)


def _what(f: NeighFrame) -> str:
    return "ARP" if f.family == 4 else "NDP"


def _hop_of(f: NeighFrame, hops: list[Hop]) -> int | None:
    """The hop a frame belongs to: the tap on its interface and direction, request first;
    else (a port watched only for floods) the bridge hop the plan named."""
    key = (f.target.netns_inode, f.target.ifname)
    for want_request in (True, False):
        for h in hops:
            if (h.direction == "request") != want_request:
                continue
            if h.tap == f.direction and (h.netns, h.interface) == key:
                return h.index
    return f.target.hop


def neigh_evidence(hops: list[Hop], result: TraceResult) -> dict[int, list[str]]:
    """Per hop index, the ARP/NDP lines to show there."""
    answered = {f.asked: f for f in result.neigh if f.op == "reply"}
    groups: dict[tuple[int, str, str, str], list[NeighFrame]] = {}
    for f in result.neigh:
        at = _hop_of(f, hops)
        if at is None:
            continue
        sent = f.op == "request" and f.retry_ns > 0
        how = "sent" if sent else ("flood" if f.direction == "egress" else "arrived")
        groups.setdefault((at, f.op, f.asked, how), []).append(f)
    out: dict[int, list[str]] = {}
    for (at, op, asked, role), frames in sorted(groups.items(), key=lambda g: g[1][0].t_ns):
        first = frames[0]
        t = f"+{first.t_ns / 1e6:.3f}ms"
        if op == "reply":
            line = f"{_what(first)} reply: {asked} is at {first.sender_mac} ({t})"
        else:
            ask = "who-has" if first.family == 4 else "solicitation for"
            reply = answered.get(asked)
            end = f", answered by {reply.sender_mac}" if reply is not None else ", unanswered"
            if role == "sent":
                by = first.target.ifname
                line = f"{_what(first)} {ask} {asked} sent {len(frames)}x by {by} ({t}){end}"
            elif role == "flood":
                ports = sorted({f.target.ifname for f in frames})
                line = (
                    f"{_what(first)} {ask} {asked} flooded to {len(ports)} port"
                    f"{'s' if len(ports) != 1 else ''}: {', '.join(ports)} ({t}){end}"
                )
            else:
                on = first.target.ifname
                line = f"{_what(first)} {ask} {asked} arrived {len(frames)}x on {on} ({t}){end}"
        out.setdefault(at, []).append(f"live: {line}")
    return out


def unwatched_evidence(h: Hop, unwatched: tuple[Unwatched, ...]) -> list[str]:
    """Why a hop could not be watched (or only partly)."""
    key = (h.netns, h.interface)
    lines = []
    for u in unwatched:
        t: TraceTarget | None = u.target
        if t is not None and (t.netns_inode, t.ifname) == key:
            lines.append(f"live: {'partly ' if u.partial else ''}not watched: {u.what}: {u.why}")
        elif t is None and h.kind == "netfilter" and u.what.startswith("nftrace"):
            lines.append(f"live: not watched: {u.what}: {u.why}")
    return lines


def end_notes(result: TraceResult, snap: Snapshot | None, source_netns: int | None) -> list[str]:
    """What only the end of the trace can tell, as notes."""
    notes: list[str] = []
    if result.waited:
        notes.append(result.waited)
    unanswered = {f.asked for f in result.unanswered()}
    for n in (n for n in result.neigh_entries if n.ip in unanswered):
        notes.append(
            f"neighbour entry {n.ip} dev {n.ifname} in netns:{n.netns_inode}: {n.state}"
            + (f" ({n.mac})" if n.mac else "")
        )
    sent = result.send_error
    if sent is not None:
        notes.append(
            f"the source's kernel refused to send the probe: {sent.errno} ({sent.message})"
        )
        if sent.mtu:
            notes.append(_mtu_note(sent.mtu, snap, source_netns))
    for e in result.source:
        if e.kind == "icmp-error":
            notes.append(
                f"the source's socket got {e.errno} from an ICMP error"
                + (f" (type {e.icmp_type} code {e.icmp_code})" if e.icmp_type is not None else "")
                + (f" sent by {e.offender}" if e.offender else "")
                + (f"; path MTU {e.mtu}" if e.mtu else "")
            )
    if result.ended == "quiet" and result.outcome()[0] == "delivered":
        notes.append(
            "no reply: UDP needs none; the datagram reached the destination and no drop "
            "(NO_SOCKET) or ICMP error followed"
            + ("" if result.backend == "ebpf" else " (capture cannot see drops)")
        )
    return notes


def _mtu_note(mtu: int, snap: Snapshot | None, netns: int | None) -> str:
    """The path MTU, and whether the kernel learnt it (a PMTU exception from an ICMP
    fragmentation-needed) or has it from the interface or route."""
    size = f"larger than the path MTU {mtu} the source's kernel holds"
    ns = snap.ns(netns) if snap is not None else None
    dev_mtus = {link.mtu for link in ns.links if link.kind != "loopback"} if ns else set()
    if dev_mtus and mtu < min(dev_mtus):
        return (
            f"the probe is {size}: learnt from an ICMP fragmentation-needed (a PMTU "
            f"exception; its interfaces have MTU {min(dev_mtus)})"
        )
    return f"the probe is {size} (the interface's or route's MTU)"
