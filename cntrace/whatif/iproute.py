"""``ip route``, ``ip rule`` and ``ip link set`` applied to a namespace, with the side effects the
kernel has: a link going down loses its IPv4 routes, its IPv6 addresses, its learnt FDB entries and
neighbours, and takes its veth peer's carrier with it; coming up restores the routes its addresses
imply and an EUI-64 link-local address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from cntrace.errors import BadInput
from cntrace.model import (
    DEFAULT_POLICY_RULES,
    Address,
    BridgePort,
    FdbEntry,
    Link,
    Netns,
    PolicyRule,
    Route,
    Snapshot,
)
from cntrace.whatif.change import with_netns

TABLES = {"main": 254, "local": 255, "default": 253}
ROUTE_TYPES = ("unicast", "local", "broadcast", "blackhole", "unreachable", "prohibit", "throw")
RULE_ACTIONS = ("blackhole", "unreachable", "prohibit", "nop")


def _table(text: str) -> int:
    if text in TABLES:
        return TABLES[text]
    try:
        return int(text)
    except ValueError:
        raise BadInput(f"what-if: unknown routing table {text!r}") from None


def _family(words: list[str]) -> tuple[int | None, list[str]]:
    fam = None
    while words and words[0] in ("-4", "-6", "-f", "-family"):
        if words[0] in ("-f", "-family"):
            fam = 6 if words[1] in ("inet6", "ipv6") else 4
            words = words[2:]
        else:
            fam = int(words[0][1])
            words = words[1:]
    return fam, words


def _prefix(text: str, family: int | None) -> tuple[str, int]:
    if text == "default":
        fam = family or 4
        return ("0.0.0.0/0" if fam == 4 else "::/0"), fam
    try:
        n = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise BadInput(f"what-if: bad prefix {text!r}") from None
    return str(n), n.version


def parse(words: list[str]) -> RouteOp | RuleOp | LinkOp:
    family, words = _family(words)
    if not words:
        raise BadInput("what-if: ip needs an object (route, rule, link)")
    obj, rest = words[0], words[1:]
    if obj in ("route", "ro", "r"):
        return _parse_route(rest, family)
    if obj in ("rule", "ru"):
        return _parse_rule(rest, family)
    if obj in ("link", "l", "li"):
        return _parse_link(rest)
    raise BadInput(f"what-if: `ip {obj}` is not supported (route, rule, link set)")


# --------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class RouteOp:
    """An `ip route` change."""

    action: str  # add | del | replace | change | append
    route: Route
    given: frozenset[str]  # the selectors named (for del)
    kind: str = "ip-route"
    needs_netns: bool = True

    def apply(self, snap: Snapshot, ns: Netns | None) -> Snapshot:
        assert ns is not None
        r = self.route
        if r.type == "unicast" and r.oif is None and self.action != "del":
            r = replace(r, oif=_oif_for(ns, r))
        if r.oif is not None and r.type in ("unicast", "local", "broadcast") and not ns.link(r.oif):
            raise BadInput(f"what-if: ip route: no device {r.oif!r}")
        routes = list(ns.routes)
        same = [k for k, x in enumerate(routes) if _same_key(x, r)]
        if self.action == "del":
            hits = [k for k, x in enumerate(routes) if _selects(x, r, self.given)]
            if not hits:
                raise BadInput("what-if: ip route del: no such route")
            del routes[hits[0]]
        elif self.action in ("add", "append"):
            if same and self.action == "add":
                raise BadInput(f"what-if: ip route add {r.dst}: route exists (use replace)")
            routes.append(r)
        elif self.action in ("replace", "change"):
            if same:
                routes[same[0]] = r
            elif self.action == "change":
                raise BadInput(f"what-if: ip route change {r.dst}: no such route")
            else:
                routes.append(r)
        return with_netns(snap, replace(ns, routes=tuple(routes)))


def _same_key(a: Route, b: Route) -> bool:
    return (a.family, a.dst, a.table, a.metric) == (b.family, b.dst, b.table, b.metric) and (
        a.type != "local" or a.oif == b.oif
    )


def _selects(x: Route, r: Route, given: frozenset[str]) -> bool:
    if (x.family, x.dst, x.table) != (r.family, r.dst, r.table):
        return False
    return all(getattr(x, f) == getattr(r, f) for f in given)


def _oif_for(ns: Netns, r: Route) -> str:
    if r.gateway is None:
        raise BadInput(f"what-if: ip route {r.dst}: give `dev DEV` or `via GATEWAY`")
    gw = ipaddress.ip_address(r.gateway)
    for link in ns.links:
        for a in link.addresses:
            if a.family == gw.version and gw in ipaddress.ip_network(a.cidr, strict=False):
                return link.name
    for route in ns.routes:
        if (
            route.oif
            and route.gateway is None
            and route.family == gw.version
            and route.type == "unicast"
            and gw in ipaddress.ip_network(route.dst, strict=False)
        ):
            return route.oif
    raise BadInput(f"what-if: ip route via {r.gateway}: Nexthop has invalid gateway")


def _parse_route(words: list[str], family: int | None) -> RouteOp:
    if not words:
        raise BadInput("what-if: ip route add|del|replace|change|append PREFIX ...")
    action = {"a": "add", "d": "del", "delete": "del", "r": "replace", "repl": "replace"}.get(
        words[0], words[0]
    )
    if action not in ("add", "del", "replace", "change", "append"):
        raise BadInput(f"what-if: `ip route {words[0]}` is not a change")
    rest = words[1:]
    rtype = "unicast"
    if rest and rest[0] in ROUTE_TYPES:
        rtype, rest = rest[0], rest[1:]
    if not rest:
        raise BadInput("what-if: ip route needs a prefix")
    dst, fam = _prefix(rest[0], family)
    fields: dict[str, object] = {}
    given: set[str] = set()
    i = 1
    keys = {"via": "gateway", "dev": "oif", "oif": "oif", "src": "prefsrc", "metric": "metric",
            "preference": "metric", "priority": "metric", "table": "table", "proto": "protocol",
            "protocol": "protocol", "scope": "scope"}  # fmt: skip
    while i < len(rest):
        key = rest[i]
        if key in ("onlink", "pervasive"):
            i += 1
            continue
        if key not in keys or i + 1 >= len(rest):
            raise BadInput(f"what-if: ip route: {key!r} is not supported")
        value = rest[i + 1]
        name = keys[key]
        if name == "gateway" and value in ("inet", "inet6"):
            i += 1
            value = rest[i + 1]
        if name == "metric":
            fields[name] = int(value)
        elif name == "table":
            fields[name] = _table(value)
        else:
            fields[name] = value
        given.add(name)
        i += 2
    metric_default = 1024 if fam == 6 else 0
    scope = "link" if rtype == "unicast" and "gateway" not in fields else "global"
    if rtype in ("local",):
        scope = "host"
    route = Route(
        family=fam,
        dst=dst,
        table=int(fields.get("table", 255 if rtype == "local" else 254)),  # type: ignore[call-overload]
        type=rtype,
        gateway=fields.get("gateway"),  # type: ignore[arg-type]
        oif=fields.get("oif"),  # type: ignore[arg-type]
        prefsrc=fields.get("prefsrc"),  # type: ignore[arg-type]
        metric=int(fields.get("metric", metric_default)),  # type: ignore[call-overload]
        scope=str(fields.get("scope", scope)),
        protocol=str(fields.get("protocol", "boot")),
    )
    return RouteOp(action, route, frozenset(given - {"table"}))


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class RuleOp:
    """An `ip rule` change."""

    action: str  # add | del
    rule: PolicyRule
    given: frozenset[str]
    kind: str = "ip-rule"
    needs_netns: bool = True

    def apply(self, snap: Snapshot, ns: Netns | None) -> Snapshot:
        assert ns is not None
        rules = list(ns.rules or DEFAULT_POLICY_RULES)
        r = self.rule
        if self.action == "add":
            if "priority" not in self.given:
                used = [x.priority for x in rules if x.family == r.family and x.priority > 0]
                r = replace(r, priority=(min(used) - 1) if used else 0)
            rules.append(r)
        else:
            hits = [
                k
                for k, x in enumerate(rules)
                if x.family == r.family and all(getattr(x, f) == getattr(r, f) for f in self.given)
            ]
            if not hits:
                raise BadInput("what-if: ip rule del: no such rule")
            del rules[hits[0]]
        rules.sort(key=lambda x: (x.family, x.priority))
        return with_netns(snap, replace(ns, rules=tuple(rules)))


def _parse_rule(words: list[str], family: int | None) -> RuleOp:
    if not words or words[0] not in ("add", "a", "del", "delete", "d"):
        raise BadInput("what-if: ip rule add|del SELECTOR ACTION")
    action = "add" if words[0] in ("add", "a") else "del"
    fields: dict[str, object] = {}
    i = 1
    fam = family
    while i < len(words):
        key = words[i]
        if key == "not":
            fields["invert"] = True
            i += 1
            continue
        if key in RULE_ACTIONS:
            fields["action"] = key
            i += 1
            continue
        if i + 1 >= len(words):
            raise BadInput(f"what-if: ip rule: {key!r} needs a value")
        value = words[i + 1]
        if key in ("from", "to"):
            if value != "all":
                prefix, fam = _prefix(value, family)
                fields["src" if key == "from" else "dst"] = prefix
        elif key in ("iif", "dev"):
            fields["iif"] = value
        elif key == "oif":
            fields["oif"] = value
        elif key == "fwmark":
            mark, _, mask = value.partition("/")
            fields["fwmark"] = int(mark, 0)
            if mask:
                fields["fwmask"] = int(mask, 0)
        elif key in ("priority", "pref", "preference", "order"):
            fields["priority"] = int(value)
        elif key in ("table", "lookup"):
            fields["table"] = _table(value)
        elif key == "goto":
            fields["action"] = "goto"
            fields["table"] = int(value)
        else:
            raise BadInput(f"what-if: ip rule: {key!r} is not supported")
        i += 2
    given = frozenset(fields)
    if action == "add" and "table" not in fields and "action" not in fields:
        fields["table"] = 254
    base: dict[str, object] = {"family": fam or 4, "priority": 0, "table": 0}
    rule = PolicyRule(**{**base, **fields})  # type: ignore[arg-type]
    return RuleOp(action, rule, given)


# --------------------------------------------------------------------------- links


@dataclass(frozen=True)
class LinkOp:
    """An `ip link set` change."""

    device: str
    up: bool | None = None
    mtu: int | None = None
    master: str | None = None  # a bridge name; "" for nomaster
    kind: str = "ip-link"
    needs_netns: bool = True

    def apply(self, snap: Snapshot, ns: Netns | None) -> Snapshot:
        assert ns is not None
        link = ns.link(self.device)
        if link is None:
            raise BadInput(f"what-if: ip link set {self.device}: no such device in {ns.label}")
        changed = ns
        if self.mtu is not None:
            changed = _bridge_mtu(_set_link(changed, replace(link, mtu=self.mtu)), link.master)
        if self.master is not None:
            changed = _set_master(changed, self.device, self.master)
        snap = with_netns(snap, changed)
        if self.up is not None:
            snap = _set_updown(snap, ns.inode, self.device, self.up)
        return snap


def _parse_link(words: list[str]) -> LinkOp:
    if not words or words[0] not in ("set", "s"):
        raise BadInput("what-if: only `ip link set DEV up|down|mtu N|master BR|nomaster`")
    rest = words[1:]
    if rest and rest[0] == "dev":
        rest = rest[1:]
    if not rest:
        raise BadInput("what-if: ip link set needs a device")
    dev, rest = rest[0], rest[1:]
    up: bool | None = None
    mtu: int | None = None
    master: str | None = None
    i = 0
    while i < len(rest):
        w = rest[i]
        if w in ("up", "down"):
            up = w == "up"
        elif w == "nomaster":
            master = ""
        elif w in ("mtu", "master") and i + 1 < len(rest):
            if w == "mtu":
                if not rest[i + 1].isdigit() or not 68 <= int(rest[i + 1]) <= 65535:
                    raise BadInput(f"what-if: bad mtu {rest[i + 1]!r}")
                mtu = int(rest[i + 1])
            else:
                master = rest[i + 1]
            i += 1
        else:
            raise BadInput(f"what-if: ip link set: {w!r} is not supported (up, down, mtu, master)")
        i += 1
    if up is None and mtu is None and master is None:
        raise BadInput("what-if: ip link set DEV needs up, down, mtu N or master BR")
    return LinkOp(dev, up, mtu, master)


def _set_link(ns: Netns, link: Link) -> Netns:
    return replace(ns, links=tuple(link if x.ifindex == link.ifindex else x for x in ns.links))


def _bridge_mtu(ns: Netns, bridge: int | None) -> Netns:
    """A bridge whose MTU was not set by hand follows its smallest port (br_mtu_auto_adjust)."""
    br = ns.link(bridge) if bridge is not None else None
    ports = [lk.mtu for lk in ns.links if lk.master == bridge]
    if br is None or br.kind != "bridge" or not ports:
        return ns
    return _set_link(ns, replace(br, mtu=min(ports)))


def _set_master(ns: Netns, device: str, master: str) -> Netns:
    link = ns.link(device)
    assert link is not None
    if not master:
        return _set_link(ns, replace(link, master=None, bridge_port=None))
    bridge = ns.link(master)
    if bridge is None or bridge.kind != "bridge":
        raise BadInput(f"what-if: ip link set master {master}: no bridge of that name")
    state = "forwarding" if link.is_up else "disabled"
    port = BridgePort(state=state)
    ns = _set_link(ns, replace(link, master=bridge.ifindex, bridge_port=port))
    fdb = tuple(f for f in ns.fdb if f.port != device or f.local)
    return replace(ns, fdb=fdb)


def _carrier(link: Link, peer_admin_up: bool) -> str:
    if not link.admin_up:
        return "down"
    return "up" if peer_admin_up else "down"


def _set_updown(snap: Snapshot, inode: int, device: str, up: bool) -> Snapshot:
    ns = snap.ns(inode)
    assert ns is not None
    link = ns.link(device)
    assert link is not None
    if link.admin_up == up:
        return snap
    peer_ns = None
    peer = None
    if link.kind == "veth" and link.peer_ifindex is not None:
        peer_ns = snap.ns(link.peer_netns) if link.peer_netns is not None else ns
        peer = peer_ns.link(link.peer_ifindex) if peer_ns is not None else None
    peer_up = peer.admin_up if peer is not None else True
    new = replace(link, admin_up=up)
    new = replace(new, oper_state=_carrier(new, peer_up))
    ns = _after_carrier(_set_link(ns, new), link, new)
    snap = with_netns(snap, ns)
    if peer is not None and peer_ns is not None:
        peer_ns = snap.ns(peer_ns.inode)
        assert peer_ns is not None
        new_peer = replace(peer, oper_state=_carrier(peer, up))
        snap = with_netns(snap, _after_carrier(_set_link(peer_ns, new_peer), peer, new_peer))
        if new.is_up and new_peer.is_up:
            snap = announce(snap, inode, new, peer_ns.inode, new_peer)
            snap = announce(snap, peer_ns.inode, new_peer, inode, new)
    return snap


def announce(snap: Snapshot, port_ns: int, port: Link, far_ns: int, far: Link) -> Snapshot:
    """A link that gains carrier sends at once (IPv6 duplicate-address detection, MLD): the bridge
    behind ``port`` learns the far end's MAC."""
    ns = snap.ns(port_ns)
    other = snap.ns(far_ns)
    if ns is None or other is None or port.master is None or not far.mac:
        return snap
    if other.sysctl(f"net.ipv6.conf.{far.name}.disable_ipv6", "0") == "1":
        return snap
    bridge = ns.link(port.master)
    if bridge is None or bridge.kind != "bridge":
        return snap
    fdb = tuple(f for f in ns.fdb if f.mac != far.mac or f.local)
    entry = FdbEntry(far.mac, port.name, bridge.name)
    return with_netns(snap, replace(ns, fdb=(*fdb, entry)))


def _after_carrier(ns: Netns, old: Link, new: Link) -> Netns:
    """What the kernel does when a link starts or stops running."""
    was, now = old.is_up, new.is_up
    if old.admin_up and not new.admin_up:
        # Down: IPv4 routes through it go, IPv6 addresses (and their routes) go.
        addrs = tuple(a for a in new.addresses if a.family == 4)
        ns = _set_link(ns, replace(new, addresses=addrs))
        ns = replace(
            ns,
            routes=tuple(r for r in ns.routes if r.oif != new.name),
            neighbors=tuple(n for n in ns.neighbors if n.ifname != new.name),
        )
    if not old.admin_up and new.admin_up:
        ns = _set_link(ns, _with_link_local(new))
        link = ns.link(new.ifindex)
        assert link is not None
        ns = replace(ns, routes=ns.routes + _address_routes(ns, link))
    if was and not now:
        ns = replace(ns, fdb=tuple(f for f in ns.fdb if f.port != new.name or f.local))
    if new.bridge_port is not None and was != now:
        link = ns.link(new.ifindex)
        assert link is not None
        state = "forwarding" if now else "disabled"
        ns = _set_link(ns, replace(link, bridge_port=replace(new.bridge_port, state=state)))
    return ns


def _with_link_local(link: Link) -> Link:
    if link.kind == "loopback" or not link.mac or any(a.family == 6 for a in link.addresses):
        return link
    b = [int(x, 16) for x in link.mac.split(":")]
    if len(b) != 6:
        return link
    b[0] ^= 0x02
    iid = [*b[:3], 0xFF, 0xFE, *b[3:]]
    words = [f"{(iid[k] << 8) | iid[k + 1]:x}" for k in range(0, 8, 2)]
    addr = str(ipaddress.ip_address("fe80::" + ":".join(words)))
    return replace(link, addresses=(*link.addresses, Address(6, addr, 64, scope="link")))


def _address_routes(ns: Netns, link: Link) -> tuple[Route, ...]:
    """The routes the kernel adds for a link's addresses when it comes up."""
    have = {(r.family, r.dst, r.table, r.oif, r.type) for r in ns.routes}
    out: list[Route] = []
    for a in link.addresses:
        if a.family == 4:
            n = ipaddress.ip_network(a.cidr, strict=False)
            cands = [Route(4, f"{a.address}/32", 255, "local", oif=link.name, prefsrc=a.address,
                           scope="host", protocol="kernel")]  # fmt: skip
            if n.prefixlen < 32:
                cands.append(Route(4, str(n), 254, "unicast", oif=link.name, prefsrc=a.address,
                                   scope="link", protocol="kernel"))  # fmt: skip
            if n.prefixlen < 31:
                cands.append(Route(4, f"{n.broadcast_address}/32", 255, "broadcast",
                                   oif=link.name, prefsrc=a.address, scope="link",
                                   protocol="kernel"))  # fmt: skip
        else:
            n = ipaddress.ip_network(a.cidr, strict=False)
            cands = [Route(6, str(n), 254, "unicast", oif=link.name, metric=256,
                           protocol="kernel")]  # fmt: skip
        for r in cands:
            key = (r.family, r.dst, r.table, r.oif, r.type)
            if key not in have:
                have.add(key)
                out.append(r)
    return tuple(out)
