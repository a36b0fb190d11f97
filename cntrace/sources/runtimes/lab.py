"""The built-in lab as a container runtime: its state files name the containers.

Container ids are ``<lab>.<name>``; names are short for the default lab and equal to the id for
any other lab.

Lab containers are namespaces with a long-lived server process; the lab's `host` namespace plays
the Docker host (it is claimed, not listed as a container), and `upstream` plays the internet
(listed with network mode ``external`` so that `cntrace path upstream host:8080` reads naturally).
"""

from __future__ import annotations

import os

from cntrace.lab import spec, state
from cntrace.model import Container, ContainerNetwork, PortMapping
from cntrace.sources import nsenter


def _inode(name: str) -> int | None:
    try:
        return nsenter.inode_of(nsenter.netns_path(name))
    except OSError:
        return None


def _running(pid: int | None) -> bool:
    return pid is not None and os.path.exists(f"/proc/{pid}")


class LabSource:
    """Containers of every lab recorded under /run/cntrace/labs."""

    name = "lab"

    def available(self) -> tuple[bool, str]:
        if not state.all_names():
            return False, "no cntrace lab is up"
        return True, ""

    def claimed_namespaces(self) -> list[str]:
        """Namespaces that belong to a lab without being containers (its host)."""
        claimed = []
        for lab_name in state.all_names():
            lab = state.load(lab_name)
            if lab is not None:
                claimed.append(nsenter.netns_path(lab.host_netns))
        return claimed

    def containers(self) -> list[Container]:
        found: list[Container] = []
        for lab_name in state.all_names():
            lab = state.load(lab_name)
            if lab is None or lab.status != "up":
                continue
            host = _inode(lab.host_netns)
            labels = {"cntrace.lab": lab.name}
            # The default lab's containers have short names (web, client...); other labs (tests,
            # benchmarks) prefix theirs so they never make `web` ambiguous.
            prefix = "" if lab.name == spec.DEFAULT_NAME else f"{lab.name}."
            for c in lab.containers:
                net = next((n for n in lab.networks if n.name == c.network), None)
                found.append(
                    Container(
                        id=f"{lab.name}.{c.name}",
                        name=f"{prefix}{c.name}",
                        runtime="lab",
                        pid=c.pid,
                        netns=_inode(c.netns),
                        netns_path=nsenter.netns_path(c.netns),
                        network_mode="bridge",
                        networks=(
                            ContainerNetwork(
                                name=c.network,
                                driver="bridge",
                                bridge=net.bridge if net else None,
                                ip=c.ip,
                                prefixlen=c.prefixlen,
                                gateway=c.gateway,
                                mac=c.mac,
                            ),
                        ),
                        ports=tuple(
                            PortMapping(p.proto, p.host_port, p.container_port) for p in c.published
                        ),
                        labels=labels,
                        image="cntrace-lab/server" if c.full_server else "busybox-httpd",
                        state="running" if _running(c.pid) else "gone",
                        host_netns=host,
                    )
                )
            found.append(
                Container(
                    id=f"{lab.name}.upstream",
                    name=f"{prefix}upstream",
                    runtime="lab",
                    pid=lab.upstream_pid,
                    netns=_inode(lab.upstream_netns),
                    netns_path=nsenter.netns_path(lab.upstream_netns),
                    network_mode="external",
                    labels={**labels, "cntrace.lab.role": "upstream"},
                    image="cntrace-lab/server",
                    state="running" if _running(lab.upstream_pid) else "gone",
                    host_netns=host,
                )
            )
        return found
