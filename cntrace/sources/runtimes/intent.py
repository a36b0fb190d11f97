"""What the runtimes say they configured, beyond their containers: network options, userland
proxies and stopped containers (Snapshot.runtime_networks, .port_proxies, .stopped).

A raw rule says what the kernel does; these say why the runtime wrote it (an ``--internal``
network, ``enable_icc=false``, a port published on one host address), so cntrace.path.intent can
name the cause a user recognises and a fix the runtime accepts. Everything here comes from answers
the sources already fetch (Docker's /networks list, ``podman network ls``) or from /proc, so it
costs no extra request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cntrace.model import Container, PortProxy, RuntimeNetwork
from cntrace.sources import procs as procmod
from cntrace.sources.procs import ProcTable

DOCKER_OPT = "com.docker.network.bridge."
_EXITED = re.compile(r"^Exited \((-?\d+)\)")


@dataclass
class Intent:
    """One source's share of the runtime intent."""

    networks: list[RuntimeNetwork] = field(default_factory=list)
    proxies: list[PortProxy] = field(default_factory=list)
    stopped: list[Container] = field(default_factory=list)

    def extend(self, other: Intent) -> None:
        self.networks += other.networks
        self.proxies += other.proxies
        self.stopped += other.stopped


def _flag(opts: dict[str, Any], key: str, default: bool) -> bool:
    value = opts.get(DOCKER_OPT + key)
    if value is None:
        return default
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def docker_network(net: dict[str, Any], bridge: str | None) -> RuntimeNetwork:
    """One entry of Docker's /networks list."""
    opts = {str(k): str(v) for k, v in (net.get("Options") or {}).items()}
    ipam = (net.get("IPAM") or {}).get("Config") or []
    return RuntimeNetwork(
        runtime="docker",
        name=str(net.get("Name", "")),
        driver=str(net.get("Driver", "bridge")),
        bridge=bridge,
        subnets=tuple(str(c["Subnet"]) for c in ipam if c.get("Subnet")),
        internal=bool(net.get("Internal", False)),
        icc=_flag(opts, "enable_icc", True),
        masquerade=_flag(opts, "enable_ip_masquerade", True),
        host_binding_ipv4=opts.get(DOCKER_OPT + "host_binding_ipv4") or None,
        gateway_mode=opts.get(DOCKER_OPT + "gateway_mode_ipv4") or None,
        options=opts,
    )


def podman_network(net: dict[str, Any], backend: str | None) -> RuntimeNetwork:
    """One entry of ``podman network ls --format json`` (the same shape on netavark and CNI)."""
    return RuntimeNetwork(
        runtime="podman",
        name=str(net.get("name", "")),
        driver=str(net.get("driver", "bridge")),
        bridge=str(net.get("network_interface") or "") or None,
        subnets=tuple(str(s["subnet"]) for s in net.get("subnets") or () if s.get("subnet")),
        internal=bool(net.get("internal", False)),
        backend=backend,
        options={str(k): str(v) for k, v in (net.get("options") or {}).items()},
    )


def exit_code(raw: dict[str, Any]) -> int | None:
    """A stopped Docker container's exit code, from the list's Status ("Exited (3) 2 min ago")."""
    m = _EXITED.match(str(raw.get("Status", "")))
    return int(m.group(1)) if m else None


def parse_proxy(args: list[str], pid: int | None = None) -> PortProxy | None:
    """docker-proxy's command line (``-proto tcp -host-ip 0.0.0.0 -host-port 8080 -container-ip
    172.17.0.2 -container-port 80``), or None for one this reader does not know."""
    opts = dict(zip(args[1::2], args[2::2], strict=False))
    try:
        return PortProxy(
            proto=opts.get("-proto", "tcp"),
            host_ip=opts.get("-host-ip", "0.0.0.0"),
            host_port=int(opts["-host-port"]),
            container_ip=opts["-container-ip"],
            container_port=int(opts["-container-port"]),
            pid=pid,
        )
    except (KeyError, ValueError):
        return None


def docker_proxies(table: ProcTable) -> list[PortProxy]:
    """Every docker-proxy process's relay."""
    out = []
    for pid in table.netns_of:
        if procmod.comm(pid) == "docker-proxy":
            found = parse_proxy(procmod.cmdline(pid), pid)
            if found is not None:
                out.append(found)
    return sorted(out, key=lambda p: (p.host_port, p.proto, p.host_ip))
