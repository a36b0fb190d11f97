"""Read the live host into a Snapshot: every network namespace, what the kernel holds in each, and
the containers that own them.

Cost model (a thousand containers must take well under a second): /proc is walked once; each
namespace is entered once (setns on this thread) to create its netlink sockets and read its
sysctls; then every namespace gets each dump request before any answer is read (netlink.dump_many).
No process is started per namespace or per container; rulesets, the one exception (iptables-save
and nft are the only complete readers), are read only in namespaces that have netfilter tables.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import re
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from cntrace import __version__
from cntrace.errors import BadInput, EnvironmentProblem, NeedsPrivilege
from cntrace.model import (
    DEFAULT_POLICY_RULES,
    Address,
    Container,
    Link,
    Netns,
    PolicyRule,
    Resolver,
    Route,
    Ruleset,
    Snapshot,
    Socket,
)
from cntrace.sources import netlink as nl
from cntrace.sources import nsenter
from cntrace.sources.procs import ProcTable, netns_inode, read_text
from cntrace.sources.runtimes import RuntimeSource
from cntrace.sources.runtimes.registry import default_sources
from cntrace.topology import Topology, resolve_ref

NETNS_DIRS = ("/run/netns", "/var/run/netns")
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
class _Space:
    """One namespace while it is being read."""

    inode: int
    paths: list[str] = field(default_factory=list)
    name: str | None = None
    pids: list[int] = field(default_factory=list)
    conn: nl.Conn | None = None
    full: bool = False  # diag/netfilter sockets made, legacy tables checked
    error: str | None = None
    sysctls: dict[str, str] = field(default_factory=dict)
    legacy_tables: bool = False
    raw_links: list[nl.RawLink] = field(default_factory=list)
    addresses: dict[int, list[Address]] = field(default_factory=dict)
    dumps: dict[str, list[bytes]] = field(default_factory=dict)
    ruleset: Ruleset = field(default_factory=Ruleset)
    is_root: bool = False
    owners: dict[int, tuple[int, str]] = field(default_factory=dict)  # socket inode -> pid, comm

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


def find_namespaces(procs: ProcTable) -> tuple[dict[int, _Space], int | None]:
    """Every namespace reachable by a bind mount or a process, deduplicated by inode."""
    spaces: dict[int, _Space] = {}
    for inode, paths in netns_mounts().items():
        space = spaces.setdefault(inode, _Space(inode))
        space.paths.extend(sorted(paths, key=lambda p: (os.path.dirname(p) not in NETNS_DIRS, p)))
        for p in paths:
            if os.path.dirname(p) in NETNS_DIRS and space.name is None:
                space.name = os.path.basename(p)
    for inode, pids in procs.by_netns().items():
        spaces.setdefault(inode, _Space(inode)).pids.extend(pids[: PIDS_KEPT * 4])
    # PID 1's namespace; kthreadd (PID 2) lives in init_net too and is readable where PID 1 is
    # shielded (some sandboxes).
    root = procs.netns_of.get(1) or netns_inode(1) or procs.netns_of.get(2) or netns_inode(2)
    if root is not None and root in spaces:
        spaces[root].is_root = True
    return spaces, root


# --------------------------------------------------------------------------- per-namespace reads


def _read_sysctls() -> dict[str, str]:
    """The host-level sysctls of the namespace this thread is in (missing modules: absent)."""
    out: dict[str, str] = {}
    for key in HOST_SYSCTLS:
        text = read_text("/proc/sys/" + key)
        if text is not None:
            out[key.replace("/", ".")] = " ".join(text.split())
    return out


def _legacy_tables() -> bool:
    """Whether iptables-legacy has tables here (/proc/thread-self: this thread's namespace)."""
    for name in ("ip_tables_names", "ip6_tables_names"):
        if (read_text(f"/proc/thread-self/net/{name}") or "").strip():
            return True
    return False


def _fill(space: _Space, *, full: bool, sockets: bool, rulesets: bool) -> None:
    """Make the namespace's sockets; the calling thread is inside it."""
    if space.conn is None:
        space.conn = nl.Conn(nl.netlink_socket(nl.NETLINK_ROUTE))
    if full:
        if sockets and space.conn.diag is None:
            space.conn.diag = nl.netlink_socket(nl.NETLINK_SOCK_DIAG)
        if rulesets and space.conn.nf is None:
            space.conn.nf = nl.netlink_socket(nl.NETLINK_NETFILTER)
        space.legacy_tables = rulesets and _legacy_tables()
        space.full = True


def _open_many(spaces: Iterable[_Space], *, full: bool, sockets: bool, rulesets: bool) -> None:
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


def _open(space: _Space, *, full: bool, sockets: bool, rulesets: bool) -> None:
    _open_many([space], full=full, sockets=sockets, rulesets=rulesets)


# --------------------------------------------------------------------------- veth peers


def _resolve_peers(spaces: list[_Space]) -> dict[tuple[int, int], int]:
    """(netns inode, ifindex) -> the inode of the namespace its IFLA_LINK_NETNSID points to.

    A veth end names its peer by ifindex plus a netnsid only meaningful inside its own namespace.
    Peers are matched by the mutual reference (A.link == B.ifindex and B.link == A.ifindex); that
    also teaches each namespace's netnsid map, which resolves macvlan lower devices. Anything
    ambiguous is settled by asking the kernel (RTM_GETNSID with the candidate's fd).
    """
    by_index: dict[int, list[_Space]] = {}
    by_pair: dict[tuple[int, int], list[_Space]] = {}  # (ifindex, IFLA_LINK) of veth ends
    for sp in spaces:
        for lk in sp.raw_links:
            by_index.setdefault(lk.ifindex, []).append(sp)
            if lk.link_netnsid is not None and lk.link is not None:
                by_pair.setdefault((lk.ifindex, lk.link), []).append(sp)
    resolved: dict[tuple[int, int], int] = {}
    nsid_map: dict[int, dict[int, set[int]]] = {}
    pending: list[tuple[_Space, nl.RawLink, list[_Space]]] = []
    for sp in spaces:
        for lk in sp.raw_links:
            if lk.link_netnsid is None or lk.link is None:
                continue
            if lk.kind in ("veth", "netkit"):
                mutual = [o for o in by_pair.get((lk.link, lk.ifindex), ()) if o is not sp]
                if len(mutual) == 1:
                    resolved[(sp.inode, lk.ifindex)] = mutual[0].inode
                    nsid_map.setdefault(sp.inode, {}).setdefault(lk.link_netnsid, set()).add(
                        mutual[0].inode
                    )
                    continue
                if mutual:
                    pending.append((sp, lk, mutual))
                    continue
            pending.append((sp, lk, [o for o in by_index.get(lk.link, ()) if o is not sp]))
    unsettled: dict[int, list[tuple[nl.RawLink, list[_Space]]]] = {}
    for sp, lk, cands in pending:
        known = nsid_map.get(sp.inode, {}).get(lk.link_netnsid or -1, set())
        if len(known) == 1:
            resolved[(sp.inode, lk.ifindex)] = next(iter(known))
        elif cands:
            unsettled.setdefault(sp.inode, []).append((lk, cands))
    by_inode = {sp.inode: sp for sp in spaces}
    for inode, items in unsettled.items():
        conn = by_inode[inode].conn
        if conn is None:
            continue
        targets = sorted({c.inode for _, cs in items for c in cs})
        ids = _nsids(conn, [by_inode[t] for t in targets])
        for lk, cs in items:
            for cand in cs:
                if ids.get(cand.inode) == lk.link_netnsid:
                    resolved[(inode, lk.ifindex)] = cand.inode
                    break
    return resolved


def _nsids(conn: nl.Conn, targets: list[_Space]) -> dict[int, int | None]:
    fds: list[int] = []
    opened: list[_Space] = []
    try:
        for t in targets:
            for path in t.candidates():
                try:
                    fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
                    opened.append(t)
                    break
                except OSError:
                    continue
        answers = nl.nsids(conn, fds)
    except OSError:
        return {}
    finally:
        for fd in fds:
            os.close(fd)
    return {t.inode: a for t, a in zip(opened, answers, strict=True)}


def _links(sp: _Space, peers: dict[tuple[int, int], int]) -> tuple[Link, ...]:
    out = []
    for r in sp.raw_links:
        peer_ifindex = None
        peer_netns = None
        if (
            r.link is not None
            and r.link != 0
            # a peer in another namespace may have the same ifindex (two eth0s, index 2)
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
                addresses=tuple(sp.addresses.get(r.ifindex, ())),
                bridge=r.bridge,
                bridge_port=r.bridge_port,
                vxlan_id=r.vxlan_id,
                macvlan_mode=r.macvlan_mode,
                alias=r.alias,
            )
        )
    return tuple(out)


def _host_sysctls(sp: _Space) -> None:
    """/proc/sys values and per-interface route_localnet, for a namespace that acts as a host."""
    for path in sp.candidates():
        try:
            with nsenter.entered(path):
                sp.sysctls.update(_read_sysctls())
            break
        except OSError:
            continue
    if "links" in sp.dumps:
        for r in nl.parse_links(sp.dumps["links"], conf=True):
            if "route_localnet" in r.inet_conf:
                sp.sysctls[f"net.ipv4.conf.{r.name}.route_localnet"] = str(
                    r.inet_conf["route_localnet"]
                )


# --------------------------------------------------------------------------- containers


def _resolver(pid: int) -> Resolver | None:
    """The container's resolv.conf and /etc/hosts, seen through /proc/PID/root."""
    conf = read_text(f"/proc/{pid}/root/etc/resolv.conf")
    hosts_text = read_text(f"/proc/{pid}/root/etc/hosts")
    if conf is None and hosts_text is None:
        return None
    ns: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in (conf or "").splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            ns.append(parts[1])
        elif parts[0] in ("search", "domain"):
            search.extend(parts[1:])
        elif parts[0] == "options":
            options.extend(parts[1:])
    hosts: dict[str, str] = {}
    for line in (hosts_text or "").splitlines():
        parts = line.split("#", 1)[0].split()
        for name in parts[1:]:
            hosts.setdefault(name, parts[0])
    return Resolver(tuple(ns), tuple(search), tuple(options), hosts)


def _collect(
    sources: Iterable[RuntimeSource], warnings: list[str]
) -> tuple[list[Container], set[int]]:
    """Every source's containers, and the namespaces sources claim without listing (a lab's
    host namespace)."""
    out: list[Container] = []
    claimed: set[int] = set()
    for source in sources:
        try:
            ok, why = source.available()
            if not ok:
                warnings.append(why)
                continue
            out.extend(source.containers())
            claim = getattr(source, "claimed_namespaces", None)
            for path in claim() if callable(claim) else ():
                with contextlib.suppress(OSError):
                    claimed.add(nsenter.inode_of(path))
        except PermissionError as exc:
            warnings.append(f"{source.name}: permission denied ({exc})")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.append(f"{source.name}: {type(exc).__name__}: {exc}")
    return out, claimed


def _place(c: Container, spaces: dict[int, _Space], procs: ProcTable) -> Container:
    """Fill the namespace inode and path; a container whose process is gone is marked gone."""
    inode = c.netns
    state = c.state
    if c.pid is not None:
        # Asked again, not taken from the /proc scan: the runtime listing came later, and the
        # container may have exited in between.
        inode = netns_inode(c.pid)
        if inode is None:
            state = "gone"
    if inode is None and c.netns_path and state != "gone":
        try:
            inode = nsenter.inode_of(c.netns_path)
        except OSError:
            state = "gone"
    path = c.netns_path
    if inode is not None:
        space = spaces.get(inode)
        if space is None:
            space = spaces[inode] = _Space(inode)
            if path:
                space.paths.append(path)
        if c.pid is not None and c.pid not in space.pids:
            space.pids.insert(0, c.pid)
        if path is None:
            path = space.paths[0] if space.paths else (f"/proc/{c.pid}/ns/net" if c.pid else None)
    return replace(c, netns=inode, netns_path=path, state=state)


def _dedupe(containers: list[Container], claimed: set[int]) -> list[Container]:
    """Drop named-namespace entries for namespaces another runtime already claims."""
    claimed = claimed | {
        c.netns for c in containers if c.runtime not in ("netns", "pid") and c.netns is not None
    }
    seen_ids: set[tuple[str, str]] = set()
    out = []
    for c in containers:
        if c.runtime == "netns" and c.netns in claimed:
            continue
        if (c.runtime, c.id) in seen_ids:
            continue
        seen_ids.add((c.runtime, c.id))
        out.append(c)
    return out


# --------------------------------------------------------------------------- socket owners


def _socket_owners(pids: Iterable[int]) -> dict[int, tuple[int, str]]:
    """socket inode -> (pid, comm) for the given processes' open fds."""
    out: dict[int, tuple[int, str]] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        comm = (read_text(f"/proc/{pid}/comm") or "?").strip()
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                out.setdefault(int(target[8:-1]), (pid, comm))
    return out


def _all_pids_in(inodes: set[int], procs: ProcTable) -> list[int]:
    return [pid for pid, ino in procs.netns_of.items() if ino in inodes]


# --------------------------------------------------------------------------- the reader


class _Asking(threading.Thread):
    """The runtime sources, asked on their own thread."""

    def __init__(self, sources: list[RuntimeSource]) -> None:
        super().__init__(name="cntrace-runtimes", daemon=True)
        self.sources = sources
        self.found: list[Container] = []
        self.claimed: set[int] = set()
        self.warnings: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.found, self.claimed = _collect(self.sources, self.warnings)
        except BaseException as exc:  # handed to the reading thread, raised there
            self.error = exc

    def result(self, warnings: list[str]) -> tuple[list[Container], set[int]]:
        self.join()
        if self.error is not None:
            raise self.error
        warnings.extend(self.warnings)
        return self.found, self.claimed


def _read_links(
    spaces: list[_Space], *, full: bool, sockets: bool, rulesets: bool, loopback: bool = True
) -> None:
    """Open the namespaces' sockets and read their links and addresses."""
    _open_many(spaces, full=full, sockets=sockets, rulesets=rulesets)
    live = [sp for sp in spaces if sp.conn is not None]
    conns = [sp.conn for sp in live if sp.conn is not None]
    for sp, res in zip(live, nl.dump_many(conns, "links"), strict=True):
        if isinstance(res, OSError):
            sp.error = f"links: {res}"
        else:
            sp.raw_links = nl.parse_links(res, conf=False, loopback=loopback)
            sp.dumps["links"] = res
    for sp, res in zip(live, nl.dump_many(conns, "addresses"), strict=True):
        if not isinstance(res, OSError):
            sp.addresses = nl.parse_addresses(res, loopback=loopback)


def _check_privilege() -> None:
    if os.geteuid() != 0:
        raise NeedsPrivilege("reading every network namespace", "CAP_SYS_ADMIN and CAP_NET_ADMIN")


def read_snapshot(
    *,
    only: Iterable[str] | None = None,
    rulesets: bool = True,
    sockets: bool = True,
    detail: bool = True,
    pids: Iterable[int] = (),
    sources: Iterable[RuntimeSource] | None = None,
) -> Snapshot:
    """Read the live host.

    ``only``: container refs (name, id prefix, pid:N, netns:NAME); every namespace is still
    listed with its links and addresses, but routes, rules, neighbours, FDB, sockets, sysctls and
    rulesets are read only for those containers' namespaces, their host sides and the root.
    ``detail=False`` reads links and addresses alone, without loopback (what ``cntrace ls``
    shows). ``pids`` adds
    ``pid:N`` containers. ``sources`` replaces the runtime sources (tests).
    """
    _check_privilege()
    refs = list(only) if only is not None else None
    extra_pids = set(pids)
    for ref in refs or ():
        if ref.startswith("pid:") and ref[4:].isdigit():
            extra_pids.add(int(ref[4:]))
    procs = ProcTable.scan()
    spaces, root = find_namespaces(procs)
    warnings: list[str] = []
    runtime_sources = list(sources) if sources is not None else default_sources(procs, extra_pids)
    # Runtimes are asked on a second thread while this one reads the kernel: their sockets,
    # stats and subprocesses wait in the kernel at the same time as the netlink dumps do.
    asking = _Asking(runtime_sources)
    asking.start()

    full_all = detail and refs is None
    ordered = sorted(spaces.values(), key=lambda s: s.inode)
    try:
        # `ls` (detail=False) never shows loopback: it is not even decoded then.
        _read_links(ordered, full=full_all, sockets=sockets, rulesets=rulesets, loopback=detail)
        found, claimed = asking.result(warnings)
        known = set(spaces)
        containers = _dedupe([_place(c, spaces, procs) for c in found], claimed)
        late = [sp for inode, sp in spaces.items() if inode not in known]
        if late:  # a namespace only a runtime knew (not mounted, no process seen by the scan)
            _read_links(late, full=full_all, sockets=sockets, rulesets=rulesets, loopback=detail)
            ordered = sorted(spaces.values(), key=lambda s: s.inode)
        live = [sp for sp in ordered if sp.conn is not None]
        peers = _resolve_peers(live)

        selected: set[int] = set()
        if full_all:
            selected = {sp.inode for sp in live}
        elif detail and refs:
            selected = _select(refs, live, spaces, root, peers, containers, warnings)
            _open_many(
                (sp for sp in live if sp.inode in selected),
                full=True,
                sockets=sockets,
                rulesets=rulesets,
            )
        chosen = [sp for sp in live if sp.inode in selected]
        _detail(chosen, sockets=sockets, rulesets=rulesets, warnings=warnings)
        if sockets and refs:
            _own_sockets(chosen, procs)
    finally:
        asking.join()
        for sp in spaces.values():
            if sp.conn is not None:
                sp.conn.close()

    netns = tuple(_netns(sp, root, peers) for sp in ordered)
    snap = Snapshot(
        netns=netns,
        containers=tuple(containers),
        taken_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        hostname=socket.gethostname(),
        kernel=os.uname().release,
        tool_version=__version__,
        warnings=tuple(warnings),
    )
    return _finish(snap, detail=detail)


def _select(
    refs: list[str],
    live: list[_Space],
    spaces: dict[int, _Space],
    root: int | None,
    peers: dict[tuple[int, int], int],
    containers: list[Container],
    warnings: list[str],
) -> set[int]:
    """The namespaces a targeted read needs in full: the refs', their peers', and the root."""
    prelim = Snapshot(
        netns=tuple(_netns(sp, root, peers) for sp in live), containers=tuple(containers)
    )
    prelim = _finish(prelim, detail=False)
    wanted: set[int] = {root} if root is not None else set()
    for ref in refs:
        target = resolve_ref(prelim, ref)
        inode = target.inode if isinstance(target, Netns) else target.netns
        if isinstance(target, Container) and target.host_netns is not None:
            wanted.add(target.host_netns)
        if inode is None:
            continue
        wanted.add(inode)
        ns = prelim.ns(inode)
        for link in ns.links if ns else ():
            if link.peer_netns is not None:
                wanted.add(link.peer_netns)
    warnings.append(
        "partial snapshot: routes, rules, neighbours, FDB, sockets, sysctls and rulesets were "
        f"read only for {len(wanted)} of {len(spaces)} namespaces"
    )
    return wanted


def _detail(chosen: list[_Space], *, sockets: bool, rulesets: bool, warnings: list[str]) -> None:
    conns = [sp.conn for sp in chosen if sp.conn is not None]
    chosen = [sp for sp in chosen if sp.conn is not None]
    for what in DETAIL_DUMPS:
        for sp, res in zip(chosen, nl.dump_many(conns, what), strict=True):
            if isinstance(res, OSError):
                sp.error = sp.error or f"{what}: {res}"
            else:
                sp.dumps[what] = res
    bridged = [sp for sp in chosen if any(lk.kind == "bridge" for lk in sp.raw_links)]
    for sp, res in zip(
        bridged, nl.dump_many([sp.conn for sp in bridged if sp.conn], "fdb"), strict=True
    ):
        if not isinstance(res, OSError):
            sp.dumps["fdb"] = res
    if sockets:
        for what in nl.DIAG_DUMPS:
            for sp, res in zip(chosen, nl.dump_many(conns, what), strict=True):
                if not isinstance(res, OSError):
                    sp.dumps[what] = res
    for sp in chosen:
        names = {r.ifindex: r.name for r in sp.raw_links}
        for what in ("netconf4", "netconf6"):
            if what in sp.dumps:
                sp.sysctls.update(nl.parse_netconf(sp.dumps.pop(what), names))
    tables = _has_tables(chosen) if rulesets else [False] * len(chosen)
    for sp, has in zip(chosen, tables, strict=True):
        if sp.is_root or has or any(r.kind == "bridge" for r in sp.raw_links):
            _host_sysctls(sp)
    if rulesets:
        _rulesets([sp for sp, has in zip(chosen, tables, strict=True) if has])


def _has_tables(chosen: list[_Space]) -> list[bool]:
    """Whether each namespace has netfilter tables (nf_tables, incl. iptables-nft, or legacy)."""
    conns = [sp.conn for sp in chosen if sp.conn is not None]
    out = []
    for sp, res in zip(chosen, nl.dump_many(conns, "nft_tables"), strict=True):
        nft = not isinstance(res, OSError) and nl.count_messages(res) > 0
        out.append(nft or sp.legacy_tables)
    return out


def _rulesets(chosen: list[_Space]) -> None:
    """Read the rulesets of namespaces that have tables."""
    for sp in chosen:
        path = next(iter(sp.candidates()), None)
        if path is None:
            continue
        from cntrace.sources.rulesets import read_ruleset  # noqa: PLC0415  (subprocess: lazy)

        try:
            sp.ruleset = read_ruleset(path)
        except EnvironmentProblem as exc:
            sp.ruleset = Ruleset(errors=(str(exc),))
        except OSError as exc:
            sp.ruleset = Ruleset(errors=(f"{type(exc).__name__}: {exc}",))


def _own_sockets(chosen: list[_Space], procs: ProcTable) -> None:
    owners = _socket_owners(_all_pids_in({sp.inode for sp in chosen}, procs))
    for sp in chosen:
        sp.owners = owners


def _netns(sp: _Space, root: int | None, peers: dict[tuple[int, int], int]) -> Netns:
    names = {r.ifindex: r.name for r in sp.raw_links}
    dumps = sp.dumps
    socks: list[Socket] = []
    owners = sp.owners
    for what in nl.DIAG_DUMPS:
        if what in dumps:
            for s in nl.parse_sockets(dumps[what], what[:3]):
                own = owners.get(s.inode or -1)
                socks.append(replace(s, pid=own[0], process=own[1]) if own else s)
    return Netns(
        inode=sp.inode,
        name=sp.name,
        paths=tuple(sp.paths + [f"/proc/{p}/ns/net" for p in sp.pids[:1]]),
        is_root=sp.inode == root,
        links=_links(sp, peers),
        routes=(
            tuple(r for r in nl.parse_routes(dumps["routes"], names) if not _derived(r))
            if "routes" in dumps
            else ()
        ),
        rules=_unless_default(tuple(nl.parse_rules(dumps["rules"]))) if "rules" in dumps else (),
        neighbors=(
            tuple(nl.parse_neighbors(dumps["neighbors"], names)) if "neighbors" in dumps else ()
        ),
        fdb=tuple(nl.parse_fdb(dumps["fdb"], names)) if "fdb" in dumps else (),
        sockets=tuple(socks),
        sysctls=sp.sysctls,
        ruleset=sp.ruleset,
        pids=tuple(sp.pids[:PIDS_KEPT]),
        error=sp.error,
    )


def _finish(snap: Snapshot, *, detail: bool) -> Snapshot:
    """Settle what needs the whole picture: host namespaces, inferred modes, resolvers.

    A named namespace that turns out to be a host (it holds a bridge with ports, or another
    runtime's containers are plugged into it, like Docker's engine namespace) is not listed as a
    container: `topo` shows it as a host.
    """
    topo = Topology(snap)
    hosts = {
        c.host_netns
        for c in snap.containers
        if c.runtime not in ("netns", "pid") and c.host_netns not in (None, c.netns)
    }
    for ns in snap.netns:
        if any(topo.ports(ns, br) for br in topo.bridges(ns)):
            hosts.add(ns.inode)
    out = []
    for c in snap.containers:
        if c.runtime == "netns" and c.netns in hosts:
            continue
        changes: dict[str, object] = {}
        if c.network_mode == "unknown":
            changes["network_mode"] = topo.infer_mode(c)
        if c.host_netns is None and c.netns is not None:
            changes["host_netns"] = topo.host_netns(c)
        if detail and c.resolver is None and c.pid is not None and c.state != "gone":
            resolver = _resolver(c.pid)
            if resolver is not None:
                changes["resolver"] = resolver
        out.append(replace(c, **changes) if changes else c)  # type: ignore[arg-type]
    return replace(snap, containers=tuple(out))


def read_netns(path: str) -> Netns:
    """One namespace in full, by path (a convenience for tools and tests)."""
    _check_privilege()
    try:
        inode = nsenter.inode_of(nsenter.netns_path(path))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise BadInput(f"no network namespace at {path}") from exc
        raise
    sp = _Space(inode, paths=[nsenter.netns_path(path)])
    with contextlib.ExitStack() as stack:
        _open(sp, full=True, sockets=True, rulesets=True)
        if sp.conn is not None:
            stack.callback(sp.conn.close)
            sp.raw_links = nl.parse_links(nl.dump(sp.conn, "links"))
            sp.addresses = nl.parse_addresses(nl.dump(sp.conn, "addresses"))
            _detail([sp], sockets=True, rulesets=True, warnings=[])
    return _netns(sp, None, {})


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
