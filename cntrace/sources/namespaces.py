"""The namespace walk: find every network namespace, enter each once, read what its kernel holds.

Cost model (a thousand namespaces must take well under a second): /proc is walked once (procs);
each namespace is entered once (setns on this thread, from one to the next) to create its netlink
sockets; then every namespace gets each dump request before any answer is read
(netlink.dumps.dump_many). /proc/sys is read only in namespaces that act as a host, and
rulesets (iptables-save and nft are the only complete readers) only where netfilter tables exist.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from cntrace.errors import EnvironmentProblem, NeedsPrivilege
from cntrace.model import (
    DEFAULT_POLICY_RULES,
    Address,
    Link,
    Netns,
    PolicyRule,
    Route,
    Ruleset,
    Socket,
    Vxlan,
)
from cntrace.sources import nsenter, port_read, sparse
from cntrace.sources.netlink import decode, decode_state, dumps
from cntrace.sources.netlink import proto as nlp
from cntrace.sources.procs import ProcTable, netns_inode, read_text

NETNS_DIRS = ("/run/netns", "/var/run/netns")
INIT_NET_INODE = 0xEFFFFFF9  # PROC_NET_INIT_INO (include/linux/proc_ns.h) on recent kernels
PIDS_KEPT = 4
# Read from /proc/sys only in namespaces that act as a host (root, bridges, netfilter tables):
# each /proc/sys open costs ~0.25 ms. Forwarding and rp_filter come from RTM_GETNETCONF instead.
HOST_SYSCTLS = (
    "net/ipv4/conf/all/route_localnet",
    "net/ipv4/ip_local_port_range",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_count",
    "net/netfilter/nf_conntrack_max",
)
DETAIL_DUMPS = ("routes", "rules", "neighbors", "netconf4", "netconf6")


@dataclass
class Space:
    """One namespace while it is being read."""

    inode: int
    paths: list[str] = field(default_factory=list)
    name: str | None = None
    pids: list[int] = field(default_factory=list)
    conn: dumps.Conn | None = None
    full: bool = False  # diag/netfilter sockets made, legacy tables checked
    listed: bool = False  # links and addresses read by sources.forkread (no socket held here)
    error: str | None = None
    sysctls: dict[str, str] = field(default_factory=dict)
    legacy_tables: bool = False
    nft_tables: list[tuple[str, str, int]] | None = None  # (family, name, flags), from netlink
    raw_links: list[decode.RawLink] = field(default_factory=list)
    addresses: dict[int, list[Address]] = field(default_factory=dict)
    # A narrow read's plain bridge ports (sources.sparse): their address messages undecoded,
    # which of them it may leave out, and those it leaves out now.
    held_addresses: dict[int, list[decode.Message]] = field(default_factory=dict)
    ports: frozenset[int] = frozenset()
    omit: frozenset[int] = frozenset()
    # A big bridge host's plain ports not read in full (sources.port_read), by ifindex.
    unread: dict[int, port_read.Port] = field(default_factory=dict)
    dumps: dict[str, list[bytes]] = field(default_factory=dict)
    ruleset: Ruleset = field(default_factory=Ruleset)
    is_root: bool = False
    owners: dict[int, tuple[int, str]] = field(default_factory=dict)  # socket inode -> pid, comm
    parsed: dict[str, object] | None = None  # parse_detail's answer, when decoded early

    def candidates(self) -> list[str]:
        return self.paths + [f"/proc/{pid}/ns/net" for pid in self.pids]


# --------------------------------------------------------------------------- finding namespaces

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(path: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), path)


def netns_mounts(mountinfo: str = "/proc/self/mountinfo") -> dict[int, list[str]]:
    """Every nsfs bind mount of a network namespace: /run/netns/*, Docker's <exec-root>/netns/*,
    Podman's /run/netns/netns-*, CNI's /run/netns/cni-*, and anything else mounted that way."""
    out: dict[int, list[str]] = {}
    text = read_text(mountinfo) or ""
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 5 or not fields[3].startswith("net:["):
            continue
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        if sep + 1 >= len(fields) or fields[sep + 1] != "nsfs":
            continue
        inode = int(fields[3][5:-1])
        path = _unescape(fields[4])
        paths = out.setdefault(inode, [])
        if path not in paths:
            paths.append(path)
    return out


def find_namespaces(procs: ProcTable) -> tuple[dict[int, Space], int | None]:
    """Every namespace reachable by a bind mount or a process, deduplicated by inode."""
    spaces: dict[int, Space] = {}
    for inode, paths in netns_mounts().items():
        space = spaces.setdefault(inode, Space(inode))
        space.paths.extend(sorted(paths, key=lambda p: (os.path.dirname(p) not in NETNS_DIRS, p)))
        for p in paths:
            if os.path.dirname(p) in NETNS_DIRS and space.name is None:
                space.name = os.path.basename(p)
    for inode, pids in procs.by_netns().items():
        spaces.setdefault(inode, Space(inode)).pids.extend(pids[: PIDS_KEPT * 4])
    # PID 1's namespace; kthreadd (PID 2) lives in init_net too and is readable where PID 1 is
    # shielded (some sandboxes); kernels since 6.x give init_net a fixed inode as a last resort.
    root = procs.netns_of.get(1) or netns_inode(1) or procs.netns_of.get(2) or netns_inode(2)
    if root is None and INIT_NET_INODE in spaces:
        root = INIT_NET_INODE
    if root is not None and root in spaces:
        spaces[root].is_root = True
    return spaces, root


# --------------------------------------------------------------------------- entering them


def _read_sysctls() -> dict[str, str]:
    """The host-level sysctls of the namespace this thread is in (missing modules: absent)."""
    out: dict[str, str] = {}
    for key in HOST_SYSCTLS:
        text = read_text("/proc/sys/" + key)
        if text is not None:
            out[key.replace("/", ".")] = " ".join(text.split())
    return out


def legacy_tables() -> bool:
    """Whether iptables-legacy has tables here (/proc/thread-self: this thread's namespace)."""
    for name in ("ip_tables_names", "ip6_tables_names"):
        if (read_text(f"/proc/thread-self/net/{name}") or "").strip():
            return True
    return False


def _fill(space: Space, *, full: bool, sockets: bool, rulesets: bool) -> None:
    """Make the namespace's sockets; the calling thread is inside it."""
    if space.conn is None:
        space.conn = dumps.Conn(dumps.netlink_socket(nlp.NETLINK_ROUTE))
    if full:
        if sockets and space.conn.diag is None:
            space.conn.diag = dumps.netlink_socket(nlp.NETLINK_SOCK_DIAG)
        if rulesets and space.conn.nf is None:
            space.conn.nf = dumps.netlink_socket(nlp.NETLINK_NETFILTER)
        space.legacy_tables = rulesets and legacy_tables()
        space.full = True


def open_many(spaces: Iterable[Space], *, full: bool, sockets: bool, rulesets: bool) -> None:
    """Visit each namespace once (setns from one to the next, home at the end) to make its
    sockets; a namespace that vanished since the scan gets an error instead."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for space in spaces:
            last: OSError | None = None
            for path in space.candidates():
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    last = exc
                    continue
                try:
                    nsenter.setns(fd)
                except OSError as exc:
                    if exc.errno == errno.EPERM:
                        raise NeedsPrivilege(
                            "entering network namespaces", "CAP_SYS_ADMIN"
                        ) from exc
                    last = exc
                    continue
                finally:
                    os.close(fd)
                _fill(space, full=full, sockets=sockets, rulesets=rulesets)
                break
            else:
                if space.conn is None:
                    why = os.strerror(last.errno) if last and last.errno else "no path to it"
                    space.error = f"vanished during discovery ({why})"
    finally:
        nsenter.setns(home)
        os.close(home)


# --------------------------------------------------------------------------- reading them


def read_links(
    spaces: list[Space],
    *,
    full: bool,
    sockets: bool,
    rulesets: bool,
    loopback: bool = True,
    narrow: bool = False,
) -> None:
    """Open the namespaces' sockets and read their links and addresses (``narrow``: the
    addresses of plain bridge ports are set aside, sources.sparse, and a big bridge host's
    plain ports are not read in full, sources.port_read)."""
    open_many(spaces, full=full, sockets=sockets, rulesets=rulesets)
    live = [sp for sp in spaces if sp.conn is not None]
    conns = [sp.conn for sp in live if sp.conn is not None]
    addresses = dumps.dump_many(conns, "addresses")
    done = _read_big(live, addresses, loopback) if narrow else set()
    rest = [sp for sp in live if sp.inode not in done]
    rest_conns = [sp.conn for sp in rest if sp.conn is not None]
    for sp, res in zip(rest, dumps.dump_many(rest_conns, "links"), strict=True):
        if isinstance(res, OSError):
            sp.error = f"links: {res}"
        else:
            sp.raw_links = decode.parse_links(res, conf=False, loopback=loopback)
            sp.dumps["links"] = res
    for sp, res in zip(live, addresses, strict=True):
        if isinstance(res, OSError):
            continue
        if narrow:
            sparse.hold(sp, res, loopback)
        else:
            sp.addresses = decode.parse_addresses(res, loopback=loopback)


def _read_big(
    live: list[Space], addresses: list[dumps.Chunks | OSError], loopback: bool
) -> set[int]:
    """Read the links of the namespaces with at least port_read.BIG bridge ports as
    sources.port_read does; returns the inodes it read (the others take the full dump)."""
    conns = [sp.conn for sp in live if sp.conn is not None]
    big: list[tuple[Space, dict[int, port_read.Port], dumps.Chunks]] = []
    for sp, res, addr in zip(live, dumps.dump_many(conns, "bridge_ports"), addresses, strict=True):
        if not isinstance(res, OSError) and not isinstance(addr, OSError):
            index = port_read.port_index(res)
            if len(index) >= port_read.BIG:
                big.append((sp, index, addr))
    if not big:
        return set()
    chosen = [sp.conn for sp, _i, _a in big if sp.conn is not None]
    tops = dumps.dump_many(chosen, "links_nomaster")
    confs = dumps.dump_many(chosen, "netconf4")
    many = {sp.inode for sp, _i, _a in big}
    small = [sp.conn for sp in live if sp.conn is not None and sp.inode not in many]
    try:
        kinds = port_read.registered_kinds(small[0] if small else chosen[0])
    except OSError:
        return set()
    done = set()
    for (sp, index, addr), top, conf in zip(big, tops, confs, strict=True):
        if isinstance(top, OSError) or isinstance(conf, OSError):
            continue
        if port_read.read(sp, index, top, conf, addr, loopback, kinds):
            done.add(sp.inode)
    return done


def read_detail(
    chosen: list[Space], *, sockets: bool, rulesets: bool, per_interface: bool = False
) -> None:
    """Routes, rules, neighbours, FDB, sockets, sysctls and rulesets of the chosen namespaces.
    ``per_interface`` also records each interface's route_localnet (`snapshot --save` of the
    whole host): nothing cntrace shows or walks reads it, and on a host of 1,000 ports it is a
    second decode of every link."""
    conns = [sp.conn for sp in chosen if sp.conn is not None]
    chosen = [sp for sp in chosen if sp.conn is not None]
    for what in DETAIL_DUMPS:
        for sp, res in zip(chosen, dumps.dump_many(conns, what), strict=True):
            if isinstance(res, OSError):
                sp.error = sp.error or f"{what}: {res}"
            else:
                sp.dumps[what] = res
    bridged = [sp for sp in chosen if any(lk.kind in ("bridge", "vxlan") for lk in sp.raw_links)]
    for sp, res in zip(
        bridged, dumps.dump_many([sp.conn for sp in bridged if sp.conn], "fdb"), strict=True
    ):
        if not isinstance(res, OSError):
            sp.dumps["fdb"] = res
    if sockets:
        for what in dumps.DIAG_DUMPS:
            for sp, res in zip(chosen, dumps.dump_many(conns, what), strict=True):
                if not isinstance(res, OSError):
                    sp.dumps[what] = res
    for sp in chosen:
        netconf(sp)
    tables = _has_tables(chosen) if rulesets else [False] * len(chosen)
    settle_detail(chosen, tables, rulesets=rulesets, per_interface=per_interface)


def settle_detail(
    chosen: list[Space], tables: list[bool], *, rulesets: bool, per_interface: bool
) -> None:
    """What follows the dumps of a detail read (``tables``: whether each namespace has
    netfilter tables): /proc/sys of the namespaces that act as a host, and rulesets."""
    for sp, has in zip(chosen, tables, strict=True):
        if sp.is_root or has or any(r.kind == "bridge" for r in sp.raw_links):
            _host_sysctls(sp, per_interface=per_interface)
    if rulesets:
        _rulesets([sp for sp, has in zip(chosen, tables, strict=True) if has])


def netconf(sp: Space) -> None:
    """Forwarding and rp_filter of every interface not left out; a namespace that may leave
    ports out keeps the dumps (a port brought back is decoded again, sources.sparse)."""
    names = _names(sp)
    for what in ("netconf4", "netconf6"):
        raw = sp.dumps.get(what) if sp.ports else sp.dumps.pop(what, None)
        if raw is not None:
            sp.sysctls.update(decode_state.parse_netconf(raw, names, skip=sp.omit))


def _names(sp: Space) -> dict[int, str]:
    """ifindex -> name of every link read, and of the ports not read in full (port_read)."""
    names = {r.ifindex: r.name for r in sp.raw_links}
    for index, port in sp.unread.items():
        names.setdefault(index, port.name)
    return names


def _host_sysctls(sp: Space, *, per_interface: bool) -> None:
    """/proc/sys values and per-interface route_localnet, for a namespace that acts as a host."""
    for path in sp.candidates():
        try:
            with nsenter.entered(path):
                sp.sysctls.update(_read_sysctls())
            break
        except OSError:
            continue
    if per_interface and "links" in sp.dumps:
        for name, conf in decode.parse_inet_confs(sp.dumps["links"]).items():
            if "route_localnet" in conf:
                sp.sysctls[f"net.ipv4.conf.{name}.route_localnet"] = str(conf["route_localnet"])


def _has_tables(chosen: list[Space]) -> list[bool]:
    """Whether each namespace has netfilter tables (nf_tables, incl. iptables-nft, or legacy)."""
    conns = [sp.conn for sp in chosen if sp.conn is not None]
    out = []
    for sp, res in zip(chosen, dumps.dump_many(conns, "nft_tables"), strict=True):
        if not isinstance(res, OSError):
            sp.nft_tables = decode.parse_nft_tables(res)  # flags: rulesets.read_ruleset
        out.append(bool(sp.nft_tables) or sp.legacy_tables)
    return out


def _rulesets(chosen: list[Space]) -> None:
    """Read the rulesets of namespaces that have tables."""
    for sp in chosen:
        path = next(iter(sp.candidates()), None)
        if path is None:
            continue
        from cntrace.sources.rulesets import read_ruleset  # noqa: PLC0415  (subprocess: lazy)

        try:
            sp.ruleset = read_ruleset(path, sp.nft_tables)
        except EnvironmentProblem as exc:
            sp.ruleset = Ruleset(errors=(str(exc),))
        except OSError as exc:
            sp.ruleset = Ruleset(errors=(f"{type(exc).__name__}: {exc}",))


# --------------------------------------------------------------------------- into the model


def _links(sp: Space, peers: dict[tuple[int, int], int]) -> tuple[Link, ...]:
    out = []
    for r in sp.raw_links:
        if r.ifindex in sp.omit:
            continue
        peer_ifindex = None
        peer_netns = None
        # Both ends of a veth made inside namespaces often share an ifindex (2 and 2): IFLA_LINK
        # equal to the link's own index names itself only when the peer is in this namespace.
        if (
            r.link
            and (r.link != r.ifindex or r.link_netnsid is not None)
            and r.kind in ("veth", "netkit", "macvlan", "macvtap", "vlan", "ipvlan")
        ):
            peer_ifindex = r.link
            if r.link_netnsid is not None:
                peer_netns = peers.get((sp.inode, r.ifindex))
        out.append(
            Link(
                ifindex=r.ifindex,
                name=r.name,
                kind=r.kind,
                mac=r.mac,
                mtu=r.mtu,
                admin_up=r.admin_up,
                oper_state=r.oper_state,
                master=r.master,
                peer_ifindex=peer_ifindex,
                peer_netns=peer_netns,
                peer_nsid=r.link_netnsid
                if peer_ifindex is not None and peer_netns is None
                else None,
                addresses=tuple(sparse.addresses(sp, r.ifindex)),
                bridge=r.bridge,
                bridge_port=r.bridge_port,
                vxlan_id=r.vxlan_id,
                macvlan_mode=r.macvlan_mode,
                alias=r.alias,
                vxlan=_vxlan(r, sp.raw_links),
            )
        )
    return tuple(out)


def _vxlan(r: decode.RawLink, links: list[decode.RawLink]) -> Vxlan | None:
    """The device's tunnel settings, with its underlay device named."""
    if r.vxlan is None or r.vxlan_link is None:
        return r.vxlan
    dev = next((x.name for x in links if x.ifindex == r.vxlan_link), f"if{r.vxlan_link}")
    return replace(r.vxlan, dev=dev)


def to_netns(
    sp: Space, root: int | None, peers: dict[tuple[int, int], int], cls: type[Netns] = Netns
) -> Netns:
    """The model's Netns from what was read (``peers``: peers.resolve_peers); ``cls`` is Netns
    or its lazy twin (sources.lazy), built directly rather than copied."""
    return cls(
        inode=sp.inode,
        name=sp.name,
        paths=tuple(sp.paths + [f"/proc/{p}/ns/net" for p in sp.pids[:1]]),
        is_root=sp.inode == root,
        links=_links(sp, peers),
        pids=tuple(sp.pids[:PIDS_KEPT]),
        **detail(sp),  # type: ignore[arg-type]
    )


def detail(sp: Space) -> dict[str, object]:
    """Netns's detail fields (sources.lazy.NETNS_DETAIL) from what was read of ``sp``."""
    parsed = sp.parsed if sp.parsed is not None else parse_detail(sp)
    return {**parsed, "sysctls": sp.sysctls, "ruleset": sp.ruleset, "error": sp.error}


def parse_detail(sp: Space) -> dict[str, object]:
    """The detail decoded from ``sp``'s dumps: routes, rules, neighbours, FDB and sockets (the
    forked reader decodes them as each namespace arrives, sources.forkread)."""
    names = _names(sp)
    raw = sp.dumps
    socks: list[Socket] = []
    owners = sp.owners
    for what in dumps.DIAG_DUMPS:
        if what in raw:
            for s in decode_state.parse_sockets(raw[what], what[:3]):
                own = owners.get(s.inode or -1)
                socks.append(replace(s, pid=own[0], process=own[1]) if own else s)
    return {
        "routes": (
            tuple(
                r
                for r in decode.parse_routes(raw["routes"], names, derived=False)
                if not _derived(r)
            )
            if "routes" in raw
            else ()
        ),
        "rules": _unless_default(tuple(decode.parse_rules(raw["rules"]))) if "rules" in raw else (),
        "neighbors": (
            tuple(decode_state.parse_neighbors(raw["neighbors"], names))
            if "neighbors" in raw
            else ()
        ),
        "fdb": (
            tuple(
                decode_state.parse_fdb(
                    raw["fdb"],
                    names,
                    frozenset(r.ifindex for r in sp.raw_links if r.kind == "vxlan"),
                    sp.omit,
                )
            )
            if "fdb" in raw
            else ()
        ),
        "sockets": tuple(socks),
    }


def _unless_default(rules: tuple[PolicyRule, ...]) -> tuple[PolicyRule, ...]:
    """No rules when they are exactly the kernel's defaults: a Snapshot's empty ``rules`` means
    those (model.DEFAULT_POLICY_RULES). Five rules per namespace, a thousand namespaces:
    a tenth of a large snapshot's objects, all saying nothing."""
    defaults = {(r.family, r.priority, r.table) for r in DEFAULT_POLICY_RULES}
    if len(rules) == len(defaults) and all(
        (r.family, r.priority, r.table) in defaults
        and r.action == "lookup"
        and not (r.src or r.dst or r.iif or r.oif or r.fwmark is not None or r.invert)
        for r in rules
    ):
        return ()
    return rules


def _derived(route: Route) -> bool:
    """Routes the kernel makes by itself from each address (the local table's local, broadcast,
    multicast and anycast entries, IPv6 link-local prefixes): most of a namespace's routes, all
    implied by its addresses (model.Netns.routes says so). Routes a person or daemon added, such
    as AnyIP ``local`` routes, are kept."""
    if route.protocol != "kernel":
        return False
    if route.table == 255:
        return route.type in ("local", "broadcast", "multicast", "anycast")
    return route.family == 6 and route.dst == "fe80::/64"
