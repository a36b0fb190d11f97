"""`router`: an edge router namespace between a LAN, a DMZ and an uplink, no Docker in sight.

    upstream   eth0 192.0.2.1/24 + 203.0.113.10/24, route 10.220.2.0/24 via 192.0.2.2
       | wan0 192.0.2.2/24 (default route)
    router     ip_forward=1; FORWARD policy DROP with custom chains; DNAT wan:8080 -> web:80;
       |       LAN masqueraded on wan0; the DMZ is routed (upstream has a route to it)
       |-- lan0 10.220.1.1/24 -- client 10.220.1.10
       `-- dmz0 10.220.2.1/24 -- dmz (a switch namespace: bridge br0, no address)
                                   |-- web 10.220.2.10 (tcp/80, udp/9000)
                                   `-- db  10.220.2.20 (tcp/5432, udp/9000)

Every veth is created with both ends placed in lab namespaces at once (`link add a netns A type
veth peer name b netns B`), so both ends are born in fresh namespaces: wan0 and upstream's eth0
share an ifindex. The ruleset exists in three equivalent forms (iptables-nft, iptables-legacy,
native nftables `table inet router`); `--iptables` picks one, and the faults turn the same knob
in whichever is loaded.
"""

from __future__ import annotations

from cntrace.lab import knobs, spec, topo
from cntrace.lab.state import LabState, NetworkState, PortState
from cntrace.lab.topo import Fault, Step, Topology, TopologyPlan

NAME = "router"
LAN = "10.220.1.0/24"
DMZ = "10.220.2.0/24"
WAN_IP = spec.UPLINK_HOST_IP  # 192.0.2.2
UPSTREAM_IP = spec.UPLINK_UPSTREAM_IP
CLIENT_IP = "10.220.1.10"
WEB_IP = "10.220.2.10"
DB_IP = "10.220.2.20"
DB_PORT = 5432
FORWARDED_PORT = 8080
NFT_TABLE = ("inet", "router")


def _ns(lab: str, role: str) -> str:
    return f"{lab}.{role}"


def iptables_ruleset() -> str:
    """The router's rules, iptables-restore form: custom chains, jump/return, multiport,
    negation, REJECT with a TCP reset, and a port forward."""
    return (
        "*nat\n"
        ":PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":POSTROUTING ACCEPT [0:0]\n:PORT-FORWARD - [0:0]\n"
        "-A PREROUTING -i wan0 -j PORT-FORWARD\n"
        f"-A PORT-FORWARD -p tcp -m tcp --dport {FORWARDED_PORT} "
        f"-j DNAT --to-destination {WEB_IP}:{spec.TCP_PORT}\n"
        f"-A POSTROUTING -s {LAN} -o wan0 -j MASQUERADE\n"
        "COMMIT\n"
        "*filter\n"
        ":INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":LAN-OUT - [0:0]\n:DMZ-IN - [0:0]\n"
        "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
        "-A FORWARD -m conntrack --ctstate DNAT -j ACCEPT\n"
        "-A FORWARD -i lan0 -j LAN-OUT\n"
        "-A FORWARD -o dmz0 -j DMZ-IN\n"
        "-A FORWARD -i dmz0 -o wan0 -j ACCEPT\n"
        f"-A LAN-OUT ! -s {LAN} -j DROP\n"
        "-A LAN-OUT -o wan0 -j ACCEPT\n"
        "-A LAN-OUT -j RETURN\n"
        "-A DMZ-IN -p tcp -m multiport --dports 80,443 -j ACCEPT\n"
        f"-A DMZ-IN -p udp -m udp --dport {spec.UDP_PORT} -j ACCEPT\n"
        "-A DMZ-IN -p tcp -j REJECT --reject-with tcp-reset\n"
        "-A DMZ-IN -j RETURN\n"
        "COMMIT\n"
    )


def nft_ruleset() -> str:
    """The same policy as native nftables, one `table inet`."""
    family, table = NFT_TABLE
    return f"""table {family} {table} {{
	chain prerouting {{
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan0" jump port_forward
	}}
	chain port_forward {{
		tcp dport {FORWARDED_PORT} dnat ip to {WEB_IP}:{spec.TCP_PORT}
	}}
	chain postrouting {{
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr {LAN} oifname "wan0" masquerade
	}}
	chain forward {{
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		ct status dnat accept
		iifname "lan0" jump lan_out
		oifname "dmz0" jump dmz_in
		iifname "dmz0" oifname "wan0" accept
	}}
	chain lan_out {{
		ip saddr != {LAN} drop
		oifname "wan0" accept
		return
	}}
	chain dmz_in {{
		tcp dport {{ 80, 443 }} accept
		udp dport {spec.UDP_PORT} accept
		meta l4proto tcp reject with tcp reset
		return
	}}
}}
"""


def plan(name: str, backend: str) -> TopologyPlan:
    r, up, dmz = (_ns(name, x) for x in ("router", "upstream", "dmz"))
    client, web, db = (_ns(name, x) for x in ("client", "web", "db"))
    steps = [
        topo.ip(
            r,
            "link set lo up",
            topo.veth("wan0", r, "eth0", up),
            topo.veth("lan0", r, "eth0", client),
            topo.veth("dmz0", r, "uplink", dmz),
            f"addr add {WAN_IP}/24 dev wan0",
            f"addr add {topo.gateway(LAN)}/24 dev lan0",
            f"addr add {topo.gateway(DMZ)}/24 dev dmz0",
            "link set wan0 up",
            "link set lan0 up",
            "link set dmz0 up",
            f"route add default via {UPSTREAM_IP} dev wan0",
            what="wiring the router: wan0, lan0, dmz0",
        ),
        topo.ip(
            dmz,
            "link set lo up",
            "link add br0 address 02:42:c0:a8:dc:01 type bridge",
            "link set br0 up",
            "link set uplink master br0 up",
            topo.veth("web", dmz, "eth0", web),
            topo.veth("db", dmz, "eth0", db),
            "link set web master br0 up",
            "link set db master br0 up",
            what="wiring the DMZ switch",
        ),
        Step("ip", up, spec.script_upstream() + f"route add {DMZ} via {WAN_IP} dev eth0\n"),
    ]
    for ns, addr, sub in ((client, CLIENT_IP, LAN), (web, WEB_IP, DMZ), (db, DB_IP, DMZ)):
        steps.append(
            topo.ip(
                ns,
                "link set lo up",
                f"link set eth0 address {topo.mac_for(addr)}",
                f"addr add {addr}/24 dev eth0",
                "link set eth0 up",
                f"route add default via {topo.gateway(sub)} dev eth0",
            )
        )
    steps.append(topo.sysctl(r, "net.ipv4.ip_forward", "1"))
    if backend == "nftables":
        steps.append(Step("nft", r, nft_ruleset(), "loading the router's rules (nftables)"))
    else:
        steps.append(
            Step("iptables", r, iptables_ruleset(), f"loading the router's rules ({backend})")
        )
    containers = (
        topo.container(
            name,
            "client",
            CLIENT_IP,
            network="lan",
            subnet=LAN,
            gateway_=topo.gateway(LAN),
            host_veth="lan0",
            attached_to=r,
        ),
        topo.container(
            name,
            "web",
            WEB_IP,
            network="dmz",
            subnet=DMZ,
            gateway_=topo.gateway(DMZ),
            host_veth="web",
            attached_to=dmz,
            published=(PortState("tcp", FORWARDED_PORT, spec.TCP_PORT),),
        ),
        topo.container(
            name,
            "db",
            DB_IP,
            network="dmz",
            subnet=DMZ,
            gateway_=topo.gateway(DMZ),
            host_veth="db",
            attached_to=dmz,
            tcp=DB_PORT,
        ),
    )
    namespaces = (r, up, dmz, client, web, db)
    lab = LabState(
        name=name,
        host_netns=r,
        upstream_netns=up,
        namespaces=namespaces,
        networks=(NetworkState("dmz", "br0", DMZ, topo.gateway(DMZ)),),
        containers=containers,
        uplink_ip=WAN_IP,
        internet_ip=spec.INTERNET_IP,
        topology=NAME,
    )
    return TopologyPlan(NAME, name, backend, namespaces, tuple(steps), lab)


# ----------------------------------------------------------------------------- faults


def _rule(lab: LabState, chain: str, ipt: list[str], nft: str, on: bool) -> LabState:
    """Insert (``on``) or delete one FORWARD-path rule in whichever back end is loaded."""
    r = lab.host_netns
    if knobs.backend(lab) == "nftables":
        family, table = NFT_TABLE
        if on:
            knobs.nft_insert(r, family, table, chain.lower(), nft)
        else:
            knobs.nft_delete(r, family, table, chain.lower(), nft)
    elif on:
        knobs.iptables(lab, r, "-I", chain, "1", *ipt)
    else:
        knobs.iptables(lab, r, "-D", chain, *ipt)
    return lab


_REJECT_IPT = ["-d", f"{WEB_IP}/32", "-p", "tcp", "-m", "tcp", "--dport", "80"]
_REJECT_IPT += ["-j", "REJECT", "--reject-with", "tcp-reset"]
_REJECT = (
    _REJECT_IPT,
    f"ip daddr {WEB_IP} tcp dport 80 reject with tcp reset",
)
_DROP = (["-s", LAN, "-j", "DROP"], f"ip saddr {LAN} drop")
_RETURN_ROUTE = f"{DMZ} via {WAN_IP} dev eth0"


def _forward(lab: LabState, value: str) -> LabState:
    knobs.sysctl(lab.host_netns, "net.ipv4.ip_forward", value)
    return lab


def _route(lab: LabState, verb: str) -> LabState:
    knobs.ip(lab.upstream_netns, f"route {verb} {_RETURN_ROUTE}")
    return lab


FAULTS = {
    f.name: f
    for f in (
        Fault(
            "reject-port",
            "the router's FORWARD rejects tcp/80 to web with a TCP reset",
            "client -> web:80, upstream -> web:80 and upstream -> router:8080 are refused",
            lambda lab: _rule(lab, "FORWARD", *_REJECT, on=True),
            lambda lab: _rule(lab, "FORWARD", *_REJECT, on=False),
        ),
        Fault(
            "drop-subnet",
            f"the router's FORWARD drops everything from the LAN ({LAN})",
            "client -> anything beyond the router times out",
            lambda lab: _rule(lab, "FORWARD", *_DROP, on=True),
            lambda lab: _rule(lab, "FORWARD", *_DROP, on=False),
        ),
        Fault(
            "no-return-route",
            f"upstream has no route back to the DMZ ({DMZ})",
            "web -> upstream times out; upstream -> web is unreachable",
            lambda lab: _route(lab, "del"),
            lambda lab: _route(lab, "add"),
        ),
        Fault(
            "ip-forward-off",
            "net.ipv4.ip_forward=0 in the router",
            "everything through the router times out; web <-> db (same switch) still works",
            lambda lab: _forward(lab, "0"),
            lambda lab: _forward(lab, "1"),
        ),
    )
}

TOPOLOGY = Topology(
    NAME,
    "a router namespace between a LAN, a DMZ switch and an uplink (no bridge on the router)",
    FAULTS,
    plan,
    backends=("nft", "legacy", "nftables"),
)
