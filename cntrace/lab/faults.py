"""Classic container-networking faults the lab can inject and remove.

Each fault is what on-call engineers meet in real life, made with the same kernel knob a person
would have turned by mistake, so that `cntrace path` must find it from kernel state alone. `fix`
restores exactly what `break` changed.
"""

from __future__ import annotations

from dataclasses import replace

from cntrace.errors import BadInput
from cntrace.lab import build, spec, state
from cntrace.lab.state import LabState
from cntrace.lab.topo import Fault, iptables_cmd

__all__ = ["FAULTS", "Fault", "break_", "fault", "fix", "for_topology"]

# Where the moved container of `isolated-networks` lands on the other network.
_MOVED_IP = "10.210.0.4"
_FORWARD_DROP = ["-d", f"{spec.INTERNET_IP.rsplit('.', 1)[0]}.0/24", "-j", "DROP"]
_SMALL_MTU = "1280"


def _iptables(lab: LabState, *args: str) -> None:
    backend = lab.notes.get("iptables", "nft")
    build.run_in(lab.host_netns, [iptables_cmd(backend), *args])


# -- loopback-bind ----------------------------------------------------------------------------


def _loopback_on(lab: LabState) -> LabState:
    return lab.with_container(build.restart_server(lab, lab.container("web"), bind="127.0.0.1"))


def _loopback_off(lab: LabState) -> LabState:
    return lab.with_container(build.restart_server(lab, lab.container("web"), bind="0.0.0.0"))


# -- no-listener ------------------------------------------------------------------------------


def _listener_off(lab: LabState) -> LabState:
    return lab.with_container(build.restart_server(lab, lab.container("web"), tcp_port=0))


def _listener_on(lab: LabState) -> LabState:
    return lab.with_container(
        build.restart_server(lab, lab.container("web"), tcp_port=spec.TCP_PORT)
    )


# -- isolated-networks: db is re-plugged into the other bridge network -------------------------


def _move(lab: LabState, name: str, network: str, ip: str) -> LabState:
    c = lab.container(name)
    net = next(n for n in lab.networks if n.name == network)
    prefixlen = int(net.subnet.split("/")[1])
    build.ip_batch(
        f"link set {c.host_veth} nomaster\nlink set {c.host_veth} master {net.bridge}\n",
        lab.host_netns,
    )
    build.ip_batch(
        "addr flush dev eth0\n"
        f"addr add {ip}/{prefixlen} dev eth0\n"
        f"route replace default via {net.gateway} dev eth0\n",
        c.netns,
    )
    return lab.with_container(
        replace(c, network=network, ip=ip, prefixlen=prefixlen, gateway=net.gateway)
    )


def _isolate(lab: LabState) -> LabState:
    return _move(lab, "db", "bridge", _MOVED_IP)


def _unisolate(lab: LabState) -> LabState:
    original = spec.plan(lab.name).container("db")
    return _move(lab, "db", original.network, original.ip)


# -- ip-forward-disabled ----------------------------------------------------------------------


def _forward_off(lab: LabState) -> LabState:
    build.write_sysctl(lab.host_netns, "net.ipv4.ip_forward", "0")
    return lab


def _forward_on(lab: LabState) -> LabState:
    build.write_sysctl(lab.host_netns, "net.ipv4.ip_forward", "1")
    return lab


# -- forward-drop: a DROP rule where users put theirs (DOCKER-USER) ----------------------------


def _drop_on(lab: LabState) -> LabState:
    _iptables(lab, "-I", "DOCKER-USER", "1", *_FORWARD_DROP)
    return lab


def _drop_off(lab: LabState) -> LabState:
    _iptables(lab, "-D", "DOCKER-USER", *_FORWARD_DROP)
    return lab


# -- no-masquerade: the egress SNAT of the default network is gone ----------------------------


def _masq_args(lab: LabState) -> list[str]:
    net = lab.networks[0]
    return ["-s", net.subnet, "!", "-o", net.bridge, "-j", "MASQUERADE"]


def _masq_off(lab: LabState) -> LabState:
    _iptables(lab, "-t", "nat", "-D", "POSTROUTING", *_masq_args(lab))
    return lab


def _masq_on(lab: LabState) -> LabState:
    _iptables(lab, "-t", "nat", "-I", "POSTROUTING", "1", *_masq_args(lab))
    return lab


# -- interface-down: web's host-side veth is administratively down -----------------------------


def _link(lab: LabState, updown: str) -> LabState:
    build.ip_batch(f"link set {lab.container('web').host_veth} {updown}\n", lab.host_netns)
    return lab


# -- mtu-mismatch: web's host-side veth has a smaller MTU than web's eth0 ----------------------


def _mtu(lab: LabState, mtu: str) -> LabState:
    build.ip_batch(f"link set {lab.container('web').host_veth} mtu {mtu}\n", lab.host_netns)
    return lab


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault(
            "loopback-bind",
            "web's server listens on 127.0.0.1 only",
            "client -> web:80 and upstream -> host:8080 are refused",
            _loopback_on,
            _loopback_off,
        ),
        Fault(
            "no-listener",
            "nothing listens on web's TCP port 80",
            "client -> web:80 and upstream -> host:8080 are refused",
            _listener_off,
            _listener_on,
        ),
        Fault(
            "isolated-networks",
            f"db is moved to the default network ({_MOVED_IP}), away from api",
            "api -> db is dropped by the isolation rules",
            _isolate,
            _unisolate,
        ),
        Fault(
            "ip-forward-disabled",
            "net.ipv4.ip_forward=0 on the host",
            "containers -> upstream and upstream -> published ports fail",
            _forward_off,
            _forward_on,
        ),
        Fault(
            "forward-drop",
            f"DOCKER-USER drops forwarded traffic to {spec.INTERNET_IP.rsplit('.', 1)[0]}.0/24",
            "containers -> upstream time out",
            _drop_on,
            _drop_off,
        ),
        Fault(
            "no-masquerade",
            "the default network's MASQUERADE rule is missing",
            "client/web -> upstream time out (replies cannot come back)",
            _masq_off,
            _masq_on,
        ),
        Fault(
            "interface-down",
            "web's host-side veth is down",
            "everything -> web fails",
            lambda lab: _link(lab, "down"),
            lambda lab: _link(lab, "up"),
        ),
        Fault(
            "mtu-mismatch",
            f"web's host-side veth has MTU {_SMALL_MTU}, web's eth0 1500",
            "large packets to or from web are dropped (UDP/ICMP > 1280 bytes)",
            lambda lab: _mtu(lab, _SMALL_MTU),
            lambda lab: _mtu(lab, "1500"),
        ),
    )
}


def for_topology(topology: str = "docker") -> dict[str, Fault]:
    """The faults a lab of ``topology`` can inject (the default lab's are FAULTS)."""
    from cntrace.lab import topologies  # noqa: PLC0415  (it imports this module's FAULTS)

    return topologies.get(topology).faults


def fault(name: str, topology: str = "docker") -> Fault:
    known = for_topology(topology)
    try:
        return known[name]
    except KeyError:
        where = "" if topology == "docker" else f" for topology {topology}"
        raise BadInput(f"unknown fault {name!r}{where} (known: {', '.join(known)})") from None


def break_(lab: LabState, name: str) -> LabState:
    f = fault(name, lab.topology)
    if name in lab.faults:
        raise BadInput(f"fault {name} is already active in lab {lab.name}")
    new = f.apply(lab)
    new = replace(new, faults=(*new.faults, name))
    state.save(new)
    return new


def fix(lab: LabState, name: str) -> LabState:
    f = fault(name, lab.topology)
    if name not in lab.faults:
        raise BadInput(f"fault {name} is not active in lab {lab.name}")
    new = f.revert(lab)
    new = replace(new, faults=tuple(x for x in new.faults if x != name))
    state.save(new)
    return new
