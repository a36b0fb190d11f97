"""`nested`: a node namespace inside the lab host, with its own bridge and pods (like kind).

    upstream   192.0.2.1 + 203.0.113.10
       |
    host       Docker-style: bridge kind0 10.230.0.1/24, MASQUERADE, publishes 8080 -> node:30080;
       |       route 10.244.0.0/24 via 10.230.0.2 (the node's pod subnet)
       `-- kind0 -- node 10.230.0.2 (eth0)  ip_forward=1, its own iptables:
                      cni0 10.244.0.1/24, MASQUERADE for pods leaving the pod subnet,
                      node port 30080 -> web:80 (DNAT), FORWARD policy DROP + KUBE-FORWARD
                      |-- web    10.244.0.2
                      `-- client 10.244.0.3

The host side is exactly the default lab's machinery (spec.py) with one network and one
container, the node; the node's inside is a second, smaller host. Pods are attached to the node
(``attached_to``), not to the lab host.
"""

from __future__ import annotations

from cntrace.lab import knobs, spec, topo
from cntrace.lab.spec import ContainerSpec, LabPlan, NetworkSpec
from cntrace.lab.state import LabState, NetworkState, PortState
from cntrace.lab.topo import Fault, Step, Topology, TopologyPlan

NAME = "nested"
KIND = NetworkSpec("kind", "kind0", "10.230.0.0/24")
NODE_IP = "10.230.0.2"
PODS = "10.244.0.0/24"
POD_GW = topo.gateway(PODS)
WEB_IP = "10.244.0.2"
CLIENT_IP = "10.244.0.3"
NODE_PORT = 30080
PUBLISHED = 8080


def host_plan(name: str) -> LabPlan:
    """The lab host as the default lab sees it: one Docker network holding the node."""
    node = ContainerSpec("node", KIND.name, NODE_IP, published=(("tcp", PUBLISHED, NODE_PORT),))
    return LabPlan(name, (node,), networks=(KIND,))


def node_ruleset() -> str:
    """The node's own rules: a node port DNAT, pod masquerading, a guarded FORWARD."""
    return (
        "*nat\n"
        ":PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":POSTROUTING ACCEPT [0:0]\n:KUBE-NODEPORTS - [0:0]\n"
        "-A PREROUTING -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n"
        f"-A KUBE-NODEPORTS -p tcp -m tcp --dport {NODE_PORT} "
        f"-j DNAT --to-destination {WEB_IP}:{spec.TCP_PORT}\n"
        f"-A POSTROUTING -s {PODS} ! -d {PODS} -j MASQUERADE\n"
        "COMMIT\n"
        "*filter\n"
        ":INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":KUBE-FORWARD - [0:0]\n"
        "-A FORWARD -j KUBE-FORWARD\n"
        "-A KUBE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
        "-A KUBE-FORWARD -i cni0 -j ACCEPT\n"
        "-A KUBE-FORWARD -o cni0 -j ACCEPT\n"
        "COMMIT\n"
    )


def plan(name: str, backend: str) -> TopologyPlan:
    hp = host_plan(name)
    host, up, node = hp.host_ns, hp.upstream_ns, hp.ns("node")
    pods = {"web": WEB_IP, "client": CLIENT_IP}
    steps = [
        Step("ip", host, spec.script_host(hp), "wiring the host: kind0, uplink, the node's veth"),
        Step("ip", host, f"route add {PODS} via {NODE_IP} dev {KIND.bridge}\n"),
        Step("ip", up, spec.script_upstream()),
        Step("ip", node, spec.script_container(hp, hp.containers[0])),
        topo.ip(
            node,
            "link add cni0 address 02:42:0a:f4:00:01 type bridge",
            f"addr add {POD_GW}/24 dev cni0",
            "link set cni0 up",
            *(topo.veth(f"veth-{p}", node, "eth0", f"{name}.{p}") for p in pods),
            *(f"link set veth-{p} master cni0 up" for p in pods),
            what="wiring the node: cni0 and its pods",
        ),
    ]
    for p, addr in pods.items():
        steps.append(
            topo.ip(
                f"{name}.{p}",
                "link set lo up",
                f"link set eth0 address {topo.mac_for(addr)}",
                f"addr add {addr}/24 dev eth0",
                "link set eth0 up",
                f"route add default via {POD_GW} dev eth0",
            )
        )
    for ns in (host, node):
        steps += [topo.sysctl(ns, k, v) for k, v in spec.HOST_SYSCTLS.items()]
    steps += [
        Step("iptables", host, spec.iptables_ruleset(hp), f"loading the host's rules ({backend})"),
        Step("iptables", node, node_ruleset(), "loading the node's rules"),
    ]
    node_c = topo.container(
        name,
        "node",
        NODE_IP,
        network=KIND.name,
        subnet=KIND.subnet,
        gateway_=KIND.gateway,
        host_veth=hp.containers[0].host_veth,
        published=(PortState("tcp", PUBLISHED, NODE_PORT),),
    )
    pod_cs = tuple(
        topo.container(
            name,
            p,
            addr,
            network="pods",
            subnet=PODS,
            gateway_=POD_GW,
            host_veth=f"veth-{p}",
            attached_to=node,
            published=(PortState("tcp", NODE_PORT, spec.TCP_PORT),) if p == "web" else (),
        )
        for p, addr in pods.items()
    )
    namespaces = (host, up, node, *(f"{name}.{p}" for p in pods))
    lab = LabState(
        name=name,
        host_netns=host,
        upstream_netns=up,
        namespaces=namespaces,
        networks=(
            NetworkState(KIND.name, KIND.bridge, KIND.subnet, KIND.gateway),
            NetworkState("pods", "cni0", PODS, POD_GW),
        ),
        containers=(node_c, *pod_cs),
        uplink_ip=spec.UPLINK_HOST_IP,
        internet_ip=spec.INTERNET_IP,
        topology=NAME,
    )
    return TopologyPlan(NAME, name, backend, namespaces, tuple(steps), lab)


# ----------------------------------------------------------------------------- faults


def _node(lab: LabState) -> str:
    return f"{lab.name}.node"


_FORWARD_DROP = ["-i", "eth0", "-o", "cni0", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"]
_DNAT = ["-p", "tcp", "-m", "tcp", "--dport", str(NODE_PORT)]
_DNAT += ["-j", "DNAT", "--to-destination", f"{WEB_IP}:{spec.TCP_PORT}"]
_MASQ = ["-s", PODS, "!", "-d", PODS, "-j", "MASQUERADE"]
_ROUTE = f"{PODS} via {NODE_IP} dev {KIND.bridge}"


def _drop(lab: LabState, on: bool) -> LabState:
    if on:
        knobs.iptables(lab, _node(lab), "-I", "FORWARD", "1", *_FORWARD_DROP)
    else:
        knobs.iptables(lab, _node(lab), "-D", "FORWARD", *_FORWARD_DROP)
    return lab


def _nat(lab: LabState, chain: str, rule: list[str], on: bool) -> LabState:
    verb = ["-A", chain] if on else ["-D", chain]
    knobs.iptables(lab, _node(lab), "-t", "nat", *verb, *rule)
    return lab


def _route(lab: LabState, verb: str) -> LabState:
    knobs.ip(lab.host_netns, f"route {verb} {_ROUTE}")
    return lab


FAULTS = {
    f.name: f
    for f in (
        Fault(
            "node-forward-drop",
            "the node's FORWARD drops new connections from eth0 into cni0",
            "host -> web, host -> node:30080 and upstream -> host:8080 time out; pods still "
            "reach each other and upstream",
            lambda lab: _drop(lab, True),
            lambda lab: _drop(lab, False),
        ),
        Fault(
            "node-no-dnat",
            f"the node's port {NODE_PORT} DNAT to web is missing",
            f"upstream -> host:{PUBLISHED} and host -> node:{NODE_PORT} are refused",
            lambda lab: _nat(lab, "KUBE-NODEPORTS", _DNAT, False),
            lambda lab: _nat(lab, "KUBE-NODEPORTS", _DNAT, True),
        ),
        Fault(
            "host-no-route",
            f"the lab host has no route to the node's pod subnet {PODS}",
            "host -> web times out (it leaves by the default route)",
            lambda lab: _route(lab, "del"),
            lambda lab: _route(lab, "add"),
        ),
        Fault(
            "node-no-masquerade",
            "the node's MASQUERADE for pods is missing",
            "pods -> upstream time out (the host masquerades only the node's subnet)",
            lambda lab: _nat(lab, "POSTROUTING", _MASQ, False),
            lambda lab: _nat(lab, "POSTROUTING", _MASQ, True),
        ),
    )
}

TOPOLOGY = Topology(
    NAME,
    "a kind-like node namespace inside the lab host, with its own bridge, NAT and pods",
    FAULTS,
    plan,
)
