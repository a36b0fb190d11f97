"""`macvlan`: containers with macvlan children of the host's uplink, straight on the LAN.

    upstream   "the LAN": eth0 10.250.0.1/24 (its router) + 203.0.113.10/24
       | veth (there are no dummy devices here: the parent is a veth)
    host       eth0 10.250.0.2/24 = the macvlan parent
       |       shim 10.250.0.3/32 (macvlan, bridge mode), route 10.250.0.8/29 dev shim
       |-- web      eth0 macvlan bridge  10.250.0.10
       |-- client   eth0 macvlan bridge  10.250.0.11
       `-- private  eth0 macvlan private 10.250.0.12

Siblings in bridge mode reach each other inside the parent; a private child reaches only the
LAN. The classic surprise: the parent's own namespace cannot talk to its children (its frames go
out to the wire, theirs never come back to it). The usual fix is in place when healthy: a
macvlan "shim" on the host with a route to the children; the `no-shim` fault removes it.
"""

from __future__ import annotations

from cntrace.lab import knobs, spec, topo
from cntrace.lab.state import LabState
from cntrace.lab.topo import Fault, Step, Topology, TopologyPlan

NAME = "macvlan"
LAN = "10.250.0.0/24"
LAN_GW = topo.gateway(LAN)  # the upstream, playing the LAN's router
PARENT_IP = "10.250.0.2"
SHIM_IP = "10.250.0.3"
CHILDREN_ROUTE = "10.250.0.8/29"
CHILDREN = {"web": ("10.250.0.10", "bridge"), "client": ("10.250.0.11", "bridge")}
CHILDREN["private"] = ("10.250.0.12", "private")


def shim_lines() -> tuple[str, ...]:
    return (
        "link add shim link eth0 type macvlan mode bridge",
        f"addr add {SHIM_IP}/32 dev shim",
        "link set shim up",
        f"route add {CHILDREN_ROUTE} dev shim",
    )


def plan(name: str, backend: str) -> TopologyPlan:
    host, up = f"{name}.host", f"{name}.upstream"
    steps = [
        topo.ip(
            host,
            "link set lo up",
            topo.veth("eth0", host, "eth0", up),
            f"addr add {PARENT_IP}/24 dev eth0",
            "link set eth0 up",
            *(
                f"link add link eth0 name eth0 netns {name}.{c} type macvlan mode {mode}"
                for c, (_addr, mode) in CHILDREN.items()
            ),
            *shim_lines(),
            what="wiring the host: the parent, its macvlan children and the shim",
        ),
        Step(
            "ip",
            up,
            "link set lo up\n"
            f"addr add {LAN_GW}/24 dev eth0\n"
            f"addr add {spec.INTERNET_IP}/{spec.INTERNET_PREFIX} dev eth0\n"
            "link set eth0 up\n",
        ),
    ]
    for c, (addr, _mode) in CHILDREN.items():
        steps.append(
            topo.ip(
                f"{name}.{c}",
                "link set lo up",
                f"link set eth0 address {topo.mac_for(addr)}",
                f"addr add {addr}/24 dev eth0",
                "link set eth0 up",
                f"route add default via {LAN_GW} dev eth0",
            )
        )
    containers = tuple(
        topo.container(
            name,
            c,
            addr,
            network="lan",
            subnet=LAN,
            gateway_=LAN_GW,
            host_veth="eth0",  # the parent
            attached_to=host,
        )
        for c, (addr, _mode) in CHILDREN.items()
    )
    namespaces = (host, up, *(f"{name}.{c}" for c in CHILDREN))
    lab = LabState(
        name=name,
        host_netns=host,
        upstream_netns=up,
        namespaces=namespaces,
        containers=containers,
        uplink_ip=PARENT_IP,
        internet_ip=LAN_GW,
        topology=NAME,
    )
    return TopologyPlan(NAME, name, backend, namespaces, tuple(steps), lab)


# ----------------------------------------------------------------------------- faults


def _no_shim(lab: LabState) -> LabState:
    knobs.ip(lab.host_netns, "link del shim")
    return lab


def _shim(lab: LabState) -> LabState:
    knobs.ip(lab.host_netns, *shim_lines())
    return lab


def _mode(lab: LabState, mode: str) -> LabState:
    knobs.ip(lab.container("client").netns, f"link set eth0 type macvlan mode {mode}")
    return lab


FAULTS = {
    f.name: f
    for f in (
        Fault(
            "no-shim",
            "the host's macvlan shim is gone (the parent alone cannot reach its children)",
            "host -> web and host -> client time out; the children and the LAN are unaffected",
            _no_shim,
            _shim,
        ),
        Fault(
            "client-private",
            "client's macvlan is switched to private mode",
            "web <-> client and host -> client time out; client still reaches the LAN",
            lambda lab: _mode(lab, "private"),
            lambda lab: _mode(lab, "bridge"),
        ),
    )
}

TOPOLOGY = Topology(
    NAME,
    "macvlan children of the host's uplink (bridge and private mode) and the host's shim",
    FAULTS,
    plan,
)
