"""`two-node` and `two-node-host-gw`: two flannel-style nodes joined by an underlay cable.

    upstream   192.0.2.1 + 203.0.113.10 (the internet)
       | eth1 192.0.2.2 (default route); pods leaving the cluster are masqueraded
    node1      eth0 10.100.0.1/24 ===== underlay (one veth: a cable) ===== eth0 10.100.0.2/24  node2
       |       cni0 10.244.1.1/24                                 cni0 10.244.2.1/24      |
       |       flannel.1 10.244.1.0/32 VNI 1 udp/8472   flannel.1 10.244.2.0/32 VNI 1     |
       `-- client 10.244.1.2                                               web 10.244.2.2 --'

The VXLAN wiring is flannel's (pkg/backend/vxlan): a `vxlan` device `flannel.<VNI>` per node
(`local` = the node's underlay address, `dev` = its underlay interface, no learning, the kernel's
default port 8472, MTU = the underlay's minus 50) holding the lease's network address as a /32;
then per remote node a permanent neighbour `<subnet address> lladdr <remote VTEP MAC>`, a `bridge
fdb ... self permanent` entry sending that MAC to the remote node's underlay address, and the
route `<remote subnet> via <subnet address> dev flannel.1 onlink`. The host-gw variant has no
tunnel: `<remote subnet> via <remote underlay address> dev eth0`. Rules are flannel's: pods are
not masqueraded towards the cluster network, everything else leaving is; FORWARD (policy DROP)
accepts the cluster network.
"""

from __future__ import annotations

from cntrace.lab import knobs, spec, topo
from cntrace.lab.state import LabState, NetworkState
from cntrace.lab.topo import Fault, Step, Topology, TopologyPlan

NAME = "two-node"
HOST_GW = "two-node-host-gw"
CLUSTER = "10.244.0.0/16"
UNDERLAY = "10.100.0.0/24"
VNI = 1
VXLAN_PORT = 8472  # the kernel's default, which flannel keeps (Port 0)
VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
UNDERLAY_MTU = 1500
SMALL_MTU = 1400  # the underlay-mtu fault: node2's NIC takes less than the tunnel sends
WRONG_VNI = 2
# node -> (underlay address, pod subnet index, VTEP MAC); pods: name -> (node, address)
NODES = {
    "node1": ("10.100.0.1", 1, "0e:fa:00:00:01:01"),
    "node2": ("10.100.0.2", 2, "0e:fa:00:00:02:01"),
}
PODS = {"client": ("node1", "10.244.1.2"), "web": ("node2", "10.244.2.2")}


def subnet(node: str) -> str:
    return f"10.244.{NODES[node][1]}.0/24"


def vtep_ip(node: str) -> str:
    """The lease's network address, which flannel puts on flannel.1 as a /32."""
    return f"10.244.{NODES[node][1]}.0"


def device() -> str:
    """flannel names the device after the VNI it was configured with."""
    return f"flannel.{VNI}"


def vxlan_lines(node: str, vni: int = VNI) -> list[str]:
    """flannel.1 and, per remote node, its neighbour entry and route (`ip` lines)."""
    ip, _, mac = NODES[node]
    dev = device()
    lines = [
        f"link add {dev} address {mac} mtu {UNDERLAY_MTU - VXLAN_OVERHEAD} type vxlan "
        f"id {vni} local {ip} dev eth0 dstport {VXLAN_PORT} nolearning",
        f"addr add {vtep_ip(node)}/32 dev {dev}",
        f"link set {dev} up",
    ]
    for other in remotes(node):
        lines += [
            f"neigh add {vtep_ip(other)} lladdr {NODES[other][2]} dev {dev} nud permanent",
            route_vxlan(other),
        ]
    return lines


def fdb_lines(node: str) -> list[str]:
    """Per remote node, the FDB entry sending its VTEP MAC to its underlay address (`bridge`)."""
    return [fdb_line(other) for other in remotes(node)]


def fdb_line(other: str, verb: str = "append") -> str:
    o_ip, _, o_mac = NODES[other]
    tail = " self permanent" if verb == "append" else " self"
    return f"fdb {verb} {o_mac} dev {device()} dst {o_ip}{tail}"


def remotes(node: str) -> list[str]:
    return [o for o in NODES if o != node]


def route_vxlan(other: str) -> str:
    return f"route add {subnet(other)} via {vtep_ip(other)} dev {device()} onlink"


def route_host_gw(other: str) -> str:
    return f"route add {subnet(other)} via {NODES[other][0]} dev eth0"


def ruleset(node: str) -> str:
    """flannel's masquerading and forwarding rules (FLANNEL-POSTRTG, FLANNEL-FWD)."""
    uplink = "-o eth1 " if node == "node1" else ""
    return (
        "*nat\n"
        ":PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":POSTROUTING ACCEPT [0:0]\n:FLANNEL-POSTRTG - [0:0]\n"
        "-A POSTROUTING -j FLANNEL-POSTRTG\n"
        f"-A FLANNEL-POSTRTG -s {CLUSTER} -d {CLUSTER} -j RETURN\n"
        f"-A FLANNEL-POSTRTG -s {CLUSTER} ! -d 224.0.0.0/4 -j MASQUERADE\n"
        f"-A FLANNEL-POSTRTG ! -s {CLUSTER} -d {subnet(node)} -j RETURN\n"
        + (f"-A POSTROUTING -s {UNDERLAY} {uplink}-j MASQUERADE\n" if uplink else "")
        + "COMMIT\n"
        "*filter\n"
        ":INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":FLANNEL-FWD - [0:0]\n"
        "-A FORWARD -j FLANNEL-FWD\n"
        f"-A FLANNEL-FWD -s {CLUSTER} -j ACCEPT\n"
        f"-A FLANNEL-FWD -d {CLUSTER} -j ACCEPT\n"
        + (
            "-A FORWARD -i eth0 -o eth1 -j ACCEPT\n-A FORWARD -i eth1 -o eth0 -j ACCEPT\n"
            if uplink
            else ""
        )
        + "COMMIT\n"
    )


def _plan(name: str, backend: str, overlay: str) -> TopologyPlan:
    ns = {n: f"{name}.{n}" for n in (*NODES, *PODS, "upstream")}
    n1, n2, up = ns["node1"], ns["node2"], ns["upstream"]
    steps = [
        topo.ip(
            n1,
            "link set lo up",
            topo.veth("eth0", n1, "eth0", n2),
            topo.veth("eth1", n1, "eth0", up),
            "addr add 192.0.2.2/24 dev eth1",
            "link set eth1 up",
            f"route add default via {spec.UPLINK_UPSTREAM_IP} dev eth1",
            what="cabling the underlay: node1 eth0 <-> node2 eth0, node1 eth1 <-> upstream",
        ),
        Step("ip", up, spec.script_upstream()),
    ]
    for node, (addr, idx, _mac) in NODES.items():
        gw = f"10.244.{idx}.1"
        pods = [p for p, (n, _a) in PODS.items() if n == node]
        lines = [
            "link set lo up",
            f"link set eth0 address 02:42:0a:64:00:0{idx}",
            f"addr add {addr}/24 dev eth0",
            "link set eth0 up",
            f"link add cni0 address 02:42:0a:f4:0{idx}:01 type bridge",
            f"addr add {gw}/24 dev cni0",
            "link set cni0 up",
            *(topo.veth(f"veth-{p}", ns[node], "eth0", ns[p]) for p in pods),
            *(f"link set veth-{p} master cni0 up" for p in pods),
        ]
        if node == "node2":
            lines.append("route add default via 10.100.0.1 dev eth0")
        others = remotes(node)
        if overlay == "vxlan":
            lines += vxlan_lines(node)
        else:
            lines += [route_host_gw(o) for o in others]
        steps.append(topo.ip(ns[node], *lines, what=f"wiring {node} ({overlay})"))
        if overlay == "vxlan":
            steps.append(Step("bridge", ns[node], "".join(f"{x}\n" for x in fdb_lines(node))))
        steps += [
            topo.sysctl(ns[node], "net.ipv4.ip_forward", "1"),
            Step("iptables", ns[node], ruleset(node), f"loading {node}'s flannel rules"),
        ]
    for p, (node, addr) in PODS.items():
        gw = f"10.244.{NODES[node][1]}.1"
        steps.append(
            topo.ip(
                ns[p],
                "link set lo up",
                f"link set eth0 address {topo.mac_for(addr)}",
                *(
                    [f"link set eth0 mtu {UNDERLAY_MTU - VXLAN_OVERHEAD}"]
                    if overlay == "vxlan"
                    else []
                ),
                f"addr add {addr}/24 dev eth0",
                "link set eth0 up",
                f"route add default via {gw} dev eth0",
            )
        )
    containers = tuple(
        topo.container(
            name,
            p,
            addr,
            network="pods",
            subnet=subnet(node),
            gateway_=f"10.244.{NODES[node][1]}.1",
            host_veth=f"veth-{p}",
            attached_to=ns[node],
        )
        for p, (node, addr) in PODS.items()
    )
    namespaces = (n1, n2, up, *(ns[p] for p in PODS))
    lab = LabState(
        name=name,
        host_netns=n1,
        upstream_netns=up,
        namespaces=namespaces,
        networks=tuple(
            NetworkState(f"pods-{n}", "cni0", subnet(n), f"10.244.{NODES[n][1]}.1") for n in NODES
        ),
        containers=containers,
        uplink_ip="192.0.2.2",
        internet_ip=spec.INTERNET_IP,
        topology=NAME if overlay == "vxlan" else HOST_GW,
        notes={"overlay": overlay, "nodes": " ".join(ns[n] for n in NODES)},
    )
    return TopologyPlan(lab.topology, name, backend, namespaces, tuple(steps), lab)


def plan(name: str, backend: str) -> TopologyPlan:
    return _plan(name, backend, "vxlan")


def plan_host_gw(name: str, backend: str) -> TopologyPlan:
    return _plan(name, backend, "host-gw")


# ----------------------------------------------------------------------------- faults


def _ns(lab: LabState, node: str) -> str:
    return f"{lab.name}.{node}"


def _fdb(lab: LabState, verb: str) -> LabState:
    knobs.bridge(_ns(lab, "node1"), fdb_line("node2", verb))
    return lab


def _vni(lab: LabState, vni: int) -> LabState:
    """Recreate node2's flannel.1 with ``vni`` (the kernel cannot change a device's VNI)."""
    knobs.ip(_ns(lab, "node2"), f"link del {device()}", *vxlan_lines("node2", vni))
    knobs.bridge(_ns(lab, "node2"), *fdb_lines("node2"))
    return lab


def _mtu(lab: LabState, mtu: int) -> LabState:
    knobs.ip(_ns(lab, "node2"), f"link set eth0 mtu {mtu}")
    return lab


_BLOCK = ["-p", "udp", "-m", "udp", "--dport", str(VXLAN_PORT), "-j", "DROP"]


def _block(lab: LabState, on: bool) -> LabState:
    verb = ["-I", "INPUT", "1"] if on else ["-D", "INPUT"]
    knobs.iptables(lab, _ns(lab, "node2"), *verb, *_BLOCK)
    return lab


def _route(lab: LabState, on: bool) -> LabState:
    add = route_vxlan("node2") if lab.notes.get("overlay") == "vxlan" else route_host_gw("node2")
    knobs.ip(_ns(lab, "node1"), add if on else add.replace("route add", "route del", 1))
    return lab


def _rp_filter(lab: LabState, on: bool) -> LabState:
    """node2 routes back to node1's pods directly over eth0 (as flannel's DirectRouting would)
    while node1 still tunnels, and strict reverse-path filtering is on: what arrives by flannel.1
    would be answered by eth0, so the kernel drops it."""
    n2 = _ns(lab, "node2")
    direct = f"route replace {subnet('node1')} via {NODES['node1'][0]} dev eth0"
    tunnel = route_vxlan("node1").replace("route add", "route replace", 1)
    knobs.ip(n2, direct if on else tunnel)
    for key in ("all", device()):
        knobs.sysctl(n2, f"net/ipv4/conf/{key}/rp_filter", "1" if on else "0")
    return lab


VXLAN_FAULTS = {
    f.name: f
    for f in (
        Fault(
            "no-fdb",
            "node1's flannel.1 has no FDB entry for node2's VTEP MAC",
            "client -> web and web -> client time out (node1 cannot wrap for node2)",
            lambda lab: _fdb(lab, "del"),
            lambda lab: _fdb(lab, "append"),
        ),
        Fault(
            "wrong-vni",
            f"node2's flannel.1 uses VNI {WRONG_VNI}, node1 sends VNI {VNI}",
            "everything between the nodes' pods times out",
            lambda lab: _vni(lab, WRONG_VNI),
            lambda lab: _vni(lab, VNI),
        ),
        Fault(
            "underlay-mtu",
            f"node2's underlay NIC has MTU {SMALL_MTU}: a full-size tunnel packet (inner "
            f"{UNDERLAY_MTU - VXLAN_OVERHEAD} + {VXLAN_OVERHEAD}) does not fit",
            "large datagrams client -> web time out; small ones and TCP handshakes pass",
            lambda lab: _mtu(lab, SMALL_MTU),
            lambda lab: _mtu(lab, UNDERLAY_MTU),
        ),
        Fault(
            "vxlan-blocked",
            f"node2's INPUT drops udp/{VXLAN_PORT} (the tunnel's outer packets)",
            "everything between the nodes' pods times out",
            lambda lab: _block(lab, True),
            lambda lab: _block(lab, False),
        ),
        Fault(
            "no-route",
            f"node1 has no route to node2's pod subnet {subnet('node2')}",
            "client -> web is unreachable; web -> client times out (the reply has no way)",
            lambda lab: _route(lab, False),
            lambda lab: _route(lab, True),
        ),
        Fault(
            "rp-filter",
            "node2 answers node1's pods directly by eth0 while they arrive by flannel.1, with "
            "strict rp_filter on",
            "client -> web and web -> client time out",
            lambda lab: _rp_filter(lab, True),
            lambda lab: _rp_filter(lab, False),
        ),
    )
}

HOST_GW_FAULTS = {
    f.name: f
    for f in (
        Fault(
            "no-route",
            f"node1 has no route to node2's pod subnet {subnet('node2')}",
            "client -> web is unreachable; web -> client times out (the reply has no way)",
            lambda lab: _route(lab, False),
            lambda lab: _route(lab, True),
        ),
    )
}

TOPOLOGY = Topology(
    NAME,
    "two flannel nodes, VXLAN overlay (flannel.1, VNI 1, udp/8472) over a one-cable underlay",
    VXLAN_FAULTS,
    plan,
)
TOPOLOGY_HOST_GW = Topology(
    HOST_GW,
    "two flannel nodes, host-gw: plain routes to the other node's pod subnet",
    HOST_GW_FAULTS,
    plan_host_gw,
)
