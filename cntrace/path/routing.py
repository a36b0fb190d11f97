"""Route look-up in one namespace, the way the kernel's FIB does it.

Policy rules in priority order (the three default rules when a snapshot holds none), then within a
table the longest prefix, then the lowest metric. ``throw`` continues with the next rule; blackhole,
unreachable and prohibit end the look-up with that type.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from cntrace.model import DEFAULT_POLICY_RULES, Netns, PolicyRule, Route

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

TABLE_NAMES = {255: "local", 254: "main", 253: "default"}


@dataclass(frozen=True, slots=True)
class RouteResult:
    """The outcome of a look-up: ``kind`` is unicast, local, broadcast, blackhole, unreachable,
    prohibit, or none (nothing matched)."""

    kind: str
    route: Route | None = None
    rule: PolicyRule | None = None

    @property
    def ok(self) -> bool:
        return self.kind in ("unicast", "local", "broadcast", "multicast")

    @property
    def oif(self) -> str | None:
        return self.route.oif if self.route else None

    @property
    def gateway(self) -> str | None:
        return self.route.gateway if self.route else None

    def describe(self, dst: str) -> str:
        if self.route is None:
            return f"no route to {dst}"
        r = self.route
        table = TABLE_NAMES.get(r.table, str(r.table))
        where = f"via {r.gateway} dev {r.oif}" if r.gateway else f"dev {r.oif}"
        prefix = "default" if r.dst in ("0.0.0.0/0", "::/0") else r.dst
        kind = "" if r.type == "unicast" else f"{r.type} "
        text = f"{kind}{prefix} {where if r.oif or r.gateway else ''}".rstrip()
        return f"{text} (table {table})" if r.table != 254 else text


@lru_cache(maxsize=4096)
def net(cidr: str) -> IPNetwork:
    return ipaddress.ip_network(cidr, strict=False)


@lru_cache(maxsize=4096)
def addr(ip: str) -> IPAddress:
    return ipaddress.ip_address(ip)


def family_of(ip: str) -> int:
    return addr(ip).version


def _rule_matches(
    rule: PolicyRule, dst: IPAddress, src: IPAddress | None, iif: str | None, mark: int
) -> bool:
    ok = True
    if rule.src and (src is None or src not in net(rule.src)):
        ok = False
    if ok and rule.dst and dst not in net(rule.dst):
        ok = False
    if ok and rule.iif and rule.iif != (iif or "lo"):
        ok = False
    if ok and rule.fwmark is not None:
        mask = rule.fwmask if rule.fwmask is not None else 0xFFFFFFFF
        ok = (mark & mask) == rule.fwmark
    return ok != rule.invert


def _table_lookup(ns: Netns, table: int, dst: IPAddress, family: int) -> Route | None:
    best: Route | None = None
    best_key: tuple[int, int] | None = None
    for route in ns.routes:
        if route.table != table or route.family != family:
            continue
        network = net(route.dst)
        if dst not in network:
            continue
        key = (-network.prefixlen, route.metric)
        if best_key is None or key < best_key:
            best, best_key = route, key
    return best


def local_addresses(ns: Netns) -> set[str]:
    return {a.address for link in ns.links for a in link.addresses}


def lookup(
    ns: Netns, dst: str, *, src: str | None = None, iif: str | None = None, mark: int = 0
) -> RouteResult:
    """The route the kernel would choose in ``ns`` for a packet to ``dst``.

    ``iif`` is the input interface for forwarded packets, None for locally generated ones.
    """
    d = addr(dst)
    family = d.version
    s = addr(src) if src else None
    rules = sorted(
        (r for r in (ns.rules or DEFAULT_POLICY_RULES) if r.family == family),
        key=lambda r: r.priority,
    )
    local = dst in local_addresses(ns) or any(  # 127.0.0.1/8 makes all of 127/8 local
        a.scope == "host" and d in net(a.cidr) for lk in ns.links for a in lk.addresses
    )
    for rule in rules:
        if not _rule_matches(rule, d, s, iif, mark):
            continue
        if rule.action in ("blackhole", "unreachable", "prohibit"):
            return RouteResult(rule.action, rule=rule)
        if rule.action != "lookup":
            continue
        if rule.table == 255 and local:
            # The kernel's local route for an address of the namespace: implied by the address
            # (snapshots leave these routes out).
            return RouteResult(
                "local", Route(family, f"{dst}/{d.max_prefixlen}", 255, "local"), rule
            )
        route = _table_lookup(ns, rule.table, d, family)
        if route is None or route.type == "throw":
            continue
        return RouteResult(route.type, route, rule)
    return RouteResult("none")


def source_address(ns: Netns, result: RouteResult, dst: str) -> str | None:
    """The source address the kernel picks: the route's prefsrc, else the primary address of the
    output interface (in the destination's family, global scope first)."""
    if result.route and result.route.prefsrc:
        return result.route.prefsrc
    family = family_of(dst)
    link = ns.link(result.oif) if result.oif else None
    candidates = [a for a in (link.addresses if link else ()) if a.family == family]
    if not candidates:  # e.g. a route via a link without addresses: any global address
        candidates = [
            a for lk in ns.links for a in lk.addresses if a.family == family and a.scope == "global"
        ]
    d = addr(dst)
    for a in candidates:  # prefer an address on the destination's own subnet
        if d in net(a.cidr) and a.scope != "host":
            return a.address
    for a in candidates:
        if a.scope == "global":
            return a.address
    return candidates[0].address if candidates else None
