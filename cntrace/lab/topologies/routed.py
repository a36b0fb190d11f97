"""`routed`: Calico-style routed veths, no bridge: /32 routes, proxy ARP, a link-local gateway.

    upstream   192.0.2.1 + 203.0.113.10, route 10.240.0.0/24 via 192.0.2.2 (as BGP would add)
       |
    host       eth0 192.0.2.2, ip_forward=1, MASQUERADE pods leaving the pool (natOutgoing)
       |-- cali-web    (no address, MAC ee:ee:ee:ee:ee:ee, proxy_arp=1)  route 10.240.0.10/32
       |     `-- web    eth0 10.240.0.10/32, default via 169.254.1.1 (onlink)
       `-- cali-client (likewise)                                   route 10.240.0.20/32
             `-- client eth0 10.240.0.20/32

A container ARPs for 169.254.1.1, an address nobody has: the host answers on the cali- veth by
proxy ARP (the host's route to it leaves by another interface), so every packet goes to the host,
which routes by the /32s.
"""

from __future__ import annotations

from cntrace.lab import knobs, spec, topo
from cntrace.lab.state import LabState
from cntrace.lab.topo import Fault, Step, Topology, TopologyPlan

NAME = "routed"
POOL = "10.240.0.0/24"
LINK_LOCAL_GW = "169.254.1.1"
HOST_VETH_MAC = "ee:ee:ee:ee:ee:ee"
WORKLOADS = {"web": "10.240.0.10", "client": "10.240.0.20"}


def host_veth(container: str) -> str:
    return f"cali-{container}"[:15]


def ruleset() -> str:
    return (
        "*nat\n"
        ":PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":POSTROUTING ACCEPT [0:0]\n:cali-nat-outgoing - [0:0]\n"
        "-A POSTROUTING -j cali-nat-outgoing\n"
        f"-A cali-nat-outgoing -s {POOL} ! -d {POOL} -j MASQUERADE\n"
        "COMMIT\n"
    )


def plan(name: str, backend: str) -> TopologyPlan:
    host, up = f"{name}.host", f"{name}.upstream"
    lines = [
        "link set lo up",
        f"link add eth0 type veth peer name eth0 netns {up}",
        f"addr add {spec.UPLINK_HOST_IP}/{spec.UPLINK_PREFIX} dev eth0",
        "link set eth0 up",
        f"route add default via {spec.UPLINK_UPSTREAM_IP} dev eth0",
    ]
    for c, addr in WORKLOADS.items():
        v = host_veth(c)
        lines += [
            topo.veth(v, host, "eth0", f"{name}.{c}"),
            f"link set {v} address {HOST_VETH_MAC}",
            f"link set {v} up",
            f"route add {addr}/32 dev {v} scope link",
        ]
    steps = [
        topo.ip(host, *lines, what="wiring the host: uplink, routed veths and /32 routes"),
        Step("ip", up, spec.script_upstream() + f"route add {POOL} via {spec.UPLINK_HOST_IP}\n"),
    ]
    for c, addr in WORKLOADS.items():
        steps.append(
            topo.ip(
                f"{name}.{c}",
                "link set lo up",
                f"link set eth0 address {topo.mac_for(addr)}",
                f"addr add {addr}/32 dev eth0",
                "link set eth0 up",
                f"route add {LINK_LOCAL_GW} dev eth0 scope link",
                f"route add default via {LINK_LOCAL_GW} dev eth0 onlink",
            )
        )
    steps.append(topo.sysctl(host, "net.ipv4.ip_forward", "1"))
    for c in WORKLOADS:
        steps += [
            topo.sysctl(host, f"net.ipv4.conf.{host_veth(c)}.proxy_arp", "1"),
            topo.sysctl(host, f"net.ipv4.neigh.{host_veth(c)}.proxy_delay", "0"),
        ]
    steps.append(Step("iptables", host, ruleset(), f"loading the host's rules ({backend})"))
    containers = tuple(
        topo.container(
            name,
            c,
            addr,
            network="routed",
            subnet=f"{addr}/32",
            gateway_=LINK_LOCAL_GW,
            host_veth=host_veth(c),
        )
        for c, addr in WORKLOADS.items()
    )
    namespaces = (host, up, *(f"{name}.{c}" for c in WORKLOADS))
    lab = LabState(
        name=name,
        host_netns=host,
        upstream_netns=up,
        namespaces=namespaces,
        containers=containers,
        uplink_ip=spec.UPLINK_HOST_IP,
        internet_ip=spec.INTERNET_IP,
        topology=NAME,
    )
    return TopologyPlan(NAME, name, backend, namespaces, tuple(steps), lab)


# ----------------------------------------------------------------------------- faults


def _route(lab: LabState, verb: str) -> LabState:
    web = lab.container("web")
    knobs.ip(lab.host_netns, f"route {verb} {web.ip}/32 dev {web.host_veth} scope link")
    return lab


def _proxy_arp(lab: LabState, value: str) -> LabState:
    web = lab.container("web")
    knobs.sysctl(lab.host_netns, f"net.ipv4.conf.{web.host_veth}.proxy_arp", value)
    if value == "0":
        # Drop web's cached answer for the gateway, as its expiry would a little later: the
        # fault is then visible at once instead of after the entry goes stale.
        knobs.ip(web.netns, "neigh flush dev eth0")
    return lab


FAULTS = {
    f.name: f
    for f in (
        Fault(
            "missing-route",
            "the host's /32 route to web's veth is missing",
            "everything -> web times out (the host sends it up the default route)",
            lambda lab: _route(lab, "del"),
            lambda lab: _route(lab, "add"),
        ),
        Fault(
            "proxy-arp-off",
            "proxy ARP is off on web's host-side veth (and web's ARP cache is flushed)",
            "web cannot resolve its gateway 169.254.1.1: every connection to or from web times out",
            lambda lab: _proxy_arp(lab, "0"),
            lambda lab: _proxy_arp(lab, "1"),
        ),
    )
}

TOPOLOGY = Topology(
    NAME,
    "Calico-style routed veths: /32 routes, proxy ARP, gateway 169.254.1.1, no bridge",
    FAULTS,
    plan,
)
