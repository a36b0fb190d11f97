"""The lab's topology mechanism: a topology is one module with a pure plan and its faults.

A plan is data: the namespaces to create, then ordered steps, each run inside one of those
namespaces (an `ip -batch` script, a sysctl, an iptables-restore or `nft -f` ruleset), and the
initial state file (containers, networks) that `lab up` saves before creating anything. `build`
runs any plan the same way and starts every container's server; `faults` looks a lab's faults up
by its topology. The default Docker-like lab keeps its own plan (spec.py) and build path.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from cntrace.errors import BadInput
from cntrace.lab.state import ContainerState, LabState, PortState

Change = Callable[[LabState], LabState]

# What `--iptables` selects: the two iptables back ends, or native nftables (a topology that
# supports it ships an equivalent `table inet` ruleset).
BACKENDS = ("nft", "legacy", "nftables")
STEP_KINDS = ("ip", "bridge", "sysctl", "iptables", "nft")


@dataclass(frozen=True)
class Fault:
    """A break a topology knows how to make and undo."""

    name: str
    summary: str
    breaks: str  # what stops working, for `lab status` and the docs
    apply: Change
    revert: Change


@dataclass(frozen=True)
class Step:
    """One action inside one lab namespace (never the root namespace)."""

    kind: str  # ip | bridge | sysctl | iptables | nft
    netns: str
    text: str  # the batch script, `key=value`, or the ruleset
    what: str = ""  # progress line


@dataclass(frozen=True)
class TopologyPlan:
    """Everything `lab up --topology T` creates, derived from a lab name and a back end."""

    topology: str
    name: str
    backend: str
    namespaces: tuple[str, ...]
    steps: tuple[Step, ...]
    state: LabState  # the initial state file: containers (pid None), networks, roles

    def tools(self) -> tuple[str, ...]:
        """Programs the steps need."""
        need = {"ip"}
        for s in self.steps:
            if s.kind == "iptables":
                need.add(iptables_cmd(self.backend, restore=True))
            elif s.kind in ("nft", "bridge"):
                need.add(s.kind)
        return tuple(sorted(need))


@dataclass(frozen=True)
class Topology:
    """A built-in lab topology and the faults it offers."""

    name: str
    summary: str
    faults: dict[str, Fault]
    # None: the classic Docker-like lab, planned by spec.plan and built by build.up.
    plan: Callable[[str, str], TopologyPlan] | None = None
    backends: tuple[str, ...] = ("nft", "legacy")
    notes: tuple[str, ...] = field(default=())

    def check_backend(self, backend: str) -> str:
        if backend not in self.backends:
            raise BadInput(
                f"topology {self.name} supports --iptables {'|'.join(self.backends)}, not {backend}"
            )
        return backend


def iptables_cmd(backend: str, restore: bool = False) -> str:
    base = "iptables-legacy" if backend == "legacy" else "iptables-nft"
    return f"{base}-restore" if restore else base


# ----------------------------------------------------------------------------- plan helpers


def gateway(subnet: str) -> str:
    return str(next(ipaddress.ip_network(subnet).hosts()))


def prefixlen(subnet: str) -> int:
    return ipaddress.ip_network(subnet).prefixlen


def mac_for(ip: str) -> str:
    """Docker-style MAC from an IPv4 address, so neighbour entries are predictable."""
    return "02:42:" + ":".join(f"{int(o):02x}" for o in ip.split("."))


def ip(netns: str, *lines: str, what: str = "") -> Step:
    return Step("ip", netns, "\n".join(lines) + "\n", what)


def sysctl(netns: str, key: str, value: str) -> Step:
    return Step("sysctl", netns, f"{key}={value}")


def veth(a: str, a_ns: str, b: str, b_ns: str) -> str:
    """A veth pair created with both ends placed in (non-root) namespaces at once."""
    return f"link add {a} netns {a_ns} type veth peer name {b} netns {b_ns}"


def render(p: TopologyPlan) -> str:
    """The plan as the shell commands `lab up` runs (`cntrace lab up --print`)."""
    out = [f"# lab {p.name} (topology {p.topology}): what `cntrace lab up` runs\n"]
    out.append("ip -batch - <<EOF\n" + "".join(f"netns add {n}\n" for n in p.namespaces) + "EOF\n")
    for s in p.steps:
        if s.kind in ("ip", "bridge"):
            out.append(f"{s.kind} -n {s.netns} -batch - <<EOF\n{s.text}EOF\n")
        elif s.kind == "sysctl":
            out.append(f"ip netns exec {s.netns} sysctl -w {s.text}\n")
        elif s.kind == "iptables":
            cmd = iptables_cmd(p.backend, restore=True)
            out.append(f"ip netns exec {s.netns} {cmd} <<EOF\n{s.text}EOF\n")
        else:
            out.append(f"ip netns exec {s.netns} nft -f - <<EOF\n{s.text}EOF\n")
    return "".join(out)


def container(
    lab: str,
    name: str,
    ip_: str,
    *,
    network: str,
    subnet: str,
    gateway_: str,
    host_veth: str,
    attached_to: str = "",
    tcp: int = 80,
    udp: int = 9000,
    published: tuple[PortState, ...] = (),
) -> ContainerState:
    """A lab container's initial state: namespace ``<lab>.<name>``, a full lab server."""
    return ContainerState(
        name=name,
        netns=f"{lab}.{name}",
        network=network,
        ip=ip_,
        prefixlen=prefixlen(subnet),
        gateway=gateway_,
        mac=mac_for(ip_),
        host_veth=host_veth,
        published=published,
        tcp_port=tcp,
        udp_port=udp,
        attached_to=attached_to,
    )
