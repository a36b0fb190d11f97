"""The netfilter families a frame meets below the IP hooks: netdev, bridge and arp.

- netdev ``ingress`` runs when a frame enters a device (before the bridge and PREROUTING), netdev
  ``egress`` when it leaves one (after POSTROUTING and the bridge), in the namespace holding the
  device (cntrace.path.links calls them where frames enter and leave).
- A frame crossing a Linux bridge meets the bridge family's prerouting, forward and postrouting
  chains (input for the bridge's own stack, output for frames it sends). With br_netfilter on
  (``bridge-nf-call-iptables``, read per namespace, or the bridge's own ``nf_call_iptables``) the
  IP hooks run from inside those bridge hooks at br_netfilter's priorities (BRNF_PRIORITY): a
  bridge chain at a lower or equal priority runs before them, a higher one after.
- The ARP exchange that resolves the next hop meets the arp family's output chain of the asker,
  the input and output chains of the one that answers, and the input chain of the asker again
  (and netdev/bridge chains on the way, for ARP frames). A drop there is a neighbour failure.

Drops end the walk through Walk.fail and a finding written here (code forward-drop, input-drop,
output-drop or neighbor-failed) that names the family, table, chain and rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from cntrace import netfilter
from cntrace.model import Link, Netns, Packet, RuleRef
from cntrace.netfilter import families
from cntrace.netfilter.results import HookResult
from cntrace.path import diagnose, hooks
from cntrace.path.findings import finding
from cntrace.path.walk import End, Walk
from cntrace.topology import LinkRef

BROADCAST = "ff:ff:ff:ff:ff:ff"


@dataclass(frozen=True)
class Frame:
    """What the L2 families need beyond the packet: MACs, and the ARP operation of an ARP packet."""

    src_mac: str | None = None
    dst_mac: str | None = None
    arp_op: int = 0

    @property
    def ether(self) -> tuple[str, str] | None:
        if self.src_mac is None or self.dst_mac is None:
            return None
        return (self.src_mac.lower(), self.dst_mac.lower())


def _present(w: Walk, ns: Netns, family: str) -> netfilter.Netfilter | None:
    if ns.ruleset.empty or not ns.ruleset.nft_json:
        return None
    nf = w.netfilter(ns)
    return nf if families.has_family(nf, family) else None


def _facts(w: Walk, ns: Netns) -> netfilter.NetnsFacts:
    facts = w.facts.get(ns.inode)
    if facts is None:
        facts = w.facts[ns.inode] = netfilter.facts_for(ns)
    return facts


def run(
    w: Walk,
    ns: Netns,
    family: str,
    hook: str,
    packet: Packet,
    frame: Frame,
    *,
    iif: str | None,
    oif: str | None,
    device: str | None = None,
    below: int | None = None,
    from_prio: int | None = None,
    quiet: bool = False,
) -> End | None:
    """Run the ``family`` chains on ``hook``; the End when they drop the packet.

    A hop is recorded when a rule decided (or the chain dropped); ``quiet`` records only the drop
    (the ARP packets of a resolution, whose accepts would drown the path).
    """
    nf = _present(w, ns, family)
    if nf is None:
        return None
    res = families.evaluate_family(
        nf,
        family,
        hook,
        packet,
        _facts(w, ns),
        iif=iif,
        oif=oif,
        device=device,
        ether=frame.ether,
        arp_op=frame.arp_op,
        below=below,
        from_prio=from_prio,
    )
    if res is None:
        return None
    where = f"{family} {hook.upper()}" + (f" ({device})" if device else "")
    for ref, why in res.uncertain:
        diagnose.rule_uncertain(w, ns, where, ref, why)
    if res.verdict in ("drop", "reject", "queue"):
        name = _name(res)
        what = "ARP packet" if packet.proto == "arp" else "packet"
        return w.fail(
            "netfilter",
            ns,
            device or iif or oif,
            packet,
            f"{where}: {res.verdict.upper()} by {name}",
            why=f"dropped by netfilter in {w.label(ns)} ({where})",
            reason="NETFILTER_DROP",
            rule=res.deciding,
            evidence=[res.deciding.text if res.deciding else f"{name} ({what})"],
        )
    if res.deciding is not None and not quiet:
        w.hop(
            "netfilter",
            ns,
            device or iif or oif,
            packet,
            f"{where}: ACCEPT by {_name(res)}",
            rule=res.deciding,
            evidence=[res.deciding.text],
        )
    return None


def _name(res: HookResult) -> str:
    rule = res.deciding
    if rule is not None:
        return f"{rule.family} {rule.table}/{rule.chain} rule {rule.position}"
    c = res.chains[-1]
    return f"the policy of {c.family} {c.table}/{c.chain} ({c.verdict})"


# ---------------------------------------------------------------------- netdev


def ingress(w: Walk, ns: Netns, link: Link, packet: Packet, frame: Frame = Frame()) -> End | None:
    """A frame enters ``link`` in ``ns``: its netdev (and inet) ingress chains."""
    end = run(w, ns, "netdev", "ingress", packet, frame, iif=link.name, oif=None, device=link.name)
    if end is not None and packet.proto != "arp":
        local = packet.dst in {a.address for lk in ns.links for a in lk.addresses}
        _blame(w, ns, end, "input-drop" if local else "forward-drop", f"ingress of {link.name}")
    return end


def egress(w: Walk, ns: Netns, link: Link, packet: Packet, frame: Frame = Frame()) -> End | None:
    """A frame leaves by ``link`` in ``ns``: its netdev egress chains."""
    end = run(w, ns, "netdev", "egress", packet, frame, iif=None, oif=link.name, device=link.name)
    if end is not None and packet.proto != "arp":
        local = packet.src in {a.address for lk in ns.links for a in lk.addresses}
        _blame(w, ns, end, "output-drop" if local else "forward-drop", f"egress of {link.name}")
    return end


# ---------------------------------------------------------------------- bridge


def brnf_on(ns: Netns, bridge: Link, family: int) -> bool:
    """Whether br_netfilter calls the IP hooks for bridged IPv``family`` traffic on ``bridge``."""
    key = "iptables" if family == 4 else "ip6tables"
    if ns.sysctl(f"net.bridge.bridge-nf-call-{key}", "0") == "1":
        return True
    return family == 4 and bool(bridge.bridge and bridge.bridge.nf_call_iptables)


def bridge_forward(
    w: Walk,
    ns: Netns,
    bridge: Link,
    in_port: Link,
    port: Link,
    packet: Packet,
    frame: Frame,
) -> tuple[Packet, End | None]:
    """The bridge forwards the frame from ``in_port`` to ``port``: the bridge family's
    prerouting, forward and postrouting chains, with br_netfilter's IP hooks between them."""
    brnf = packet.proto != "arp" and brnf_on(ns, bridge, packet.family)
    steps = (
        ("prerouting", in_port.name, None),
        ("forward", in_port.name, port.name),
        ("postrouting", None, port.name),
    )
    for hook, iif, oif in steps:
        split = families.BRNF_PRIORITY[hook] + 1 if brnf else None
        end = run(w, ns, "bridge", hook, packet, frame, iif=iif, oif=oif, below=split)
        if end is None and brnf:
            routed = hook != "prerouting"
            packet, end = hooks.run(
                w,
                ns,
                hook,
                packet,
                iif=bridge.name,
                oif=bridge.name if routed else None,
                physdev_in=in_port.name,
                physdev_out=port.name if routed else None,
            )
            if end is not None:
                diagnose.forward_drop(w, ns, end, bridge.name, bridge.name)
                return packet, end
            end = run(w, ns, "bridge", hook, packet, frame, iif=iif, oif=oif, from_prio=split)
        if end is not None:
            if packet.proto != "arp":
                _blame(w, ns, end, "forward-drop", f"{bridge.name} ({in_port.name} -> {port.name})")
            return packet, end
    return packet, None


def bridge_local_in(
    w: Walk, ns: Netns, bridge: Link, in_port: Link, packet: Packet, frame: Frame
) -> End | None:
    """A frame for the bridge's own stack: bridge prerouting and input, then the ingress of the
    bridge device (the IP hooks follow in cntrace.path.stack)."""
    for hook in ("prerouting", "input"):
        end = run(w, ns, "bridge", hook, packet, frame, iif=in_port.name, oif=None)
        if end is not None:
            _blame(w, ns, end, "input-drop", f"{bridge.name} (from {in_port.name})")
            return end
    return ingress(w, ns, bridge, packet, frame)


def bridge_local_out(
    w: Walk, ns: Netns, bridge: Link, port: Link, packet: Packet, frame: Frame
) -> End | None:
    """The bridge's own stack sends out of ``port``: the bridge device's egress, then the bridge
    family's output and postrouting chains."""
    if (end := egress(w, ns, bridge, packet, frame)) is not None:
        return end
    for hook in ("output", "postrouting"):
        end = run(w, ns, "bridge", hook, packet, frame, iif=None, oif=port.name)
        if end is not None:
            if packet.proto != "arp":
                _blame(w, ns, end, "output-drop", f"{bridge.name} (to {port.name})")
            return end
    return None


def _blame(w: Walk, ns: Netns, end: End, code: str, where: str) -> None:
    rule = end.rule
    summary = end.summary.removeprefix("dropped by netfilter in ")
    w.add(
        finding(
            code,
            f"a rule below the IP hooks drops the packet at {where}: {summary}",
            evidence=[_rule_text(rule) if rule else f"{where}: the chain's policy"],
            fix=_delete_hint(rule)
            if rule
            else "allow this traffic in that chain, or change its policy",
            hop=end.hop,
        )
    )


def _rule_text(rule: RuleRef) -> str:
    return f"{rule.family} {rule.table}/{rule.chain} rule {rule.position}: {rule.text}"


def _delete_hint(rule: RuleRef) -> str:
    if rule.handle is not None:
        return (
            f"remove or narrow the rule: nft delete rule {rule.family} {rule.table} "
            f"{rule.chain} handle {rule.handle}"
        )
    return f"remove or narrow the rule in {rule.family} {rule.table}/{rule.chain}"


# ---------------------------------------------------------------------- arp


@dataclass(frozen=True)
class Bridged:
    """The bridge an ARP exchange crosses (in the namespace holding it)."""

    netns: Netns
    bridge: Link
    in_port: Link | None  # None: the bridge's own stack asks
    out_port: Link


def resolve(
    w: Walk,
    ns: Netns,
    link: Link,
    answerer: LinkRef,
    nexthop: str,
    packet: Packet,
    bridged: Bridged | None = None,
) -> End | None:
    """``ns`` resolves ``nexthop`` on ``link``; ``answerer`` holds it. The End when a rule drops
    the ARP request or its reply (IPv4 request walks only; a static neighbour needs no ARP)."""
    if packet.family != 4 or not w.request:
        return None
    if any(
        n.ip == nexthop and n.ifname == link.name and n.state in ("permanent", "noarp")
        for n in ns.neighbors
    ):
        return None
    spaces = [ns, answerer.netns] + ([bridged.netns] if bridged else [])
    if not any(_present(w, s, f) for s in spaces for f in ("arp", "netdev", "bridge")):
        return None
    mine = {a.address for a in link.addresses}
    sip = packet.src if packet.src in mine or not link.addresses else link.addresses[0].address
    far_ns, far = answerer.netns, answerer.link
    ask = Packet("arp", sip, nexthop)
    answer = Packet("arp", nexthop, sip)
    req = Frame(link.mac, BROADCAST, families.ARP_REQUEST)
    rep = Frame(far.mac, link.mac, families.ARP_REPLY)
    end = (
        run(w, ns, "arp", "output", ask, req, iif=None, oif=link.name, quiet=True)
        or _egress_arp(w, ns, link, ask, req, bridged)
        or _across(w, bridged, ask, req, outbound=True)
        or run(w, far_ns, "netdev", "ingress", ask, req, iif=far.name, oif=None, device=far.name)
        or run(w, far_ns, "arp", "input", ask, req, iif=far.name, oif=None, quiet=True)
        or run(w, far_ns, "arp", "output", answer, rep, iif=None, oif=far.name, quiet=True)
        or run(w, far_ns, "netdev", "egress", answer, rep, iif=None, oif=far.name, device=far.name)
        or _across(w, bridged, answer, rep, outbound=False)
        or _ingress_arp(w, ns, link, answer, rep, bridged)
        or run(w, ns, "arp", "input", answer, rep, iif=link.name, oif=None, quiet=True)
    )
    if end is None:
        return None
    asked = "request" if end.packet is ask else "reply"
    rule = end.rule
    by = _rule_text(rule) if rule else end.summary
    who = f"asked by {w.label(ns)}" if asked == "request" else f"from {w.label(far_ns)}"
    w.add(
        finding(
            "neighbor-failed",
            f"{w.label(ns)} cannot resolve {nexthop} on {link.name}: a netfilter rule drops the "
            f"ARP {asked} ({who})",
            evidence=[by],
            fix=_delete_hint(rule) if rule else "allow ARP in that chain, or change its policy",
            hop=end.hop,
        )
    )
    return End(
        status="unreachable",
        summary=f"{nexthop} cannot be resolved on {link.name}: a rule drops the ARP {asked}",
        reason="NEIGH_FAILED",
        rule=end.rule,
        netns=end.netns,
        packet=packet,
        hop=end.hop,
    )


def _egress_arp(
    w: Walk, ns: Netns, link: Link, p: Packet, f: Frame, bridged: Bridged | None
) -> End | None:
    """The ARP request leaves the asker: by ``link``, or through its bridge and out of a port."""
    end = run(w, ns, "netdev", "egress", p, f, iif=None, oif=link.name, device=link.name)
    if end is None and bridged is not None and bridged.in_port is None:  # the bridge asks
        port = bridged.out_port
        end = run(w, ns, "bridge", "output", p, f, iif=None, oif=port.name) or run(
            w, ns, "bridge", "postrouting", p, f, iif=None, oif=port.name
        )
        end = end or run(w, ns, "netdev", "egress", p, f, iif=None, oif=port.name, device=port.name)
    return end


def _ingress_arp(
    w: Walk, ns: Netns, link: Link, p: Packet, f: Frame, bridged: Bridged | None
) -> End | None:
    """The ARP reply reaches the asker: on ``link``, or on a port of its bridge first."""
    if bridged is not None and bridged.in_port is None:
        port = bridged.out_port.name
        end = run(w, ns, "netdev", "ingress", p, f, iif=port, oif=None, device=port)
        for hook in ("prerouting", "input"):
            end = end or run(w, ns, "bridge", hook, p, f, iif=port, oif=None)
        if end is not None:
            return end
    return run(w, ns, "netdev", "ingress", p, f, iif=link.name, oif=None, device=link.name)


def _across(w: Walk, b: Bridged | None, p: Packet, f: Frame, *, outbound: bool) -> End | None:
    """An ARP frame crossing the bridge between two of its ports."""
    if b is None or b.in_port is None:
        return None
    src, dst = (b.in_port, b.out_port) if outbound else (b.out_port, b.in_port)
    ns = b.netns
    dev = src.name
    end = run(w, ns, "netdev", "ingress", p, f, iif=dev, oif=None, device=dev)
    end = end or bridge_forward(w, ns, b.bridge, src, dst, p, f)[1]
    return end or run(w, ns, "netdev", "egress", p, f, iif=None, oif=dst.name, device=dst.name)
