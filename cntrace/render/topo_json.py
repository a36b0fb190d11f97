"""The ``topo`` document of ``cntrace.discovery/v1``: every host (a namespace holding bridges or
veth peers), its bridges and ports, nested hosts and unowned namespaces.

Split from discovery_json (which keeps ls and show) so each file has one document; it reuses that
module's small field builders so the three documents name things the same way.
"""

from __future__ import annotations

from cntrace.model import Link, Netns, Snapshot
from cntrace.render.discovery_json import (
    Doc,
    _cidrs,
    _envelope,
    _link_ref,
    _ns_ref,
    _sysctls,
    port_text,
)
from cntrace.topology import Topology


def _port_doc(topo: Topology, ns: Netns, port: Link) -> Doc:
    peer = topo.peer(ns, port)
    containers = topo.containers_in(peer.netns.inode) if peer is not None else []
    bp = port.bridge_port
    return {
        "name": port.name,
        "ifindex": port.ifindex,
        "kind": port.kind,
        "up": port.is_up,
        "state": bp.state if bp else None,
        "learning": bp.learning if bp else None,
        "flood": bp.flood if bp else None,
        "hairpin": bp.hairpin if bp else None,
        "isolated": bp.isolated if bp else None,
        "peer": _link_ref(peer, topo),
        "containers": [c.name for c in containers],
        "ports": [port_text(p) for c in containers for p in c.ports],
    }


def topo_doc(snap: Snapshot) -> Doc:
    topo = Topology(snap)
    hosts = []
    for ns in topo.hosts():
        bridges = []
        on_bridge: set[int] = set()
        for br in topo.bridges(ns):
            ports = topo.ports(ns, br)
            on_bridge |= {p.ifindex for p in ports}
            bridges.append(
                {
                    "name": br.name,
                    "ifindex": br.ifindex,
                    "up": br.is_up,
                    "addresses": _cidrs(br.addresses),
                    "stp": br.bridge.stp if br.bridge else False,
                    "ports": [_port_doc(topo, ns, p) for p in ports],
                }
            )
        veths = [
            _port_doc(topo, ns, lk)
            for lk in ns.links
            if lk.kind == "veth" and lk.ifindex not in on_bridge and lk.peer_netns is not None
        ]
        local = [
            c.name
            for c in snap.containers
            if c.netns == ns.inode and c.network_mode == "host" and c.runtime != "netns"
        ]
        parent = topo.inside(ns)
        if parent is not None and parent.inode not in {h.inode for h in topo.hosts()}:
            parent = None
        hosts.append(
            {
                "netns": _ns_ref(topo, ns.inode),
                "is_root": ns.is_root,
                "inside": _ns_ref(topo, parent.inode) if parent is not None else None,
                "uplinks": [
                    {"name": u.name, "addresses": _cidrs(u.addresses), "up": u.is_up}
                    for u in topo.uplinks(ns)
                ],
                "bridges": bridges,
                "veths": veths,
                "host_mode_containers": local,
                "sysctls": _sysctls(ns),
            }
        )
    doc = _envelope("topo", snap)
    doc["hosts"] = hosts
    doc["unowned"] = [
        {
            "inode": ns.inode,
            "label": ns.label,
            "paths": list(ns.paths),
            "links": [lk.name for lk in ns.links],
            "pids": list(ns.pids),
            "error": ns.error,
        }
        for ns in topo.unowned()
    ]
    return doc
