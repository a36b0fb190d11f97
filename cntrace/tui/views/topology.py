"""The topology tree's nodes: hosts, uplinks, bridges, ports, containers, published ports."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text

from cntrace.model import Netns, Snapshot
from cntrace.render.discovery_json import port_text
from cntrace.render.topo_json import topo_doc
from cntrace.topology import Topology
from cntrace.tui.views.containers import Doc


@dataclass(frozen=True, slots=True)
class NodeRef:
    """What a topology tree node stands for; the details pane is computed from it."""

    kind: str  # host | uplink | bridge | port | container | hostmode | unowned | info
    netns: int | None = None
    name: str | None = None  # link name (uplink, bridge, port), container id (container)


@dataclass(slots=True)
class TreeNode:
    """One line of the topology tree and what it refers to."""

    label: Text
    ref: NodeRef
    children: list[TreeNode] = field(default_factory=list)
    expand: bool = True


def _port_node(topo: Topology, host: Netns, port: Doc, prefix: str = "") -> TreeNode:
    label = Text(f"{prefix}{port['name']} -> ")
    peer = port.get("peer")
    who = topo.containers_in(peer["netns"]) if peer else []
    label.append(", ".join(c.name for c in who) or (peer["netns_label"] if peer else "?"), "bold")
    if port["state"] not in (None, "forwarding"):
        label.append(f" {port['state']}", "bold red")
    if not port["up"]:
        label.append(" (down)", "bold red")
    node = TreeNode(label, NodeRef("port", host.inode, port["name"]), expand=False)
    for c in who:
        c_label = Text(c.name, "bold")
        c_label.append(f" ({c.runtime})", "dim")
        cnode = TreeNode(c_label, NodeRef("container", c.netns, c.id))
        for p in c.ports:
            cnode.children.append(TreeNode(Text(f"published {port_text(p)}"), NodeRef("info")))
        node.children.append(cnode)
    node.expand = True
    return node


def _within(node: TreeNode, other: TreeNode) -> bool:
    """Whether ``other`` is ``node`` or below it (a broken snapshot may claim a cycle)."""
    return node is other or any(_within(c, other) for c in node.children)


def topology_nodes(snapshot: Snapshot) -> list[TreeNode]:
    """The host as a tree: hosts, their uplinks, bridges, ports, containers, published ports; a
    host inside a host (a Kubernetes-in-Docker node, a router namespace with its own bridges)
    sits under the host holding the other end of its uplink, as `cntrace topo` draws it."""
    topo = Topology(snapshot)
    doc = topo_doc(snapshot)
    out: list[TreeNode] = []
    by_inode: dict[int, TreeNode] = {}
    inside: list[tuple[int, TreeNode]] = []
    for host in doc["hosts"]:
        inode = host["netns"]["inode"]
        ns = topo.ns(inode)
        assert ns is not None
        label = Text(host["netns"]["label"], "bold")
        fwd = host["sysctls"].get("net.ipv4.ip_forward")
        if host.get("inside"):
            label.append(f"  host inside {host['inside']['label']}", "dim")
        if fwd is not None:
            label.append(f"  ip_forward={fwd}", "dim" if fwd == "1" else "bold red")
        hnode = TreeNode(label, NodeRef("host", inode))
        for up in host["uplinks"]:
            ul = Text(f"uplink {up['name']} ")
            ul.append(", ".join(up["addresses"]), "dim")
            if not up["up"]:
                ul.append(" (down)", "bold red")
            hnode.children.append(TreeNode(ul, NodeRef("uplink", inode, up["name"])))
        for br in host["bridges"]:
            bl = Text("bridge ")
            bl.append(br["name"], "bold")
            bl.append(f" {', '.join(br['addresses'])}", "dim")
            if not br["up"]:
                bl.append(" (down)", "bold red")
            bnode = TreeNode(bl, NodeRef("bridge", inode, br["name"]))
            for port in br["ports"]:
                bnode.children.append(_port_node(topo, ns, port))
            if not br["ports"]:
                bnode.children.append(TreeNode(Text("no ports", "dim"), NodeRef("info")))
            hnode.children.append(bnode)
        for veth in host["veths"]:
            hnode.children.append(_port_node(topo, ns, veth, prefix="veth "))
        for c in snapshot.containers:
            if c.netns == inode and c.network_mode == "host" and c.runtime != "netns":
                hl = Text(c.name, "bold")
                hl.append(" (host network)", "dim")
                hnode.children.append(TreeNode(hl, NodeRef("container", inode, c.id)))
        by_inode[inode] = hnode
        parent = (host.get("inside") or {}).get("inode")
        if parent is not None and parent != inode:
            inside.append((parent, hnode))
        else:
            out.append(hnode)
    for parent, hnode in inside:  # after the loop: a parent may be listed after its child
        holder = by_inode.get(parent)
        if holder is not None and not _within(hnode, holder):
            holder.children.append(hnode)
        else:
            out.append(hnode)
    if doc["unowned"]:
        group = TreeNode(Text("namespaces no runtime owns", "dim"), NodeRef("info"), expand=False)
        for u in doc["unowned"]:
            links = ", ".join(ln for ln in u["links"] if ln != "lo") or "only lo"
            group.children.append(
                TreeNode(Text(f"{u['label']}: {links}"), NodeRef("unowned", u["inode"]))
            )
        out.append(group)
    return out
