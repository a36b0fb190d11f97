"""macvlan hops, with the kernel's semantics (drivers/net/macvlan.c).

A macvlan child transmits straight out of its lower (parent) device, past the parent namespace's
IP stack and netfilter; in ``bridge`` mode a frame for a sibling in bridge mode is switched
inside the parent instead. ``private`` children talk to no sibling at all, ``vepa`` ones only
through an external switch that reflects frames (hairpin), which cntrace cannot see; ``passthru``
is the parent's one child. A frame arriving on the parent for a child's MAC goes to the child.
And the classic surprise: the parent's own namespace cannot reach its children through the
parent (what it transmits goes to the wire only); the usual fix is a macvlan "shim" on the host.
"""

from __future__ import annotations

from cntrace.model import Link, Netns, Packet
from cntrace.path.findings import finding
from cntrace.path.walk import Arrive, End, Step, Walk
from cntrace.topology import LinkRef

DEFAULT_MODE = "vepa"  # what `ip link add ... type macvlan` gives without `mode`


def mode(link: Link) -> str:
    return link.macvlan_mode or DEFAULT_MODE


def child_holding(w: Walk, ns: Netns, lower: Link, ip: str) -> LinkRef | None:
    """The macvlan child of ``lower`` that holds ``ip``."""
    for child in w.topo.children(ns, lower):
        if any(a.address == ip for a in child.link.addresses):
            return child
    return None


def egress(w: Walk, ns: Netns, link: Link, nexthop: str, packet: Packet) -> Step:
    """Out of a macvlan child: to a sibling (bridge mode) or out of the parent."""
    from cntrace.path import links  # noqa: PLC0415  (links imports this module)

    w.hop("interface", ns, link.name, packet, f"leaves {w.label(ns)} by {link.name}", tap="egress")
    lower = w.topo.peer(ns, link)
    if lower is None:
        return links.beyond(w, ns, link, nexthop, packet)
    sibling = child_holding(w, lower.netns, lower.link, nexthop)
    if sibling is not None and (sibling.netns.inode, sibling.link.ifindex) != (
        ns.inode,
        link.ifindex,
    ):
        return _to_sibling(w, ns, link, lower, sibling, packet)
    w.hop(
        "macvlan",
        lower.netns,
        lower.link.name,
        packet,
        f"{link.name} ({mode(link)} mode) transmits out of its parent {lower.link.name} in "
        f"{w.label(lower.netns)}, past that namespace's stack",
    )
    return links.EGRESS.get(lower.link.kind, links.wire)(
        w, lower.netns, lower.link, nexthop, packet
    )


def _to_sibling(
    w: Walk, ns: Netns, link: Link, lower: LinkRef, sib: LinkRef, packet: Packet
) -> Step:
    modes = (mode(link), mode(sib.link))
    where = f"{sib.link.name}@{w.label(sib.netns)}"
    if "private" in modes:
        private = link if mode(link) == "private" else sib.link
        end = w.fail(
            "macvlan",
            lower.netns,
            lower.link.name,
            packet,
            f"{private.name} is a private-mode macvlan: no frame passes to {where}",
            why=f"macvlan siblings on {lower.link.name} cannot talk: {private.name} is private",
            reason=None,
            status="unreachable",
        )
        w.add(
            finding(
                "macvlan-private",
                f"{link.name}@{w.label(ns)} and {where} are macvlans on one parent "
                f"({lower.link.name}), and {private.name} is in private mode: the kernel passes "
                "no frame between them, not even through an external switch",
                evidence=[f"{link.name}: mode {modes[0]}", f"{sib.link.name}: mode {modes[1]}"],
                fix=f"ip link set {private.name} type macvlan mode bridge (in its namespace)",
                hop=end.hop,
            )
        )
        return end
    if modes != ("bridge", "bridge"):
        vepa = link if mode(link) != "bridge" else sib.link
        w.add(
            finding(
                "macvlan-vepa",
                f"{vepa.name} is a {mode(vepa)}-mode macvlan: frames between it and its "
                f"siblings on {lower.link.name} go out to the switch, and arrive only if that "
                "switch reflects them (hairpin / reflective relay)",
                evidence=[f"{link.name}: mode {modes[0]}", f"{sib.link.name}: mode {modes[1]}"],
                fix=f"ip link set {vepa.name} type macvlan mode bridge, or enable hairpin on the "
                "switch port",
                severity="warning",
            )
        )
        w.hop("interface", lower.netns, lower.link.name, packet, f"leaves by {lower.link.name}")
        from cntrace.path import links  # noqa: PLC0415

        return links.beyond(w, lower.netns, lower.link, sib.link.name, packet)
    if not sib.link.is_up:
        end = w.fail(
            "macvlan",
            sib.netns,
            sib.link.name,
            packet,
            f"{where} is down",
            why=f"{sib.link.name} in {w.label(sib.netns)} is down",
            reason="DEV_READY",
        )
        return end
    w.hop(
        "macvlan",
        sib.netns,
        sib.link.name,
        packet,
        f"{lower.link.name} switches the frame to its bridge-mode child {sib.link.name}; "
        f"enters {w.label(sib.netns)}",
        tap="ingress",
    )
    return Arrive(sib.netns, sib.link, packet)


def to_child(w: Walk, ns: Netns, link: Link, nexthop: str, packet: Packet) -> Step | None:
    """A frame arriving on parent ``link`` for a child's address goes to that child."""
    child = child_holding(w, ns, link, nexthop)
    if child is None or not w.topo.children(ns, link):
        return None
    if not child.link.is_up:
        return w.fail(
            "macvlan",
            child.netns,
            child.link.name,
            packet,
            f"{child.link.name}@{w.label(child.netns)} is down",
            why=f"{child.link.name} in {w.label(child.netns)} is down",
            reason="DEV_READY",
        )
    w.hop(
        "macvlan",
        child.netns,
        child.link.name,
        packet,
        f"{link.name} hands the frame to its macvlan child {child.link.name}; enters "
        f"{w.label(child.netns)}",
        tap="ingress",
    )
    return Arrive(child.netns, child.link, packet)


def parent_to_child(w: Walk, ns: Netns, link: Link, nexthop: str, packet: Packet) -> End | None:
    """``ns`` sends to ``nexthop`` out of ``link``, the parent of the macvlan that holds it."""
    child = child_holding(w, ns, link, nexthop)
    if child is None:
        return None
    where = f"{child.link.name}@{w.label(child.netns)}"
    end = w.fail(
        "interface",
        ns,
        link.name,
        packet,
        f"{link.name} is the parent of macvlan {where}: what it sends goes to the wire, "
        "never to its children",
        why=f"{w.label(ns)} cannot reach its macvlan child {where} through {link.name}",
        reason="NEIGH_FAILED",
        status="unreachable",
    )
    bits = 32 if packet.family == 4 else 128
    w.add(
        finding(
            "macvlan-parent",
            f"{w.label(ns)} sends to {nexthop} out of {link.name}, but {nexthop} is on "
            f"{where}, a macvlan child of {link.name}: a parent never delivers to its own "
            "macvlan children",
            evidence=[f"{child.link.name}: macvlan, mode {mode(child.link)}, lower {link.name}"],
            fix=f"give {w.label(ns)} a macvlan shim on {link.name}: ip link add mv-shim link "
            f"{link.name} type macvlan mode bridge; ip addr add FREE_IP/32 dev mv-shim; ip link "
            f"set mv-shim up; ip route add {nexthop}/{bits} dev mv-shim",
            hop=end.hop,
        )
    )
    return end
