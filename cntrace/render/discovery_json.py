"""The ``cntrace.discovery/v1`` documents behind ``ls``, ``show`` and ``topo`` (text and --json).

Both renderers start from these plain dicts, so the text a person reads and the JSON a script
parses can never disagree. The shape is documented in docs/discovery.md and published as a JSON
Schema (docs/schemas/discovery-v1.schema.json) that the tests validate against. Nothing here
imports rich: ``cntrace ls --json`` must stay cheap to start.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cntrace.model import (
    DISCOVERY_SCHEMA,
    Address,
    Container,
    Netns,
    PortMapping,
    Snapshot,
    Socket,
)
from cntrace.topology import Attachment, LinkRef, Topology, netfilter_for

Doc = dict[str, Any]


def _envelope(kind: str, snap: Snapshot) -> Doc:
    return {
        "schema": DISCOVERY_SCHEMA,
        "kind": kind,
        "host": {"hostname": snap.hostname, "kernel": snap.kernel, "taken_at": snap.taken_at},
        "warnings": list(snap.warnings),
    }


def _ns_ref(topo: Topology, inode: int | None) -> Doc | None:
    if inode is None:
        return None
    ns = topo.ns(inode)
    return {
        "inode": inode,
        "label": topo.label(inode),
        "name": ns.name if ns else None,
    }


def _cidrs(addrs: Iterable[Address], *, include_link: bool = False) -> list[str]:
    return [a.cidr for a in addrs if a.scope in ("global", "site") or (include_link and a.scope)]


def port_text(p: PortMapping) -> str:
    host = f"[{p.host_ip}]" if ":" in p.host_ip else p.host_ip
    return f"{host}:{p.host_port}->{p.container_port}/{p.proto}"


def _port(p: PortMapping) -> Doc:
    return {
        "proto": p.proto,
        "host_ip": p.host_ip,
        "host_port": p.host_port,
        "container_port": p.container_port,
    }


def _link_ref(ref: LinkRef | None, topo: Topology) -> Doc | None:
    if ref is None:
        return None
    return {
        "name": ref.link.name,
        "ifindex": ref.link.ifindex,
        "netns": ref.netns.inode,
        "netns_label": topo.label(ref.netns.inode),
    }


def container_ips(topo: Topology, c: Container) -> list[str]:
    """The container's global addresses as the kernel has them (the runtime's view if the
    namespace could not be read)."""
    ns = topo.ns(c.netns)
    if ns is not None and ns.links:
        return [
            a.cidr
            for lk in ns.links
            if lk.kind != "loopback"
            for a in lk.addresses
            if a.scope == "global"
        ]
    return [f"{n.ip}/{n.prefixlen}" if n.prefixlen else n.ip for n in c.networks if n.ip]


# --------------------------------------------------------------------------- ls


def ls_row(topo: Topology, c: Container) -> Doc:
    # In host mode the container *is* in the host: the veths there belong to other containers.
    own = c.netns is not None and c.network_mode != "host" and c.host_netns != c.netns
    atts = topo.attachments(c) if own else []
    return {
        "name": c.name,
        "id": c.id,
        "runtime": c.runtime,
        "state": c.state,
        "pid": c.pid,
        "netns": c.netns,
        "network_mode": c.network_mode,
        "ips": container_ips(topo, c),
        "host_veths": [
            _link_ref(a.peer, topo)
            for a in atts
            if a.kind == "veth" and a.peer is not None and not _inward(topo, c, a)
        ],
        "bridges": sorted({a.bridge.link.name for a in atts if a.bridge is not None}),
        "ports": [_port(p) for p in c.ports],
        **({"kubernetes": _kubernetes(topo, c, atts)} if c.runtime == "kubernetes" else {}),
    }


def _kubernetes(topo: Topology, c: Container, atts: list[Attachment]) -> Doc:
    """A pod's place on its node: the node's address, the pod's link there, routes to it.

    ``ls`` reads no routes (docs/performance.md): the node address is then the first global
    address on a node link that is neither a bridge nor a pod's veth, and ``routed`` says that
    the pod's link is not a bridge port (a routed CNI such as ptp)."""
    peer = next((a.peer for a in atts if a.kind == "veth" and a.peer is not None), None)
    bridged = any(a.bridge is not None for a in atts)
    node = peer.netns if peer is not None else topo.ns(c.host_netns)
    node_ip = None
    routes: list[str] = []
    if node is not None:
        default = next((r for r in node.routes if r.dst in ("default", "0.0.0.0/0")), None)
        uplink = node.link(default.oif) if default is not None and default.oif else None
        if uplink is None:  # no routes read: the first address not facing a pod or bridge
            pods = {x.netns for x in topo.snapshot.containers if x.runtime == "kubernetes"}
            uplink = next(
                (
                    lk
                    for lk in node.links
                    if lk.kind not in ("bridge", "loopback")
                    and lk.peer_netns not in pods
                    and any(a.scope == "global" and a.family == 4 for a in lk.addresses)
                ),
                None,
            )
        if uplink is not None:
            node_ip = next(
                (a.address for a in uplink.addresses if a.scope == "global" and a.family == 4),
                None,
            )
        pod_ips = {ip.split("/")[0] for ip in container_ips(topo, c)}
        routes = [
            f"{r.dst} dev {peer.link.name}"
            for r in node.routes
            if peer is not None and r.oif == peer.link.name and r.dst.split("/")[0] in pod_ips
        ]
    sandbox = not c.network_mode.startswith("container:")
    name = c.name.split("/")
    return {
        "pod": c.labels.get("io.kubernetes.pod.name", name[1] if len(name) > 1 else c.name),
        "namespace": c.labels.get("io.kubernetes.pod.namespace", name[0]),
        "container": None if sandbox else c.labels.get("io.kubernetes.cri.container-name"),
        "node_ip": node_ip,
        "cni_interface": peer.link.name if peer is not None else None,
        "routed": peer is not None and not bridged,
        "routes": routes,
    }


def _inward(topo: Topology, c: Container, att: Attachment) -> bool:
    """A veth of a node into its own pods (a port of its own bridge), not towards its host."""
    return (
        att.peer is not None
        and att.peer.netns.inode != c.host_netns
        and att.interface.link.master is not None
    )


def ls_doc(snap: Snapshot, *, runtime: str | None = None, name: str | None = None) -> Doc:
    topo = Topology(snap)
    rows = [
        ls_row(topo, c)
        for c in sorted(snap.containers, key=lambda c: (c.runtime, c.name))
        if (runtime is None or c.runtime == runtime)
        and (name is None or name.lower() in c.name.lower())
    ]
    doc = _envelope("ls", snap)
    doc["containers"] = rows
    return doc


# --------------------------------------------------------------------------- show


def _address(a: Address) -> Doc:
    return {"family": a.family, "cidr": a.cidr, "scope": a.scope}


def _interface(topo: Topology, att: Attachment) -> Doc:
    link = att.interface.link
    host: Doc | None = None
    if att.peer is not None or att.bridge is not None:
        bridge = att.bridge.link if att.bridge is not None else None
        host = {
            "kind": att.kind,
            "peer": _link_ref(att.peer, topo),
            "bridge": None
            if bridge is None or att.bridge is None
            else {
                "name": bridge.name,
                "ifindex": bridge.ifindex,
                "netns": att.bridge.netns.inode,
                "addresses": _cidrs(bridge.addresses),
                "stp": bridge.bridge.stp if bridge.bridge else False,
                "vlan_filtering": bridge.bridge.vlan_filtering if bridge.bridge else False,
                "up": bridge.is_up,
            },
            "port": None
            if att.port is None
            else {
                "state": att.port.state,
                "learning": att.port.learning,
                "flood": att.port.flood,
                "hairpin": att.port.hairpin,
                "isolated": att.port.isolated,
            },
            "peer_up": att.peer.link.is_up if att.peer is not None else None,
            "fdb": None
            if att.fdb is None
            else {
                "mac": att.fdb.mac,
                "port": att.fdb.port,
                "vlan": att.fdb.vlan,
                "static": att.fdb.static,
            },
        }
    return {
        "name": link.name,
        "ifindex": link.ifindex,
        "kind": link.kind,
        "mac": link.mac,
        "mtu": link.mtu,
        "up": link.is_up,
        "oper_state": link.oper_state,
        "addresses": [_address(a) for a in link.addresses],
        "host_side": host,
    }


def _socket(s: Socket) -> Doc:
    reach = "loopback" if s.loopback_only else "all" if s.wildcard else "address"
    return {
        "proto": s.proto,
        "family": s.family,
        "local_ip": s.local_ip,
        "local_port": s.local_port,
        "reachable_from": reach,
        "pid": s.pid,
        "process": s.process,
    }


def _routes(ns: Netns) -> list[Doc]:
    return [
        {
            "family": r.family,
            "dst": r.dst,
            "table": r.table,
            "type": r.type,
            "gateway": r.gateway,
            "oif": r.oif,
            "prefsrc": r.prefsrc,
            "metric": r.metric,
        }
        for r in ns.routes
        if r.table != 255  # the local table is the kernel's own bookkeeping
    ]


def _rules(ns: Netns) -> list[Doc]:
    return [
        {
            "family": r.family,
            "priority": r.priority,
            "table": r.table,
            "action": r.action,
            "src": r.src,
            "dst": r.dst,
            "iif": r.iif,
            "oif": r.oif,
            "fwmark": r.fwmark,
            "invert": r.invert,
        }
        for r in ns.rules
    ]


def _gateway(ns: Netns) -> Doc | None:
    for r in sorted(ns.routes, key=lambda r: (r.family, r.metric)):
        if r.table == 254 and r.dst in ("0.0.0.0/0", "::/0") and r.type == "unicast":
            return {"family": r.family, "gateway": r.gateway, "oif": r.oif}
    return None


SYSCTL_KEYS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.conf.default.rp_filter",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv6.conf.all.forwarding",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_count",
    "net.netfilter.nf_conntrack_max",
)


def _sysctls(ns: Netns | None, interfaces: Iterable[str] = ()) -> dict[str, str]:
    if ns is None:
        return {}
    keys = list(SYSCTL_KEYS)
    for name in interfaces:
        keys += [f"net.ipv4.conf.{name}.rp_filter", f"net.ipv4.conf.{name}.forwarding"]
    return {k: ns.sysctls[k] for k in keys if k in ns.sysctls}


def _netfilter(snap: Snapshot, c: Container) -> Doc:
    found = netfilter_for(snap, c)
    return {
        "status": found.status,
        "reason": found.reason,
        "netns": found.netns,
        "dnat": [_rule(r) for r in found.dnat],
        "egress": [_rule(r) for r in found.egress],
        "filter": [_rule(r) for r in found.filter],
    }


def _rule(r: Any) -> Doc:
    return {
        "backend": r.backend,
        "family": r.family,
        "table": r.table,
        "chain": r.chain,
        "position": r.position,
        "handle": r.handle,
        "text": r.text,
        "verdict": r.verdict,
    }


def as_container(snap: Snapshot, target: Container | Netns) -> Container:
    """A namespace asked for with netns:NAME, shown like a container of runtime netns."""
    if isinstance(target, Container):
        return target
    owner = Topology(snap).owner(target.inode)
    if owner is not None:
        return owner
    return Container(
        id=f"netns:{target.inode}",
        name=target.label if not target.is_root else "host",
        runtime="netns",
        pid=target.pids[0] if target.pids else None,
        netns=target.inode,
        netns_path=target.paths[0] if target.paths else None,
        network_mode="host" if target.is_root else "unknown",
        host_netns=target.inode if target.is_root else None,
    )


def show_doc(snap: Snapshot, target: Container | Netns) -> Doc:
    topo = Topology(snap)
    c = as_container(snap, target)
    ns = topo.ns(c.netns)
    host_ns = topo.ns(c.host_netns)
    atts = topo.attachments(c)
    shared = [o.name for o in topo.containers_in(c.netns) if o is not c]
    doc = _envelope("show", snap)
    doc["container"] = {
        "name": c.name,
        "id": c.id,
        "runtime": c.runtime,
        "state": c.state,
        "pid": c.pid,
        "image": c.image,
        "labels": dict(c.labels),
        "network_mode": c.network_mode,
        "netns": None
        if c.netns is None
        else {
            "inode": c.netns,
            "path": c.netns_path,
            "label": topo.label(c.netns),
            "name": ns.name if ns else None,
            "error": ns.error if ns else "not read",
            "shared_with": shared,
        },
        "host_netns": _ns_ref(topo, c.host_netns),
        "networks": [
            {
                "name": n.name,
                "driver": n.driver,
                "bridge": n.bridge,
                "ip": n.ip,
                "prefixlen": n.prefixlen,
                "ipv6": n.ipv6,
                "gateway": n.gateway,
                "mac": n.mac,
            }
            for n in c.networks
        ],
        "interfaces": [_interface(topo, a) for a in atts],
        "routes": _routes(ns) if ns else [],
        "rules": _rules(ns) if ns else [],
        "default_gateway": _gateway(ns) if ns else None,
        "resolver": None
        if c.resolver is None
        else {
            "nameservers": list(c.resolver.nameservers),
            "search": list(c.resolver.search),
            "options": list(c.resolver.options),
        },
        "sockets": [_socket(s) for s in ns.sockets] if ns else [],
        "ports": [_port(p) for p in c.ports],
        "sysctls": {
            "container": _sysctls(ns, (a.interface.link.name for a in atts)),
            "host": _sysctls(
                host_ns,
                (a.peer.link.name for a in atts if a.peer is not None)
                if host_ns is not None and host_ns is not ns
                else (),
            )
            if host_ns is not None and host_ns is not ns
            else {},
        },
        "netfilter": _netfilter(snap, c),
    }
    return doc
