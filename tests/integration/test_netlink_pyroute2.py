"""cntrace's netlink decoder against pyroute2's, on real namespaces built here.

cntrace (netlink.dumps + netlink.decode) and pyroute2 (NetNS, its own sockets, requests and
decoders) read the same kernel objects; every link, address, route, policy rule, neighbour and
FDB entry is then compared field by field, with pyroute2's decoded values turned into cntrace's
vocabulary here, independently of cntrace's own tables. The world holds nothing that changes by
itself (permanent/stale neighbours, static FDB entries, no traffic); should something change
anyway, the read is retried until two cntrace reads around the pyroute2 read agree.

World (prefix cntrace-nlp-, links nlp*)::

    cntrace-nlp-a  eth0 10.249.0.2/24 fd49::2/64, nlpmv0 (macvlan on nlpl0 in h) ──┐
    cntrace-nlp-b  eth0 10.249.0.3/24                                               │
    cntrace-nlp-h  nlpbr0 bridge (nf_call_iptables, alias) 10.249.0.1/24 fd49::1/64 │
                   nlpvx0 vxlan                                                     │
                   ports nlpa0 (hairpin, isolated, no learning, cost, priority), nlpb0
                   veth nlpl0/nlpl1 (macvlan lower) ───────────────────────────────┘
                   routes in main, 100, 1000, local: unicast, multipath, via inet6,
                   blackhole, unreachable, prohibit, throw, local; rules of every action
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from harness import require_root
from pyroute2 import NetNS
from pyroute2.netlink.rtnl import rt_proto, rt_scope, rt_type
from pyroute2.netlink.rtnl.fibmsg import FR_ACT_NAMES
from pyroute2.netlink.rtnl.ndmsg import NUD_NAMES, NUD_VALUES

from cntrace.sources.netlink import decode, decode_state, dumps

Row = tuple[tuple[str, Any], ...]
H, A, B = "cntrace-nlp-h", "cntrace-nlp-a", "cntrace-nlp-b"
NAMESPACES = (H, A, B)

WORLD = {
    H: [
        # (this kernel has no bridge VLAN filtering: no vlan_filtering, no FDB vlan here)
        "link add nlpbr0 type bridge stp_state 0 forward_delay 400 ageing_time 12345"
        " nf_call_iptables 1",
        "link set nlpbr0 alias nlp-test-bridge",
        "addr add 10.249.0.1/24 brd + dev nlpbr0",
        "addr add fd49::1/64 dev nlpbr0 nodad",
        "link set nlpbr0 up",
        f"link add nlpa0 type veth peer name eth0 netns {A}",
        f"link add nlpb0 type veth peer name eth0 netns {B}",
        "link set nlpa0 master nlpbr0 up",
        "link set nlpb0 master nlpbr0 up",
        "link set nlpa0 type bridge_slave learning off hairpin on isolated on cost 7 priority 9",
        # No dummy driver here: a veth end is the macvlan's lower device; the macvlan moves to A.
        "link add nlpvx0 type vxlan id 4242 dstport 4789 local 10.249.0.1 dev nlpbr0 nolearning",
        "link add nlpl0 type veth peer name nlpl1",
        "link set nlpl0 up",
        "link add nlpmv0 link nlpl0 type macvlan mode bridge",
        f"link set nlpmv0 netns {A}",
        "route add 198.51.100.0/24 via 10.249.0.2 table 100 proto static metric 5",
        "route add blackhole 198.51.101.0/24 table 100",
        "route add throw 10.249.8.0/24 table 100",
        "route add unreachable 198.51.102.0/24 table 1000",
        "route add prohibit 198.51.103.0/24",
        "route add 203.0.113.0/24 nexthop via 10.249.0.2 dev nlpbr0 nexthop via 10.249.0.3"
        " dev nlpbr0",
        "route add 192.0.2.0/25 dev nlpbr0 src 10.249.0.1 proto boot scope link",
        "route add 192.0.2.128/25 via inet6 fd49::2 dev nlpbr0",
        "route add local 10.249.9.0/24 dev lo table local",
        "-6 route add fd50::/64 via fd49::2 dev nlpbr0 metric 50 table 100",
        "-6 route add blackhole fd51::/64 proto dhcp",
        "rule add from 10.249.0.0/24 table 100 pref 100",
        "rule add fwmark 0x7/0xff table 1000 pref 200",
        "rule add not to 10.9.0.0/16 iif nlpbr0 lookup main pref 300",
        "rule add oif nlpbr0 blackhole pref 400",
        "rule add pref 500 goto 600",
        "rule add pref 550 nop",
        "rule add pref 600 prohibit",
        "rule add pref 700 unreachable",
        "-6 rule add from fd49::/64 table 100 pref 800",
        "neigh add 10.249.0.50 lladdr 02:00:00:00:49:50 dev nlpbr0 nud permanent",
        "neigh add 10.249.0.51 lladdr 02:00:00:00:49:51 dev nlpbr0 nud stale",
        "neigh add 10.249.0.52 lladdr 02:00:00:00:49:52 dev nlpbr0 nud noarp",
        "-6 neigh add fd49::50 lladdr 02:00:00:00:49:60 dev nlpbr0 nud permanent",
        "-6 neigh add fd49::51 lladdr 02:00:00:00:49:61 dev nlpbr0 nud stale",
    ],
    A: [
        "addr add 10.249.0.2/24 dev eth0",
        "addr add fd49::2/64 dev eth0 nodad",
        "link set eth0 up",
        "route add default via 10.249.0.1",
        "-6 route add default via fd49::1 dev eth0",
        "addr add 10.249.1.2/24 dev nlpmv0",
        "link set nlpmv0 up",
        "neigh add 10.249.0.1 lladdr 02:00:00:00:49:01 dev eth0 nud permanent",
    ],
    B: [
        "addr add 10.249.0.3/24 dev eth0",
        "link set eth0 up mtu 1400",
        "route add default via 10.249.0.1 metric 100",
    ],
}
FDB = [
    "fdb add 02:00:00:00:49:a1 dev nlpa0 master static",
    "fdb add 02:00:00:00:49:b1 dev nlpb0 master",
    # a VXLAN device's own entry, as flannel adds one per remote node
    "fdb append 02:00:00:00:49:c1 dev nlpvx0 dst 10.249.0.7 self permanent",
]
SYSCTLS = {
    H: ["net.ipv4.conf.nlpbr0.rp_filter=2", "net.ipv4.conf.nlpb0.route_localnet=1"],
    A: ["net.ipv4.conf.eth0.forwarding=1"],
}


def _sh(*argv: str) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert res.returncode == 0, f"{' '.join(argv)}: {res.stderr.strip()}"


def _teardown() -> None:
    for ns in NAMESPACES:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture(scope="module")
def world() -> Iterator[None]:
    require_root()
    _teardown()
    try:
        for ns in NAMESPACES:
            _sh("ip", "netns", "add", ns)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        for ns in NAMESPACES:
            for cmd in WORLD[ns]:
                _sh("ip", "-n", ns, *cmd.split())
        for cmd in FDB:
            _sh("bridge", "-n", H, *cmd.split())
        for ns, values in SYSCTLS.items():
            _sh("nsenter", f"--net=/run/netns/{ns}", "sysctl", "-qw", *values)
        yield
    finally:
        _teardown()


# --------------------------------------------------------------------------- cntrace's reading


def _cntrace(ns: str) -> dict[str, Any]:
    with dumps.Conn.open(f"/run/netns/{ns}") as conn:
        raw = dumps.dump(conn, "links")
        links = decode.parse_links(raw, conf=True)
        # Without devconf the second decode reads by shape (netlink.link_shapes): the same links.
        for _ in range(2):
            plain = decode.parse_links(raw, conf=False)
        assert plain == [dataclasses.replace(lk, inet_conf={}) for lk in links]
        names = {lk.ifindex: lk.name for lk in links}
        tunnels = frozenset(lk.ifindex for lk in links if lk.kind == "vxlan")
        addresses = decode.parse_addresses(dumps.dump(conn, "addresses"))
        return {
            "links": {lk.ifindex: dataclasses.asdict(lk) for lk in links},
            "addresses": {i: _rows(_row(a) for a in found) for i, found in addresses.items()},
            "routes": _rows(
                _row(r) for r in decode.parse_routes(dumps.dump(conn, "routes"), names)
            ),
            "rules": _rows(_row(r) for r in decode.parse_rules(dumps.dump(conn, "rules"))),
            "neighbors": _rows(
                _row(n) for n in decode_state.parse_neighbors(dumps.dump(conn, "neighbors"), names)
            ),
            "fdb": _rows(
                _row(e) for e in decode_state.parse_fdb(dumps.dump(conn, "fdb"), names, tunnels)
            ),
        }


def _rows(rows: Iterable[Row]) -> list[Row]:
    return sorted(rows, key=repr)  # values mix None and numbers


def _row(obj: Any) -> Row:
    """A decoded value as sorted (field, value) pairs: comparable, and readable in a diff."""
    return tuple(sorted(dataclasses.asdict(obj).items()))


# --------------------------------------------------------------------------- pyroute2's reading

BRPORT_STATES = {0: "disabled", 1: "listening", 2: "learning", 3: "forwarding", 4: "blocking"}
ACTIONS = {
    "FR_ACT_TO_TBL": "lookup",
    "FR_ACT_GOTO": "goto",
    "FR_ACT_NOP": "nop",
    "FR_ACT_BLACKHOLE": "blackhole",
    "FR_ACT_UNREACHABLE": "unreachable",
    "FR_ACT_PROHIBIT": "prohibit",
}
ACTION_OF = {number: ACTIONS[name] for name, number in FR_ACT_NAMES.items() if name in ACTIONS}
# `ip` (and cntrace) call scope 0 "global" where pyroute2 says "universe"
SCOPE_OF = {
    n: ("global" if v == "universe" else v) for n, v in rt_scope.items() if isinstance(n, int)
}
NUD_BITS = sorted((n for n in NUD_NAMES.values() if n), reverse=True)  # highest bit first
IFF_UP, ARPHRD_LOOPBACK, RTM_F_CLONED, FIB_RULE_INVERT = 0x1, 772, 0x200, 0x2
NUD_NOARP, NUD_PERMANENT = NUD_NAMES["NUD_NOARP"], NUD_NAMES["NUD_PERMANENT"]


def _family(family: int) -> int:
    return 4 if family == socket.AF_INET else 6


def _pr_link(m: Any) -> dict[str, Any]:
    kind = m.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    if kind is None:
        kind = "loopback" if m["ifi_type"] == ARPHRD_LOOPBACK else "device"
    data = m.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
    port = m.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA")
    slave_kind = m.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_KIND")
    mac = m.get_attr("IFLA_ADDRESS")
    inet = m.get_nested("IFLA_AF_SPEC", "AF_INET")
    bridge = None
    if kind == "bridge":
        nf = data.get_attr("IFLA_BR_NF_CALL_IPTABLES")
        bridge = {
            "stp": bool(data.get_attr("IFLA_BR_STP_STATE")),
            "vlan_filtering": bool(data.get_attr("IFLA_BR_VLAN_FILTERING")),
            "forward_delay": data.get_attr("IFLA_BR_FORWARD_DELAY"),
            "ageing_time": data.get_attr("IFLA_BR_AGEING_TIME"),
            "nf_call_iptables": None if nf is None else bool(nf),
        }
    bridge_port = None
    if slave_kind == "bridge":
        bridge_port = {
            "state": BRPORT_STATES[port.get_attr("IFLA_BRPORT_STATE")],
            "learning": bool(port.get_attr("IFLA_BRPORT_LEARNING")),
            "flood": bool(port.get_attr("IFLA_BRPORT_UNICAST_FLOOD")),
            "hairpin": bool(port.get_attr("IFLA_BRPORT_MODE")),
            "isolated": bool(port.get_attr("IFLA_BRPORT_ISOLATED")),
            "cost": port.get_attr("IFLA_BRPORT_COST"),
            "priority": port.get_attr("IFLA_BRPORT_PRIORITY"),
        }
    return {
        "ifindex": m["index"],
        "name": m.get_attr("IFLA_IFNAME"),
        "kind": kind,
        "mac": mac if mac and len(mac) == 17 else None,
        "mtu": m.get_attr("IFLA_MTU"),
        "admin_up": bool(m["flags"] & IFF_UP),
        "oper_state": _pr_oper(m),
        "master": m.get_attr("IFLA_MASTER"),
        "link": m.get_attr("IFLA_LINK"),
        "link_netnsid": m.get_attr("IFLA_LINK_NETNSID"),
        "bridge": bridge,
        "bridge_port": bridge_port,
        "vxlan_id": data.get_attr("IFLA_VXLAN_ID") if kind == "vxlan" else None,
        **_pr_vxlan(data if kind == "vxlan" else None),
        "macvlan_mode": data.get_attr("IFLA_MACVLAN_MODE") if kind == "macvlan" else None,
        "alias": m.get_attr("IFLA_IFALIAS"),
        "inet_conf": {k: inet[k] for k in ("forwarding", "rp_filter", "route_localnet")},
    }


def _pr_oper(m: Any) -> str:
    """IFLA_OPERSTATE, "up" while linkwatch lags an up link's carrier (see decode._oper_state)."""
    state = str(m.get_attr("IFLA_OPERSTATE")).lower()
    lagging = m["flags"] & IFF_UP and m["flags"] & 0x10000  # IFF_LOWER_UP
    return "up" if state == "down" and lagging else state


def _pr_vxlan(data: Any) -> dict[str, Any]:
    """cntrace's RawLink.vxlan (the underlay named later) and vxlan_link, from pyroute2."""
    if data is None:
        return {"vxlan": None, "vxlan_link": None}
    group = data.get_attr("IFLA_VXLAN_GROUP")
    return {
        "vxlan": {
            "vni": data.get_attr("IFLA_VXLAN_ID"),
            "port": data.get_attr("IFLA_VXLAN_PORT"),
            "local": data.get_attr("IFLA_VXLAN_LOCAL"),
            "remote": group if group and group != "0.0.0.0" else None,
            "dev": None,
            "learning": bool(data.get_attr("IFLA_VXLAN_LEARNING")),
        },
        "vxlan_link": data.get_attr("IFLA_VXLAN_LINK") or None,
    }


def _pr_address(m: Any) -> Row:
    return tuple(
        sorted(
            {
                "family": _family(m["family"]),
                "address": m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS"),
                "prefixlen": m["prefixlen"],
                "scope": SCOPE_OF[m["scope"]],
                "broadcast": m.get_attr("IFA_BROADCAST"),
            }.items()
        )
    )


def _pr_route(m: Any, names: dict[int, str]) -> Row:
    family = m["family"]
    dst = m.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
    gateway, oif = m.get_attr("RTA_GATEWAY"), m.get_attr("RTA_OIF")
    hops = m.get_attr("RTA_MULTIPATH")
    if hops and gateway is None:  # cntrace keeps a multipath route's first next hop
        gateway, oif = hops[0].get_attr("RTA_GATEWAY"), hops[0]["oif"]
    via = m.get_attr("RTA_VIA")
    if gateway is None and via is not None:
        gateway = via["addr"]
    return tuple(
        sorted(
            {
                "family": _family(family),
                "dst": f"{dst}/{m['dst_len']}",
                "table": m.get_attr("RTA_TABLE") or m["table"],
                "type": rt_type[m["type"]],
                "gateway": gateway,
                "oif": names.get(oif, f"if{oif}") if oif else None,
                "prefsrc": m.get_attr("RTA_PREFSRC"),
                "metric": m.get_attr("RTA_PRIORITY") or 0,
                "scope": SCOPE_OF[m["scope"]],
                "protocol": rt_proto.get(m["proto"], str(m["proto"])),
            }.items()
        )
    )


def _pr_rule(m: Any) -> Row:
    src, dst = m.get_attr("FRA_SRC"), m.get_attr("FRA_DST")
    return tuple(
        sorted(
            {
                "family": _family(m["family"]),
                "priority": m.get_attr("FRA_PRIORITY") or 0,
                "table": m.get_attr("FRA_TABLE") or m["table"],
                "action": ACTION_OF[m["action"]],
                "src": f"{src}/{m['src_len']}" if src else None,
                "dst": f"{dst}/{m['dst_len']}" if dst else None,
                "iif": m.get_attr("FRA_IIFNAME"),
                "oif": m.get_attr("FRA_OIFNAME"),
                "fwmark": m.get_attr("FRA_FWMARK"),
                "fwmask": m.get_attr("FRA_FWMASK"),
                "invert": bool(m["flags"] & FIB_RULE_INVERT),
            }.items()
        )
    )


def _nud(state: int) -> str:
    bit = next(b for b in NUD_BITS if state & b)
    return str(NUD_VALUES[bit]).removeprefix("NUD_").lower()


def _pr_neighbor(m: Any, names: dict[int, str]) -> Row:
    mac = m.get_attr("NDA_LLADDR")
    return tuple(
        sorted(
            {
                "ip": m.get_attr("NDA_DST"),
                "ifname": names[m["ifindex"]],
                "state": _nud(m["state"]),
                "mac": mac if mac and len(mac) == 17 else None,
            }.items()
        )
    )


def _pr_fdb(m: Any, names: dict[int, str]) -> Row:
    master = m.get_attr("NDA_MASTER")
    return tuple(
        sorted(
            {
                "mac": m.get_attr("NDA_LLADDR"),
                "port": names[m["ifindex"]],
                "bridge": names[master] if master is not None else None,
                "vlan": m.get_attr("NDA_VLAN"),
                "local": bool(m["state"] & NUD_PERMANENT),
                "static": bool(m["state"] & NUD_NOARP),
                "dst": m.get_attr("NDA_DST") if master is None else None,
            }.items()
        )
    )


def _pyroute2(ns: str) -> dict[str, Any]:
    inet = (socket.AF_INET, socket.AF_INET6)
    with NetNS(ns) as ipr:
        links = [_pr_link(m) for m in ipr.link("dump")]
        names = {lk["ifindex"]: lk["name"] for lk in links}
        tunnels = {lk["ifindex"] for lk in links if lk["kind"] == "vxlan"}
        addresses: dict[int, list[Row]] = {}
        for m in ipr.addr("dump"):
            if m["family"] in inet:
                addresses.setdefault(m["index"], []).append(_pr_address(m))
        return {
            "links": {lk["ifindex"]: lk for lk in links},
            "addresses": {i: _rows(found) for i, found in addresses.items()},
            "routes": _rows(
                _pr_route(m, names)
                for m in ipr.route("dump")
                if m["family"] in inet and not m["flags"] & RTM_F_CLONED
            ),
            "rules": _rows(_pr_rule(m) for m in ipr.rule("dump") if m["family"] in inet),
            # cntrace shows neighbours as `ip neigh` does: no NOARP or empty entries
            "neighbors": _rows(
                _pr_neighbor(m, names)
                for m in ipr.neigh("dump")
                if m["family"] in inet
                and m["state"]
                and not m["state"] & NUD_NOARP
                and m.get_attr("NDA_DST")
            ),
            # FDB entries of a bridge (with a master) and a VXLAN device's own (self) entries,
            # not the address lists every other device keeps
            "fdb": _rows(
                _pr_fdb(m, names)
                for m in ipr.fdb("dump")
                if (m.get_attr("NDA_MASTER") is not None or m["ifindex"] in tunnels)
                and len(m.get_attr("NDA_LLADDR") or "") == 17
            ),
        }


# --------------------------------------------------------------------------- the comparison


def _readings(ns: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(cntrace, pyroute2) of one namespace, from a moment nothing changed in it."""
    for _ in range(5):
        before = _cntrace(ns)
        reference = _pyroute2(ns)
        if _cntrace(ns) == before:
            return before, reference
    raise AssertionError(f"{ns} kept changing while it was read")


def _differences(ns: str, got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for ifindex in sorted(set(got["links"]) | set(want["links"])):
        g, w = got["links"].get(ifindex), want["links"].get(ifindex)
        if g is None or w is None:
            out.append(f"{ns} link {ifindex}: cntrace {g is not None}, pyroute2 {w is not None}")
            continue
        out.extend(
            f"{ns} link {w['name']}.{f}: cntrace {g[f]!r}, pyroute2 {w[f]!r}"
            for f in sorted(set(g) | set(w))
            if g.get(f) != w.get(f)
        )
    if got["addresses"] != want["addresses"]:
        out.append(f"{ns} addresses: cntrace {got['addresses']}, pyroute2 {want['addresses']}")
    for what in ("routes", "rules", "neighbors", "fdb"):
        for row in sorted(set(got[what]) ^ set(want[what])):
            side = "only cntrace" if row in got[what] else "only pyroute2"
            out.append(f"{ns} {what} {side}: {dict(row)}")
    return out


@pytest.mark.usefixtures("world")
@pytest.mark.parametrize("ns", NAMESPACES)
def test_same_as_pyroute2(ns: str) -> None:
    got, want = _readings(ns)
    assert not _differences(ns, got, want), "\n".join(_differences(ns, got, want))


@pytest.mark.usefixtures("world")
def test_world_covers_every_decoded_field() -> None:
    """The comparison is only as good as what the world holds: every kind of value is there."""
    h = _pyroute2(H)
    a = _pyroute2(A)
    links = [*h["links"].values(), *a["links"].values()]
    ports = [lk["bridge_port"] for lk in links if lk["bridge_port"]]
    assert {p["hairpin"] for p in ports} == {p["learning"] for p in ports} == {True, False}
    assert any(p["isolated"] for p in ports) and any(p["cost"] == 7 for p in ports)
    assert any(lk["bridge"] and lk["bridge"]["nf_call_iptables"] for lk in links)
    assert any(lk["bridge"] and lk["bridge"]["forward_delay"] == 400 for lk in links)
    assert any(lk["vxlan_id"] == 4242 for lk in links)
    vx = next(lk for lk in links if lk["vxlan_id"] == 4242)
    assert vx["vxlan"] == {
        "vni": 4242,
        "port": 4789,
        "local": "10.249.0.1",
        "remote": None,
        "dev": None,
        "learning": False,
    }
    assert any(lk["macvlan_mode"] == "bridge" and lk["link_netnsid"] is not None for lk in links)
    assert any(lk["alias"] for lk in links)
    assert any(lk["inet_conf"]["rp_filter"] == 2 for lk in links)
    assert any(lk["inet_conf"]["route_localnet"] == 1 for lk in links)
    routes = [dict(r) for r in h["routes"]]
    assert {"blackhole", "unreachable", "prohibit", "throw", "local", "unicast"} <= {
        r["type"] for r in routes
    }
    assert {100, 1000, 254, 255} <= {r["table"] for r in routes}
    assert {"static", "boot", "dhcp", "kernel"} <= {r["protocol"] for r in routes}
    assert any(r["dst"] == "203.0.113.0/24" and r["gateway"] for r in routes)  # multipath
    assert any(r["dst"] == "192.0.2.128/25" and r["gateway"] == "fd49::2" for r in routes)
    assert any(r["prefsrc"] for r in routes) and any(r["metric"] == 50 for r in routes)
    rules = [dict(r) for r in h["rules"]]
    assert set(ACTIONS.values()) <= {r["action"] for r in rules}
    assert any(r["invert"] for r in rules) and any(r["fwmask"] == 0xFF for r in rules)
    assert any(r["iif"] for r in rules) and any(r["oif"] for r in rules)
    assert {6} <= {r["family"] for r in rules}
    assert {"permanent", "stale"} <= {dict(n)["state"] for n in h["neighbors"]}
    assert any(":" in dict(n)["ip"] for n in h["neighbors"])
    fdb = [dict(e) for e in h["fdb"]]
    assert any(e["static"] for e in fdb) and any(e["local"] for e in fdb)
    assert {"mac": "02:00:00:00:49:c1", "port": "nlpvx0", "dst": "10.249.0.7"}.items() <= next(
        e for e in fdb if e["dst"]
    ).items()
