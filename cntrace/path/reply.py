"""The reply: the request turned around where it was delivered, with its NAT undone on the way.

The reply is walked by the same loop and the same hops as the request (Walk.direction says which);
what differs is here: conntrack reverses the NAT the request went through (SNAT as the reply
enters a namespace, DNAT as it leaves one), and a lost reply makes the request's verdict a timeout.
"""

from __future__ import annotations

from dataclasses import replace

from cntrace.model import Netns, Packet
from cntrace.path.walk import End, Walk


def turn(w: Walk, delivered: End) -> tuple[Netns, Packet]:
    """Where the reply starts, and its packet: the delivered request's, reversed."""
    assert delivered.netns is not None and delivered.packet is not None
    w.direction = "reply"
    return delivered.netns, delivered.packet.reply()


def outcome(request: End, back: End) -> End:
    """The verdict of a request that arrived, given how its reply's walk ended."""
    if back.status == "delivered":
        return request
    return replace(
        back,
        status="timeout",
        summary=f"the request arrives, but the reply is lost: {back.summary}",
    )


def undo_snat(w: Walk, ns: Netns, packet: Packet) -> Packet:
    """A reply entering a namespace that source-NATed the request gets its destination back
    (conntrack does it at PREROUTING)."""
    return _undo(w, ns, packet, "snat")


def undo_dnat(w: Walk, ns: Netns, packet: Packet) -> Packet:
    """A reply leaving a namespace that destination-NATed the request gets its source back
    (conntrack does it at POSTROUTING)."""
    return _undo(w, ns, packet, "dnat")


def _undo(w: Walk, ns: Netns, packet: Packet, kind: str) -> Packet:
    if w.request:
        return packet
    for nat in w.nats:
        if nat.netns != ns.inode or nat.kind != kind:
            continue
        if kind == "snat" and (packet.dst, packet.dport) == (nat.after.src, nat.after.sport):
            restored = replace(packet, dst=nat.before.src, dport=nat.before.sport)
            was, now = f"{packet.dst}:{packet.dport}", f"{restored.dst}:{restored.dport}"
        elif kind == "dnat" and (packet.src, packet.sport) == (nat.after.dst, nat.after.dport):
            restored = replace(packet, src=nat.before.dst, sport=nat.before.dport)
            was, now = f"{packet.src}:{packet.sport}", f"{restored.src}:{restored.sport}"
        else:
            continue
        w.hop(
            "nat",
            ns,
            None,
            restored,
            f"conntrack reverses the {kind.upper()}: {was} -> {now}",
            rule=nat.rule,
        )
        return restored
    return packet
