"""What a running lab consists of, kept in /run/cntrace/labs/<name>.json.

The file is written before anything is created (status ``building``) so that `lab down` can remove
what a killed `lab up` left; it is the lab's equivalent of a runtime's metadata store, read by
discovery's lab source to name containers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from cntrace import codec
from cntrace.errors import BadInput

STATE_DIR = Path(os.environ.get("CNTRACE_LAB_DIR", "/run/cntrace/labs"))
LAB_SCHEMA = "cntrace.lab/v1"


@dataclass(frozen=True)
class PortState:
    proto: str
    host_port: int
    container_port: int


@dataclass(frozen=True)
class NetworkState:
    name: str
    bridge: str
    subnet: str
    gateway: str


@dataclass(frozen=True)
class ContainerState:
    name: str
    netns: str
    network: str
    ip: str
    prefixlen: int
    gateway: str
    mac: str
    host_veth: str
    pid: int | None = None
    published: tuple[PortState, ...] = ()
    bind: str = "0.0.0.0"
    tcp_port: int = 80
    udp_port: int = 9000
    full_server: bool = True
    # The namespace holding the container's host-side end (its bridge port, veth peer or macvlan
    # parent); empty for the lab host. A nested node's pods are attached to the node.
    attached_to: str = ""


@dataclass(frozen=True)
class LabState:
    name: str
    host_netns: str
    upstream_netns: str
    namespaces: tuple[str, ...]
    status: str = "building"  # building | up
    networks: tuple[NetworkState, ...] = ()
    containers: tuple[ContainerState, ...] = ()
    faults: tuple[str, ...] = ()
    upstream_pid: int | None = None
    uplink_ip: str = ""
    internet_ip: str = ""
    created_at: str = ""
    schema: str = LAB_SCHEMA
    notes: dict[str, str] = field(default_factory=dict)
    topology: str = "docker"  # cntrace.lab.topologies names every other one

    def container(self, name: str) -> ContainerState:
        for c in self.containers:
            if c.name == name:
                return c
        raise BadInput(f"lab {self.name} has no container {name!r}")

    def with_container(self, c: ContainerState) -> LabState:
        return replace(
            self, containers=tuple(c if x.name == c.name else x for x in self.containers)
        )


def path_for(name: str) -> Path:
    return STATE_DIR / f"{name}.json"


def save(state: LabState) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path_for(state.name).with_suffix(".tmp")
    tmp.write_text(codec.dumps(state))
    tmp.replace(path_for(state.name))


def load(name: str) -> LabState | None:
    try:
        text = path_for(name).read_text()
    except FileNotFoundError:
        return None
    try:
        return codec.loads(LabState, text)
    except (codec.CodecError, json.JSONDecodeError) as exc:
        raise BadInput(
            f"lab state {path_for(name)} is damaged ({exc}); run `cntrace lab down`"
        ) from None


def remove(name: str) -> None:
    path_for(name).unlink(missing_ok=True)


def all_names() -> list[str]:
    if not STATE_DIR.is_dir():
        return []
    return sorted(p.stem for p in STATE_DIR.glob("*.json"))
