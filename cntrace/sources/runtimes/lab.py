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
from cntrace.sources.procs import ProcTable


def _inode(name: str) -> int | None:
    try:
        return nsenter.inode_of(nsenter.netns_path(name))
    except OSError:
        return None


class LabSource:
    """Containers of every lab recorded under /run/cntrace/labs."""

    name = "lab"

    def __init__(self, procs: ProcTable | None = None) -> None:
        self.procs = procs  # the /proc scan of this read: whether a server still runs

    def _scanned(self, pid: int | None) -> int | None:
        """The network namespace inode the /proc scan saw for ``pid`` (None: not scanned)."""
        return self.procs.netns_of.get(pid) if self.procs is not None and pid is not None else None

    def _running(self, pid: int | None) -> bool:
        if pid is None:
            return False
        if self.procs is not None and pid in self.procs.netns_of:
            return True
        return os.path.exists(f"/proc/{pid}")

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
            for c in lab.containers:
                net = next((n for n in lab.networks if n.name == c.network), None)
                network = ContainerNetwork(
                    name=c.network,
                    driver="bridge",
                    bridge=net.bridge if net else None,
                    ip=c.ip,
                    prefixlen=c.prefixlen,
                    gateway=c.gateway,
                    mac=c.mac,
                )
                ports = tuple(
                    PortMapping(p.proto, p.host_port, p.container_port) for p in c.published
                )
                found.append(
                    _member(
                        self._running(c.pid),
                        self._scanned(c.pid),
                        lab,
                        _inode(c.attached_to) if c.attached_to else host,  # a node's pods
                        c.name,
                        c.pid,
                        c.netns,
                        mode="bridge",
                        labels=labels,
                        image="cntrace-lab/server" if c.full_server else "busybox-httpd",
                        networks=(network,),
                        ports=ports,
                    )
                )
            upstream = {**labels, "cntrace.lab.role": "upstream"}
            found.append(
                _member(
                    self._running(lab.upstream_pid),
                    self._scanned(lab.upstream_pid),
                    lab,
                    host,
                    "upstream",
                    lab.upstream_pid,
                    lab.upstream_netns,
                    mode="external",
                    labels=upstream,
                    image="cntrace-lab/server",
                )
            )
        return found


def _member(
    running: bool,
    scanned: int | None,
    lab: state.LabState,
    host: int | None,
    name: str,
    pid: int | None,
    netns: str,
    *,
    mode: str,
    labels: dict[str, str],
    image: str,
    networks: tuple[ContainerNetwork, ...] = (),
    ports: tuple[PortMapping, ...] = (),
) -> Container:
    """A lab namespace with its server process, in the lab's host namespace ``host``.

    The default lab's containers have short names (web, client...); other labs (tests,
    benchmarks) prefix theirs so they never make `web` ambiguous.
    """
    prefix = "" if lab.name == spec.DEFAULT_NAME else f"{lab.name}."
    return Container(
        id=f"{lab.name}.{name}",
        name=f"{prefix}{name}",
        runtime="lab",
        pid=pid,
        # With a pid, the inode the /proc scan saw (containers.place checks it against the
        # process again; equal, the container is not copied: a lab of 1,000 is listed on every
        # command), else the named namespace's.
        netns=scanned if pid is not None else _inode(netns),
        netns_path=nsenter.netns_path(netns),
        network_mode=mode,
        networks=networks,
        ports=ports,
        labels=labels,
        image=image,
        state="running" if running else "gone",
        host_netns=host,
    )
