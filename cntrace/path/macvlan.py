"""macvlan hops, with the kernel's semantics (drivers/net/macvlan.c).

A macvlan child transmits straight out of its lower (parent) device, past the parent namespace's
IP stack and netfilter; in ``bridge`` mode a frame for a sibling in bridge mode is switched
inside the parent instead. ``private`` children talk to no sibling at all, ``vepa`` ones only
through an external switch that reflects frames (hairpin): unseen, a warning; a namespace
cntrace sees that cannot reflect them (a veth peer outside a hairpin bridge port) ends the path
there (its ARP is never answered); ``passthru``
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
        far = _far_end_not_reflecting(w, lower)
        evidence = [f"{link.name}: mode {modes[0]}", f"{sib.link.name}: mode {modes[1]}"]
        w.hop("interface", lower.netns, lower.link.name, packet, f"leaves by {lower.link.name}")
        if far is not None:  # the switch is a namespace cntrace sees, and it reflects nothing
            end = w.fail(
                "veth",
                far.netns,
                far.link.name,
                packet,
                f"enters {w.label(far.netns)} by {far.link.name}, which does not send it back: "
                f"the frame (and the ARP before it) is for {where}, not for this namespace",
                why=f"{w.label(far.netns)} does not reflect frames back to {lower.link.name}",
                reason=None,
                status="unreachable",
            )
            w.add(
                finding(
                    "macvlan-vepa",
                    f"{vepa.name} is a {mode(vepa)}-mode macvlan: frames between it and its "
                    f"siblings on {lower.link.name} go out to {w.label(far.netns)}, which does "
                    "not reflect them (no bridge port in hairpin mode there), so they never "
                    "come back",
                    evidence=[*evidence, _reflects_text(w, far)],
                    fix=f"ip link set {vepa.name} type macvlan mode bridge, or enable hairpin on "
                    f"{far.link.name}'s bridge port in {w.label(far.netns)}",
                    hop=end.hop,
                    severity="error",
                )
            )
            return end
        w.add(
            finding(
                "macvlan-vepa",
                f"{vepa.name} is a {mode(vepa)}-mode macvlan: frames between it and its "
                f"siblings on {lower.link.name} go out to the switch, and arrive only if that "
                "switch reflects them (hairpin / reflective relay)",
                evidence=evidence,
                fix=f"ip link set {vepa.name} type macvlan mode bridge, or enable hairpin on the "
                "switch port",
                severity="warning",
            )
        )
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


def _far_end_not_reflecting(w: Walk, lower: LinkRef) -> LinkRef | None:
    """The veth peer of the parent when cntrace sees it and it cannot send a frame back out of
    the port it came in by: not a bridge port, or one without hairpin (a bridge never forwards
    out of the ingress port otherwise). None when the far end is unseen or may reflect."""
    far = w.topo.peer(lower.netns, lower.link)
    if far is None:
        return None
    master = w.topo.master(far.netns, far.link)
    port = far.link.bridge_port
    if master is not None and master.kind == "bridge" and (port is None or port.hairpin):
        return None
    if master is not None and master.kind != "bridge":
        return None  # a bond, a vrf, an OVS port...: cntrace does not model what it reflects
    return far


def _reflects_text(w: Walk, far: LinkRef) -> str:
    master = w.topo.master(far.netns, far.link)
    if master is None:
        return f"{far.link.name} in {w.label(far.netns)}: the veth peer, in no bridge"
    return f"{far.link.name} in {w.label(far.netns)}: port of {master.name}, hairpin off"
