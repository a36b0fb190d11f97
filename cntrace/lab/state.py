"""What a running lab consists of, kept in /run/cntrace/labs/<name>.json.

The file is written before anything is created (status ``building``) so that `lab down` can remove
what a killed `lab up` left; it is the lab's equivalent of a runtime's metadata store, read by
discovery's lab source to name containers.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import zlib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from cntrace import codec
from cntrace.errors import BadInput
from cntrace.lab import state_cache
from cntrace.sources import recorded

STATE_DIR = Path(os.environ.get("CNTRACE_LAB_DIR", "/run/cntrace/labs"))
LAB_SCHEMA = "cntrace.lab/v1"


@dataclass(frozen=True)
class PortState:
    """A published port of a lab container."""

    proto: str
    host_port: int
    container_port: int


@dataclass(frozen=True)
class NetworkState:
    """A lab bridge network."""

    name: str
    bridge: str
    subnet: str
    gateway: str


@dataclass(frozen=True)
class ContainerState:
    """A lab container: its namespace, address, veth and server process."""

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
    """Everything `lab up` built, recorded so that `lab down` and discovery can find it."""

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
    if not name or "/" in name or name.startswith(".") or len(name) > 64:
        raise BadInput(f"bad lab name {name[:64]!r}")
    return STATE_DIR / f"{name}.json"


def save(state: LabState) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path_for(state.name).with_suffix(".tmp")
    tmp.write_text(codec.dumps(state))
    tmp.replace(path_for(state.name))


_LOADED: dict[str, tuple[tuple[int, int, int], LabState]] = {}


def load(name: str) -> LabState | None:
    """The lab's state, or None when it has none; a damaged file is one BadInput line.

    Read like any file cntrace did not just write: bounded, and every value checked (its names
    become namespace names and its addresses go to `ip`). A file read before in this process
    and unchanged since (same inode, size and mtime) is not parsed again: discovery asks for
    the containers and the claimed namespaces separately, and a 1,000-container lab's file
    costs ~25 ms to check; another process finds it checked in state_cache."""
    path = path_for(name)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    seen = _LOADED.get(str(path))
    if seen is not None and seen[0] == key:
        return seen[1]
    text = recorded.read_text(str(path), what="lab state file")
    content = (len(text), zlib.crc32(text.encode()), _SHAPE)  # what a kept state was read from
    kept = state_cache.read(path, content)
    if isinstance(kept, LabState):
        _LOADED[str(path)] = (key, kept)
        return kept
    try:
        data = recorded.parse_json(text, str(path), "lab state file")
        lab = codec.from_plain(LabState, data)
        _check(lab)
    except (BadInput, codec.CodecError, TypeError, ValueError, RecursionError) as exc:
        raise BadInput(f"lab state {path} is damaged ({exc}); run `cntrace lab down`") from None
    _LOADED[str(path)] = (key, lab)
    state_cache.write(path, content, lab)
    return lab


# What a kept state (state_cache) must have been pickled from: these classes, these fields.
_SHAPE = tuple(
    (c.__name__, tuple((f.name, str(f.type)) for f in fields(c)))
    for c in (PortState, NetworkState, ContainerState, LabState)
)


def _is_ip(value: str) -> bool:
    """An IPv4 or IPv6 address in the form cntrace writes (inet_pton: ~30x cheaper than
    ipaddress for the thousands of addresses of a scaled lab)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, value)
            return True
        except (OSError, ValueError):
            continue
    return False


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # namespaces, bridges, veths


def _check(lab: LabState) -> None:
    """BadInput naming the first value a lab cntrace built could not have."""

    def name(where: str, value: str) -> None:
        if not _NAME.match(value):
            raise BadInput(f"{where}: {value[:40]!r} is not a namespace or interface name")

    def ip(where: str, value: str, *, empty: bool = False) -> None:
        if empty and not value:
            return
        if len(value) > 64 or not _is_ip(value):
            raise BadInput(f"{where}: {value[:40]!r} is not an IP address")

    def number(where: str, value: int | None, lo: int, hi: int) -> None:
        if value is not None and not lo <= value <= hi:
            raise BadInput(f"{where}: {value} is outside {lo}-{hi}")

    name("name", lab.name)
    name("host_netns", lab.host_netns)
    name("upstream_netns", lab.upstream_netns)
    for i, ns in enumerate(lab.namespaces):
        name(f"namespaces[{i}]", ns)
    if lab.status not in ("building", "up"):
        raise BadInput(f"status: {lab.status[:40]!r} is not building or up")
    number("upstream_pid", lab.upstream_pid, 1, 1 << 22)
    for i, fault in enumerate(lab.faults):
        if not re.match(r"^[a-z0-9][a-z0-9-]{0,63}$", fault):
            raise BadInput(f"faults[{i}]: {fault[:40]!r} is not a fault name")
    if not re.match(r"^[0-9T:+.Z-]{0,40}$", lab.created_at):
        raise BadInput(f"created_at: {lab.created_at[:40]!r} is not a time")
    for key, value in lab.notes.items():
        if len(key) > 256 or len(value) > 4096:
            raise BadInput(f"notes[{key[:40]!r}]: too long")
    ip("uplink_ip", lab.uplink_ip, empty=True)
    ip("internet_ip", lab.internet_ip, empty=True)
    for i, n in enumerate(lab.networks):
        where = f"networks[{i}]"
        name(f"{where}.name", n.name)
        name(f"{where}.bridge", n.bridge)
        ip(f"{where}.gateway", n.gateway)
        try:
            ipaddress.ip_network(n.subnet if len(n.subnet) <= 64 else "")
        except ValueError:
            raise BadInput(f"{where}.subnet: {n.subnet[:40]!r} is not a subnet") from None
    if _all_plain(lab.containers):
        return
    for i, c in enumerate(lab.containers):
        where = f"containers[{i}]"
        for key in ("name", "netns", "network", "host_veth"):
            name(f"{where}.{key}", getattr(c, key))
        for key in ("ip", "gateway", "bind"):
            ip(f"{where}.{key}", getattr(c, key))
        number(f"{where}.prefixlen", c.prefixlen, 0, 32)
        number(f"{where}.pid", c.pid, 1, 1 << 22)
        number(f"{where}.tcp_port", c.tcp_port, 0, 65535)
        number(f"{where}.udp_port", c.udp_port, 0, 65535)  # 0: none
        if not re.match(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$", c.mac):
            raise BadInput(f"{where}.mac: {c.mac[:40]!r} is not a MAC address")
        for j, p in enumerate(c.published):
            if p.proto not in ("tcp", "udp"):
                raise BadInput(f"{where}.published[{j}].proto: {p.proto[:20]!r}")
            number(f"{where}.published[{j}].host_port", p.host_port, 1, 65535)
            number(f"{where}.published[{j}].container_port", p.container_port, 1, 65535)


_NAMES = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\n)*")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4S = re.compile(rf"(?:{_OCTET}(?:\.{_OCTET}){{3}}\n)*")
_MACS = re.compile(r"(?:[0-9a-f]{2}(?::[0-9a-f]{2}){5}\n)*")


def _all_plain(containers: tuple[ContainerState, ...]) -> bool:
    """Whether every container holds what `lab up` writes (names, IPv4 addresses, MACs and
    numbers in range), checked a field at a time over all containers with one regex each: a
    1,000-container lab was ~10 ms of every command checked one value at a time. False sends
    the caller through the per-container checks, which name the first bad value."""
    names = "".join(f"{c.name}\n{c.netns}\n{c.network}\n{c.host_veth}\n" for c in containers)
    ips = "".join(f"{c.ip}\n{c.gateway}\n{c.bind}\n" for c in containers)
    macs = "".join(f"{c.mac}\n" for c in containers)
    if not (_NAMES.fullmatch(names) and _IPV4S.fullmatch(ips) and _MACS.fullmatch(macs)):
        return False
    for c in containers:
        if not (
            0 <= c.prefixlen <= 32
            and (c.pid is None or 1 <= c.pid <= 1 << 22)
            and 0 <= c.tcp_port <= 65535
            and 0 <= c.udp_port <= 65535
        ):
            return False
        for p in c.published:
            if p.proto not in ("tcp", "udp") or not (
                1 <= p.host_port <= 65535 and 1 <= p.container_port <= 65535
            ):
                return False
    return True


def remove(name: str) -> None:
    path_for(name).unlink(missing_ok=True)
    state_cache.remove(path_for(name))


def all_names() -> list[str]:
    if not STATE_DIR.is_dir():
        return []
    return sorted(p.stem for p in STATE_DIR.glob("*.json"))
