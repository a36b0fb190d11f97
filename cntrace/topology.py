"""How the namespaces of a Snapshot are wired together: veth pairs, bridge ports, host sides.

Pure: everything here takes a Snapshot and returns values. The kernel only says "veth eth0's peer
is ifindex 7 in the namespace with inode N"; this module turns that into what an engineer asks:
which host veth belongs to this container, which bridge it is plugged into, in what port state,
whether the bridge has learnt the container's MAC there, and which namespace is "the host" for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cntrace.model import BridgePort, Container, FdbEntry, Link, Netns, RuleRef, Snapshot
from cntrace.refs import resolve_ref as resolve_ref  # noqa: PLC0414  (re-exported)

VETH_LIKE = ("veth", "netkit")
PLAIN = ("netns", "pid")  # "runtimes" that only name a namespace, not a container engine
LOWER_LIKE = ("macvlan", "macvtap", "vlan", "ipvlan")


@dataclass(frozen=True, slots=True)
class LinkRef:
    """A link together with the namespace it lives in."""

    netns: Netns
    link: Link

    @property
    def label(self) -> str:
        return f"{self.link.name}@{self.netns.label}"


@dataclass(frozen=True, slots=True)
class Attachment:
    """One interface of a container and what it is plugged into on the host side.

    ``kind`` is veth (``peer`` is the other end), macvlan/vlan/ipvlan (``peer`` is the lower
    device), or the link's own kind when it has no other side (loopback, dummy, a moved device).
    """

    interface: LinkRef
    kind: str
    peer: LinkRef | None = None
    bridge: LinkRef | None = None
    port: BridgePort | None = None
    fdb: FdbEntry | None = None  # the bridge's entry for the container interface's MAC


@dataclass(frozen=True, slots=True)
class VethPair:
    """Both ends of one veth."""

    a: LinkRef
    b: LinkRef


class Topology:
    """Indexes over one Snapshot; build once and ask many questions."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._links: dict[int, dict[int, Link]] = {
            ns.inode: {link.ifindex: link for link in ns.links} for ns in snapshot.netns
        }
        self._by_name: dict[int, dict[str, Link]] = {
            ns.inode: {link.name: link for link in ns.links} for ns in snapshot.netns
        }
        self._children: dict[tuple[int, int], list[LinkRef]] | None = None
        self._containers_by_netns: dict[int, list[Container]] = {}
        for c in snapshot.containers:
            if c.netns is not None:
                self._containers_by_netns.setdefault(c.netns, []).append(c)

    # ----------------------------------------------------------------- basic look-ups

    def ns(self, inode: int | None) -> Netns | None:
        return self.snapshot.ns(inode)

    def link(self, inode: int, ifindex: int) -> Link | None:
        return self._links.get(inode, {}).get(ifindex)

    def link_named(self, inode: int, name: str) -> Link | None:
        return self._by_name.get(inode, {}).get(name)

    def containers_in(self, inode: int | None) -> list[Container]:
        """Containers whose namespace this is (a pod and its app containers share one)."""
        return list(self._containers_by_netns.get(inode, [])) if inode is not None else []

    def label(self, inode: int | None) -> str:
        """How to name a namespace to a person: ``host`` for the root, the container that owns
        it, else its `ip netns` name or netns:INODE. A namespace holding host-mode containers is
        a host, not that container."""
        ns = self.ns(inode)
        if ns is None:
            return "?" if inode is None else f"netns:{inode}"
        if ns.is_root:
            return "host"
        for c in self.containers_in(inode):
            if (
                c.runtime != "pid"
                and c.network_mode != "host"
                and not c.network_mode.startswith("container:")
            ):
                return c.name
        return ns.label

    def owner(self, inode: int | None) -> Container | None:
        """The container that owns a namespace, None when none does. A container sharing one
        (host mode, ``container:X``) is a sharer, never the owner: the root namespace is the
        host's whoever runs in it. A runtime's record comes before a bare ``pid:N``."""
        ns = self.ns(inode)
        if ns is not None and ns.is_root:
            return None
        found = [
            c
            for c in self.containers_in(inode)
            if c.network_mode != "host" and not c.network_mode.startswith("container:")
        ]
        found.sort(key=lambda c: c.runtime in PLAIN)
        return found[0] if found else None

    def sharers(self, inode: int | None) -> list[Container]:
        """Containers that share a namespace another owns (host mode, ``container:X``)."""
        return [
            c
            for c in self.containers_in(inode)
            if c.network_mode == "host" or c.network_mode.startswith("container:")
        ]

    def peer(self, ns: Netns, link: Link) -> LinkRef | None:
        """The other end of a veth, or the lower device of a macvlan/vlan."""
        if link.peer_ifindex is None:
            return None
        if link.peer_netns is None and link.peer_nsid is not None:
            return None  # in a namespace discovery could not identify, not in this one
        where = link.peer_netns if link.peer_netns is not None else ns.inode
        other_ns = self.ns(where)
        if other_ns is None:
            return None
        other = self.link(other_ns.inode, link.peer_ifindex)
        if other is None:
            return None
        if link.kind in VETH_LIKE and other.peer_ifindex not in (None, link.ifindex):
            return None  # an ifindex collision, not the real peer
        return LinkRef(other_ns, other)

    def children(self, ns: Netns, link: Link) -> list[LinkRef]:
        """The macvlan (and macvtap) devices whose lower device is ``link``, in any namespace."""
        if self._children is None:
            index: dict[tuple[int, int], list[LinkRef]] = {}
            for other in self.snapshot.netns:
                for lk in other.links:
                    if lk.kind in ("macvlan", "macvtap"):
                        lower = self.peer(other, lk)
                        if lower is not None:
                            key = (lower.netns.inode, lower.link.ifindex)
                            index.setdefault(key, []).append(LinkRef(other, lk))
            self._children = index
        return self._children.get((ns.inode, link.ifindex), [])

    def master(self, ns: Netns, link: Link) -> Link | None:
        return self.link(ns.inode, link.master) if link.master is not None else None

    def ports(self, ns: Netns, bridge: Link) -> list[Link]:
        """Links enslaved to ``bridge``, by name."""
        return sorted(
            (lk for lk in ns.links if lk.master == bridge.ifindex), key=lambda lk: lk.name
        )

    def fdb_entry(self, ns: Netns, bridge: str, mac: str | None) -> FdbEntry | None:
        if mac is None:
            return None
        for entry in ns.fdb:
            if entry.mac == mac and entry.bridge == bridge and not entry.local:
                return entry
        return None

    # ----------------------------------------------------------------- pairs and graph

    def veth_pairs(self) -> list[VethPair]:
        """Each veth pair once, also pairs with both ends in one namespace."""
        seen: set[tuple[int, int]] = set()
        out = []
        for ns in self.snapshot.netns:
            for link in ns.links:
                if link.kind not in VETH_LIKE or (ns.inode, link.ifindex) in seen:
                    continue
                other = self.peer(ns, link)
                if other is None:
                    continue
                seen.add((ns.inode, link.ifindex))
                seen.add((other.netns.inode, other.link.ifindex))
                out.append(VethPair(LinkRef(ns, link), other))
        return out

    def graph(self) -> dict[int, set[int]]:
        """Namespace inode -> the namespaces it has a veth (or lower device) into."""
        edges: dict[int, set[int]] = {ns.inode: set() for ns in self.snapshot.netns}
        for ns in self.snapshot.netns:
            for link in ns.links:
                if link.peer_netns is not None and link.peer_netns != ns.inode:
                    edges[ns.inode].add(link.peer_netns)
                    edges.setdefault(link.peer_netns, set()).add(ns.inode)
        return edges

    # ----------------------------------------------------------------- containers

    def attachments(self, container: Container) -> list[Attachment]:
        """Every non-loopback interface of the container's namespace and its host side."""
        ns = self.ns(container.netns)
        if ns is None:
            return []
        return [self.attachment(ns, link) for link in ns.links if link.kind != "loopback"]

    def attachment(self, ns: Netns, link: Link) -> Attachment:
        here = LinkRef(ns, link)
        other = self.peer(ns, link)
        if link.kind in VETH_LIKE and other is not None:
            bridge_link = self.master(other.netns, other.link)
            if bridge_link is not None and bridge_link.kind == "bridge":
                return Attachment(
                    here,
                    "veth",
                    peer=other,
                    bridge=LinkRef(other.netns, bridge_link),
                    port=other.link.bridge_port,
                    fdb=self.fdb_entry(other.netns, bridge_link.name, link.mac),
                )
            return Attachment(here, "veth", peer=other)
        if link.kind in LOWER_LIKE:
            return Attachment(here, link.kind, peer=other)
        return Attachment(here, link.kind)

    def host_netns(self, container: Container) -> int | None:
        """The namespace its runtime treats as the host: where its veth peers or lower devices
        live; its own namespace in host mode; for ``none`` and unknown, where the same runtime's
        bridges are (else the root namespace)."""
        if container.network_mode.startswith("container:"):
            other = self.by_name(container.network_mode.split(":", 1)[1], container.runtime)
            if other is not None and other is not container:
                return self.host_netns(other)
        if container.network_mode == "host":
            return container.netns
        votes: dict[int, int] = {}
        for att in self.attachments(container):
            if att.peer is not None and att.peer.netns.inode != container.netns:
                votes[att.peer.netns.inode] = votes.get(att.peer.netns.inode, 0) + 1
        # A node (a host inside a host) also has veths into its own pods: a namespace whose
        # every veth or lower device leads here is this one's child, not its host.
        outward = {k: v for k, v in votes.items() if not self._leaf_of(k, container.netns)}
        if outward:
            votes = outward
        if votes:
            return max(votes, key=lambda k: (votes[k], self._hub(k)))
        bridges = {n.bridge for n in container.networks if n.bridge}
        if not bridges:
            for other in self.snapshot.containers:
                if other.runtime == container.runtime and other is not container:
                    bridges |= {n.bridge for n in other.networks if n.bridge}
        for ns in self.snapshot.netns:
            if any(lk.kind == "bridge" and lk.name in bridges for lk in ns.links):
                return ns.inode
        root = self.snapshot.root
        return root.inode if root is not None else None

    def _leaf_of(self, inode: int, of: int | None) -> bool:
        """Whether every veth peer and lower device of namespace ``inode`` is in ``of``."""
        ns = self.ns(inode)
        if ns is None or of is None:
            return False
        sides = [self.peer(ns, lk) for lk in ns.links if lk.peer_ifindex is not None]
        return bool(sides) and all(s is not None and s.netns.inode == of for s in sides)

    def _hub(self, inode: int) -> tuple[bool, bool, int]:
        """How host-like a namespace is: the root, holding bridges, with many peers."""
        ns = self.ns(inode)
        if ns is None:
            return (False, False, 0)
        peers = sum(1 for lk in ns.links if lk.peer_netns is not None)
        return (ns.is_root, bool(self.bridges(ns)), peers)

    def inside(self, ns: Netns) -> Netns | None:
        """The host a host namespace lives in: a node (kind, Docker-in-Docker) that is itself a
        container plugged into another host. None for the root and for top-level hosts."""
        if ns.is_root:
            return None
        for c in self.containers_in(ns.inode):
            if c.host_netns not in (None, ns.inode):
                return self.ns(c.host_netns)
        return None

    def infer_mode(self, container: Container) -> str:
        """A network mode for namespaces no runtime describes, from how they are wired."""
        kinds = [a.kind for a in self.attachments(container)]
        atts = self.attachments(container)
        if any(a.bridge is not None for a in atts):
            return "bridge"
        for kind in ("macvlan", "ipvlan", "vlan"):
            if kind in kinds:
                return kind
        if any(k == "vxlan" for k in kinds):
            return "overlay"
        if "veth" in kinds:
            return "veth"
        if not kinds:
            return "none"
        return "unknown"

    def by_name(self, name: str, runtime: str | None = None) -> Container | None:
        for c in self.snapshot.containers:
            if name in (c.name, c.id) and (runtime is None or c.runtime == runtime):
                return c
        return None

    # ----------------------------------------------------------------- host view

    def bridges(self, ns: Netns) -> list[Link]:
        return [lk for lk in ns.links if lk.kind == "bridge"]

    def uplinks(self, ns: Netns) -> list[Link]:
        """Links carrying a default route (main table) in a namespace that holds bridges."""
        if not self.bridges(ns):
            return []
        names = []
        for route in ns.routes:
            default = route.dst in ("0.0.0.0/0", "::/0") and route.table == 254
            if default and route.oif and route.oif not in names:
                names.append(route.oif)
        return [lk for n in names if (lk := self.link_named(ns.inode, n)) is not None]

    def hosts(self) -> list[Netns]:
        """Namespaces that play "host": the root, any holding a bridge, and any a runtime's
        container is plugged into (Docker in its own namespace, a lab's bridge namespace)."""
        wanted: set[int] = set()
        root = self.snapshot.root
        if root is not None:
            wanted.add(root.inode)
        for ns in self.snapshot.netns:
            if self.bridges(ns):
                wanted.add(ns.inode)
        for c in self.snapshot.containers:
            if c.runtime in PLAIN:
                continue
            if c.host_netns is not None and c.host_netns != c.netns:
                wanted.add(c.host_netns)
        return [ns for ns in self.snapshot.netns if ns.inode in wanted]

    def unowned(self) -> list[Netns]:
        """Namespaces no container runtime owns and that are not a host (plain `ip netns`
        namespaces, a process's private namespace)."""
        hosts = {ns.inode for ns in self.hosts()}
        return [
            ns
            for ns in self.snapshot.netns
            if ns.inode not in hosts
            and not any(c.runtime not in PLAIN for c in self._containers_by_netns.get(ns.inode, ()))
        ]


# --------------------------------------------------------------------------- labels


def label_of(snapshot: Snapshot, inode: int | None) -> str:
    """How to name a namespace to a person: host, the owning container's name, or netns:NAME."""
    return Topology(snapshot).label(inode)


# --------------------------------------------------------------------------- netfilter attribution


@dataclass(frozen=True, slots=True)
class NatAttribution:
    """The netfilter rules that implement a container's published ports and its egress.

    ``status``: ok | no-rules (the host namespace has no ruleset in the snapshot) |
    unavailable (the netfilter model could not be used; ``reason`` says why).
    """

    status: str
    netns: int | None = None  # where the rules live (the container's host namespace)
    reason: str | None = None
    dnat: tuple[RuleRef, ...] = ()
    egress: tuple[RuleRef, ...] = ()
    filter: tuple[RuleRef, ...] = ()


def netfilter_for(snapshot: Snapshot, container: Container) -> NatAttribution:
    """Attribute its host namespace's rules to one container through the netfilter model.

    DNAT: rules that translate to one of the container's addresses, plus the rules that jump
    into a chain holding them when they match a published port (netavark's per-container
    ``NETAVARK-DN-*`` chains). Egress: MASQUERADE/SNAT rules whose source match covers the
    container, and the rules of chains that postrouting jumps into for its source (netavark's
    ``NETAVARK-<id>``). Filter: every other rule that names its addresses or its host veth.
    """
    host = snapshot.ns(container.host_netns)
    if host is None or host.ruleset.empty:
        why = "no ruleset read for its host namespace" if host is not None else "no host netns"
        return NatAttribution("no-rules", container.host_netns, why)
    if container.host_netns == container.netns:
        return NatAttribution("no-rules", host.inode, "it shares the host's namespace")
    try:
        from cntrace import netfilter  # noqa: PLC0415  (the model is optional for discovery)

        nf = netfilter.load(host.ruleset)
        topo = Topology(snapshot)
        addresses: set[str] = {n.ip for n in container.networks if n.ip}
        veths: set[str] = set()
        for att in topo.attachments(container):
            addresses |= {a.address for a in att.interface.link.addresses if a.scope == "global"}
            if att.peer is not None and att.peer.netns.inode == host.inode:
                veths.add(att.peer.link.name)
        if not addresses and not veths:
            return NatAttribution("ok", host.inode)
        by_addr = _flat(
            netfilter.rules_touching(nf, addresses=sorted(addresses), interfaces=sorted(veths))
        )
        ports = sorted({p.host_port for p in container.ports})
        by_port = _flat(netfilter.rules_touching(nf, ports=ports)) if ports else []
        chains = {
            (t.backend, t.family, t.name, n): c for t in nf.tables for n, c in t.chains.items()
        }
    except Exception as exc:  # a young model must never break `show`
        return NatAttribution("unavailable", host.inode, f"{type(exc).__name__}: {exc}")
    return _classify(host.inode, by_addr, by_port, chains)


def _key(r: RuleRef) -> tuple[str, str, str, str, int | None]:
    return (r.backend, r.family, r.table, r.chain, r.position)


def _flat(by_hook: dict[str, list[RuleRef]]) -> list[RuleRef]:
    seen: dict[tuple[str, str, str, str, int | None], RuleRef] = {}
    for refs in by_hook.values():
        for r in refs:
            seen.setdefault(_key(r), r)
    return list(seen.values())


def _jump_target(r: RuleRef) -> str | None:
    parts = (r.verdict or "").split()
    return parts[1] if len(parts) == 2 and parts[0] in ("jump", "goto") else None


def _kind(r: RuleRef) -> str:
    verb = (r.verdict or "").split(" ", 1)[0].lower()
    if verb in ("dnat", "redirect"):
        return "dnat"
    if verb in ("masquerade", "snat"):
        return "egress"
    return "other"


def _classify(
    netns: int,
    by_addr: list[RuleRef],
    by_port: list[RuleRef],
    chains: dict[tuple[str, str, str, str], Any],
) -> NatAttribution:
    dnat = [r for r in by_addr if _kind(r) == "dnat"]
    egress = [r for r in by_addr if _kind(r) == "egress"]
    dnat_chains = {(r.backend, r.family, r.table, r.chain) for r in dnat}
    for r in by_port:
        if (r.backend, r.family, r.table, _jump_target(r)) in dnat_chains:
            dnat.insert(0, r)  # the published port's entry into the container's own chain
    followed = []
    for r in by_addr:
        target = _jump_target(r)
        chain = chains.get((r.backend, r.family, r.table, target)) if target else None
        if r.table == "nat" and chain is not None and _kind(r) == "other":
            inner = [rule.ref() for rule in chain.rules]
            if any(_kind(i) == "egress" for i in inner):
                followed.append(r)
                followed.extend(inner)
    done = {_key(r) for r in dnat + egress + followed}
    egress = followed + [r for r in egress if _key(r) not in {_key(f) for f in followed}]
    other = [r for r in by_addr if _key(r) not in done and r.table != "nat"]
    return NatAttribution("ok", netns, None, tuple(dnat), tuple(egress), tuple(other))
