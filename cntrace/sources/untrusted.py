"""Checks on a Snapshot that came from a file: every value within what the kernel could have said.

The codec already guarantees types (an int is an int); this adds ranges and formats, so that path
prediction, rendering and the JSON documents never meet a value they cannot handle (an address
that does not parse, a port of 70,000, a family of 5, a name of 50 MB, a lone surrogate). The
first bad value raises BadInput naming the field (``netns[2].links[0].addresses[1].address``).

Ranges are the kernel's own (u32 ifindex and table ids, u64 inodes, IFNAMSIZ-ish names with room
to spare), so every snapshot a real host produces passes. Free text (warnings, labels, rule text)
is only bounded in size: control characters in it are legal and escaped when printed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from cntrace.errors import BadInput
from cntrace.model import (
    Address,
    Container,
    FdbEntry,
    Link,
    Neighbor,
    Netns,
    PolicyRule,
    Route,
    RuntimeNetwork,
    Snapshot,
    Socket,
)

NAME = 4096  # identifiers: names, ids, kinds, states (the kernel's are at most 16-255)
TEXT = 1 << 20  # free text: warnings, labels, image names, sysctl values
U8, U16, U32, U64 = (1 << 8) - 1, (1 << 16) - 1, (1 << 32) - 1, (1 << 64) - 1
PID_MAX = 1 << 22  # the kernel's PID_MAX_LIMIT
FAMILIES = (4, 6)
RUNTIMES = ("docker", "podman", "containerd", "kubernetes", "lab", "netns", "pid")
PORT_PROTOS = ("tcp", "udp", "sctp")
SOCKET_PROTOS = ("tcp", "udp")
PORT_STATES = ("disabled", "listening", "learning", "forwarding", "blocking")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Bad(Exception):
    """Carries the message up to the field path that names it."""


def _s(value: str, limit: int = NAME) -> None:
    if len(value) > limit:
        raise _Bad(f"{len(value)} characters, over the limit of {limit}")
    if not value.isascii() and _SURROGATE.search(value):
        raise _Bad("not valid Unicode (a lone surrogate)")


def _os(value: str | None, limit: int = NAME) -> None:
    if value is not None:
        _s(value, limit)


def _int(value: int | None, lo: int, hi: int) -> None:
    if value is not None and not lo <= value <= hi:
        raise _Bad(f"{value} is outside {lo}..{hi}")


def _one_of(value: str | None, allowed: tuple[object, ...]) -> None:
    if value is not None and value not in allowed:
        raise _Bad(f"{_show(value)} is not one of {', '.join(map(str, allowed))}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@lru_cache(maxsize=65536)
def _version(text: str) -> int:
    """The IP version of an address, or 0 when it is not one."""
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return 0


@lru_cache(maxsize=16384)
def _net_version(text: str) -> int:
    try:
        return ipaddress.ip_network(text, strict=False).version
    except ValueError:
        return 0


def _ip(value: str | None, family: int | None = None) -> None:
    if value is None:
        return
    version = _version(value) if len(value) <= 64 else 0
    if not version:
        raise _Bad(f"{_show(value)} is not an IP address")
    if family is not None and version != family:
        raise _Bad(f"{_show(value)} is not an IPv{family} address")


def _cidr(value: str | None, family: int | None = None) -> None:
    if value is None:
        return
    version = _net_version(value) if len(value) <= 64 else 0
    if not version:
        raise _Bad(f"{_show(value)} is not an address or prefix")
    if family is not None and version != family:
        raise _Bad(f"{_show(value)} is not an IPv{family} prefix")


def _join(prefix: str, exc: _Bad) -> _Bad:
    """``prefix`` and a message from below: ``[2]`` + ``.name: bad`` or ``[2]`` + ``: bad``."""
    text = str(exc)
    return _Bad(prefix + ("" if text.startswith(("[", ".")) else ": ") + text)


def _each(items: tuple[Any, ...], check: Callable[[Any], None]) -> None:
    for i, item in enumerate(items):
        try:
            check(item)
        except _Bad as exc:
            raise _join(f"[{i}]", exc) from None


def _field(name: str, check: Callable[..., None], *args: Any) -> None:
    try:
        check(*args)
    except _Bad as exc:
        raise _join(f".{name}", exc) from None


# --------------------------------------------------------------------------- per type


def _address(a: Address) -> None:
    _field("family", _one_of, a.family, FAMILIES)
    _field("address", _ip, a.address, a.family)
    _field("prefixlen", _int, a.prefixlen, 0, 32 if a.family == 4 else 128)
    _field("scope", _s, a.scope)
    _field("broadcast", _ip, a.broadcast, 4)


def _link(link: Link) -> None:
    _field("ifindex", _int, link.ifindex, 1, U32)
    if not link.name:
        raise _Bad(".name: empty")
    _field("name", _s, link.name)
    _field("kind", _s, link.kind)
    _field("mac", _os, link.mac)
    _field("mtu", _int, link.mtu, 0, U32)
    _field("oper_state", _s, link.oper_state)
    _field("master", _int, link.master, 0, U32)
    _field("peer_ifindex", _int, link.peer_ifindex, 0, U32)
    _field("peer_netns", _int, link.peer_netns, 1, U64)
    _field("vxlan_id", _int, link.vxlan_id, 0, (1 << 24) - 1)
    _field("macvlan_mode", _os, link.macvlan_mode)
    _field("alias", _os, link.alias, TEXT)
    if link.bridge is not None:
        b = link.bridge
        _field("bridge.forward_delay", _int, b.forward_delay, 0, U64)
        _field("bridge.ageing_time", _int, b.ageing_time, 0, U64)
    if link.bridge_port is not None:
        p = link.bridge_port
        _field("bridge_port.state", _one_of, p.state, PORT_STATES)
        _field("bridge_port.cost", _int, p.cost, 0, U32)
        _field("bridge_port.priority", _int, p.priority, 0, U16)
    _field("addresses", _each, link.addresses, _address)


def _route(r: Route) -> None:
    _field("family", _one_of, r.family, FAMILIES)
    _field("dst", _cidr, r.dst, r.family)
    _field("table", _int, r.table, 0, U32)
    _field("type", _s, r.type)
    _field("gateway", _ip, r.gateway)  # an IPv4 route may have an IPv6 gateway (RFC 5549)
    _field("oif", _os, r.oif)
    _field("prefsrc", _ip, r.prefsrc, r.family)
    _field("metric", _int, r.metric, 0, U32)
    _field("scope", _s, r.scope)
    _field("protocol", _s, r.protocol)


def _rule(r: PolicyRule) -> None:
    _field("family", _one_of, r.family, FAMILIES)
    _field("priority", _int, r.priority, 0, U32)
    _field("table", _int, r.table, 0, U32)
    _field("action", _s, r.action)
    _field("src", _cidr, r.src, r.family)
    _field("dst", _cidr, r.dst, r.family)
    _field("iif", _os, r.iif)
    _field("oif", _os, r.oif)
    _field("fwmark", _int, r.fwmark, 0, U32)
    _field("fwmask", _int, r.fwmask, 0, U32)


def _neighbor(n: Neighbor) -> None:
    _field("ip", _ip, n.ip)
    _field("ifname", _s, n.ifname)
    _field("state", _s, n.state)
    _field("mac", _os, n.mac)


def _fdb(e: FdbEntry) -> None:
    _field("mac", _s, e.mac)
    _field("port", _s, e.port)
    _field("bridge", _os, e.bridge)
    _field("vlan", _int, e.vlan, 0, 4095)


def _socket(s: Socket) -> None:
    _field("proto", _one_of, s.proto, SOCKET_PROTOS)
    _field("family", _one_of, s.family, FAMILIES)
    _field("local_ip", _ip, s.local_ip)
    _field("local_port", _int, s.local_port, 0, U16)
    _field("state", _s, s.state)
    _field("inode", _int, s.inode, 0, U64)
    _field("pid", _int, s.pid, 0, PID_MAX)
    _field("process", _os, s.process, TEXT)


def _pair(kv: tuple[str, str], limit: int) -> None:
    if not isinstance(kv, tuple) or len(kv) != 2:
        raise _Bad("must be a [name, text] pair")
    _s(kv[0], NAME)
    _s(kv[1], limit)


def _strings(values: tuple[str, ...], limit: int = NAME) -> None:
    _each(values, lambda v: _s(v, limit))


def _mapping(values: dict[str, str], limit: int = TEXT) -> None:
    for k, v in values.items():
        try:
            _s(k, NAME)
            _s(v, limit)
        except _Bad as exc:
            raise _join(f"[{_show(k)}]", exc) from None


def _netns(ns: Netns, text_limit: int, fast: bool = False) -> None:
    _field("inode", _int, ns.inode, 1, U64)
    _field("name", _os, ns.name)
    _field("paths", _strings, ns.paths, TEXT)
    _field("pids", _each, ns.pids, lambda p: _int(p, 1, PID_MAX))
    _field("error", _os, ns.error, TEXT)
    for name, items, check in (
        ("links", ns.links, _link),
        ("routes", ns.routes, _route),
        ("rules", ns.rules, _rule),
        ("neighbors", ns.neighbors, _neighbor),
        ("fdb", ns.fdb, _fdb),
        ("sockets", ns.sockets, _socket),
    ):
        quick = _FAST.get(name) if fast else None
        if quick is None or not all(map(quick, items)):
            _field(name, _each, items, check)
    if not fast or not all(len(k) <= NAME and len(v) <= TEXT for k, v in ns.sysctls.items()):
        _field("sysctls", _mapping, ns.sysctls)
    rs = ns.ruleset
    for key in ("iptables_legacy", "ip6tables_legacy", "iptables_nft", "ip6tables_nft"):
        _field(f"ruleset.{key}", _os, getattr(rs, key), text_limit)
    _field("ruleset.nft_json", _os, rs.nft_json, text_limit)
    _field("ruleset.ipsets", _os, rs.ipsets, text_limit)
    _field("ruleset.errors", _strings, rs.errors, TEXT)
    _field("ruleset.kernel_state", _each, rs.kernel_state, lambda kv: _pair(kv, text_limit))


def _runtime_network(n: RuntimeNetwork) -> None:
    _field("runtime", _one_of, n.runtime, RUNTIMES)
    _field("name", _s, n.name)
    _field("driver", _s, n.driver)
    _field("bridge", _os, n.bridge)
    _field("subnets", _each, n.subnets, _cidr)
    _field("host_binding_ipv4", _ip, n.host_binding_ipv4)
    _field("gateway_mode", _os, n.gateway_mode)
    _field("backend", _os, n.backend)
    _field("options", _mapping, n.options)


def _container(c: Container) -> None:
    if not c.name:
        raise _Bad(".name: empty")
    _field("id", _s, c.id)
    _field("name", _s, c.name)
    _field("runtime", _one_of, c.runtime, RUNTIMES)
    _field("pid", _int, c.pid, 0, PID_MAX)
    _field("netns", _int, c.netns, 1, U64)
    _field("host_netns", _int, c.host_netns, 1, U64)
    _field("netns_path", _os, c.netns_path, TEXT)
    _field("network_mode", _s, c.network_mode)
    _field("image", _os, c.image, TEXT)
    _field("state", _s, c.state)
    _field("labels", _mapping, c.labels)
    for i, n in enumerate(c.networks):
        where = f"networks[{i}]"
        _field(f"{where}.name", _s, n.name)
        _field(f"{where}.driver", _s, n.driver)
        _field(f"{where}.bridge", _os, n.bridge)
        _field(f"{where}.ip", _ip, n.ip, 4)
        _field(f"{where}.prefixlen", _int, n.prefixlen, 0, 32)
        _field(f"{where}.ipv6", _ip, n.ipv6, 6)
        _field(f"{where}.gateway", _ip, n.gateway)
        _field(f"{where}.mac", _os, n.mac)
        _field(f"{where}.aliases", _strings, n.aliases)
    for i, p in enumerate(c.ports):
        where = f"ports[{i}]"
        _field(f"{where}.proto", _one_of, p.proto, PORT_PROTOS)
        _field(f"{where}.host_port", _int, p.host_port, 0, U16)
        _field(f"{where}.container_port", _int, p.container_port, 0, U16)
        _field(f"{where}.host_ip", _ip, p.host_ip)
    if c.resolver is not None:
        r = c.resolver
        # resolv.conf and /etc/hosts are the container's own files: any text, bounded. Path
        # prediction uses only the entries that are addresses.
        _field("resolver.nameservers", _strings, r.nameservers)
        _field("resolver.search", _strings, r.search)
        _field("resolver.options", _strings, r.options)
        _field("resolver.hosts", _mapping, r.hosts, NAME)


# --------------------------------------------------------------------------- fast path
# One boolean expression per hot type: a 1,000-container snapshot holds ~30,000 of these objects,
# and the per-field checks above (which name the field) cost ~4 times as much. An object that
# fails here is checked again the slow way for the message. Lengths only: surrogates are looked
# for the slow way, and only when the file's text could hold one.


def _v(text: str | None) -> int:
    return -1 if text is None else (_version(text) if len(text) <= 64 else 0)


def _fast_address(a: Address) -> bool:
    f = a.family
    return (
        (f in {4, 6})
        and _v(a.address) == f
        and 0 <= a.prefixlen <= (32 if f == 4 else 128)
        and len(a.scope) <= NAME
        and (a.broadcast is None or _v(a.broadcast) == 4)
    )


def _fast_link(k: Link) -> bool:
    return (
        1 <= k.ifindex <= U32
        and 0 < len(k.name) <= NAME
        and len(k.kind) <= NAME
        and len(k.oper_state) <= NAME
        and 0 <= k.mtu <= U32
        and (k.mac is None or len(k.mac) <= NAME)
        and (k.master is None or 0 <= k.master <= U32)
        and (k.peer_ifindex is None or 0 <= k.peer_ifindex <= U32)
        and (k.peer_netns is None or 1 <= k.peer_netns <= U64)
        and (k.bridge is None or _fast_bridge(k))
        and (k.bridge_port is None or _fast_port(k))
        and k.vxlan_id is None
        and k.macvlan_mode is None
        and k.alias is None
        and all(map(_fast_address, k.addresses))
    )


def _fast_bridge(k: Link) -> bool:
    b = k.bridge
    assert b is not None
    return (b.forward_delay is None or 0 <= b.forward_delay <= U64) and (
        b.ageing_time is None or 0 <= b.ageing_time <= U64
    )


def _fast_port(k: Link) -> bool:
    p = k.bridge_port
    assert p is not None
    return (
        p.state in PORT_STATES
        and (p.cost is None or 0 <= p.cost <= U32)
        and (p.priority is None or 0 <= p.priority <= U16)
    )


def _fast_rule(r: PolicyRule) -> bool:
    f = r.family
    return (
        f in {4, 6}
        and 0 <= r.priority <= U32
        and 0 <= r.table <= U32
        and len(r.action) <= NAME
        and (r.src is None or (_net_version(r.src) if len(r.src) <= 64 else 0) == f)
        and (r.dst is None or (_net_version(r.dst) if len(r.dst) <= 64 else 0) == f)
        and (r.iif is None or len(r.iif) <= NAME)
        and (r.oif is None or len(r.oif) <= NAME)
        and (r.fwmark is None or 0 <= r.fwmark <= U32)
        and (r.fwmask is None or 0 <= r.fwmask <= U32)
    )


def _fast_route(r: Route) -> bool:
    f = r.family
    return (
        (f in {4, 6})
        and (_net_version(r.dst) if len(r.dst) <= 64 else 0) == f
        and 0 <= r.table <= U32
        and 0 <= r.metric <= U32
        and len(r.type) <= NAME
        and len(r.scope) <= NAME
        and len(r.protocol) <= NAME
        and (r.gateway is None or _v(r.gateway) > 0)
        and (r.prefsrc is None or _v(r.prefsrc) == f)
        and (r.oif is None or len(r.oif) <= NAME)
    )


def _fast_neighbor(n: Neighbor) -> bool:
    return (
        _v(n.ip) > 0
        and len(n.ifname) <= NAME
        and len(n.state) <= NAME
        and (n.mac is None or len(n.mac) <= NAME)
    )


def _fast_socket(s: Socket) -> bool:
    return (
        (s.proto in {"tcp", "udp"})
        and (s.family in {4, 6})
        and _v(s.local_ip) > 0
        and 0 <= s.local_port <= U16
        and len(s.state) <= NAME
        and (s.inode is None or 0 <= s.inode <= U64)
        and (s.pid is None or 0 <= s.pid <= PID_MAX)
        and (s.process is None or len(s.process) <= TEXT)
    )


_FAST: dict[str, Callable[[Any], bool]] = {
    "links": _fast_link,
    "routes": _fast_route,
    "rules": _fast_rule,
    "neighbors": _fast_neighbor,
    "sockets": _fast_socket,
}


def might_hold_surrogates(text: str) -> bool:
    """Whether JSON text could decode to a lone surrogate: only a ``\\uD800``-``\\uDFFF`` escape
    produces one (raw surrogates are not UTF-8)."""
    return _SURROGATE_ESCAPE.search(text) is not None


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def check(snap: Snapshot, *, text_limit: int, surrogates: bool = True) -> None:
    """Raise BadInput naming the first value no real host could have produced.

    ``text_limit`` bounds a ruleset's text (the file's own size limit: rulesets are the one
    legitimately large string). ``surrogates=False`` (the file has no surrogate escape, see
    :func:`might_hold_surrogates`) lets the hot lists take the fast path.
    """
    where = ""
    try:
        for field in ("taken_at", "hostname", "kernel", "tool_version"):
            where = field
            _s(getattr(snap, field))
        where = "warnings"
        _strings(snap.warnings, TEXT)
        where = "drop_reasons"
        _mapping(snap.drop_reasons, NAME)
        for i, ns in enumerate(snap.netns):
            where = f"netns[{i}]"
            _netns(ns, text_limit, fast=not surrogates)
        for i, c in enumerate(snap.containers):
            where = f"containers[{i}]"
            _container(c)
        for i, c in enumerate(snap.stopped):
            where = f"stopped[{i}]"
            _container(c)
            _field("exit_code", _int, c.exit_code, -(1 << 31), U32)
        for i, n in enumerate(snap.runtime_networks):
            where = f"runtime_networks[{i}]"
            _runtime_network(n)
        for i, p in enumerate(snap.port_proxies):
            where = f"port_proxies[{i}]"
            _field("proto", _one_of, p.proto, PORT_PROTOS)
            _field("host_ip", _ip, p.host_ip)
            _field("host_port", _int, p.host_port, 0, U16)
            _field("container_ip", _ip, p.container_ip)
            _field("container_port", _int, p.container_port, 0, U16)
            _field("pid", _int, p.pid, 0, PID_MAX)
    except _Bad as exc:
        raise BadInput(str(_join(where, exc))) from None
