"""The ARP/NDP collector: neighbour frames on the watched interfaces, and the entries at the end.

A probe to an on-link address nobody holds is never "seen": it waits in the sending namespace's
neighbour queue while the kernel solicits the address, and is freed (NEIGH_FAILED) only when the
kernel gives up, some seconds later. What a person needs to see is the solicitation leaving,
the bridge flooding it to its ports, and nobody answering. So this collector watches the path's
taps and, from ``plan.l2_targets``, every other port of the bridges on the way, through one
AF_PACKET socket per namespace (receiving on all its interfaces, frames of others dropped), with
a classic BPF filter on ARP and ICMPv6 neighbour solicitations and advertisements, and reports
those about the addresses that matter (``plan.neighbours``, the probe's own). Both back ends
run it; it needs only CAP_NET_RAW.

A solicitation the watched namespace sends carries how long that kernel keeps trying
(``retry_ns``: mcast_solicit + app_solicit tries, retrans_time_ms apart, read from the
interface's neigh sysctls in its namespace), which the engine's wait rule uses
(collector.neigh_deadline). After the trace, the entries of addresses still unanswered are read
from their namespace (RTM_GETNEIGH): when the kernel retries longer than the trace may wait, the
entry's state (incomplete) is the evidence.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import struct
import threading
import time
from dataclasses import dataclass

from cntrace.sources import nsenter
from cntrace.trace.capture import (
    _JEQ_K,
    _LD_B_ABS,
    _LD_H_ABS,
    _RET_K,
    ETH_P_ALL,
    PACKET_OUTGOING,
    PACKET_STATISTICS,
    SO_ATTACH_FILTER,
    SO_TIMESTAMPNS,
    SOL_PACKET,
    _Asm,
)
from cntrace.trace.capture import can_run as packet_sockets_ok
from cntrace.trace.collector import Seen, Trace
from cntrace.trace.events import Direction, NeighEntry, NeighFrame, TraceTarget, Unwatched

ETH_P_ARP, ETH_P_IPV6 = 0x0806, 0x86DD
ICMPV6_NS, ICMPV6_NA = 135, 136
SNAPLEN = 128
UNSPECIFIED = ("0.0.0.0", "::")


def neigh_filter() -> bytes:
    """Classic BPF on Ethernet frames: ARP, or ICMPv6 (no extension headers) of type 135/136."""
    a = _Asm()
    a.op(_LD_H_ABS, 12)
    a.jump(_JEQ_K, ETH_P_ARP, "accept", 0)
    a.jump(_JEQ_K, ETH_P_IPV6, 0, "reject")
    a.op(_LD_B_ABS, 14 + 6)  # next header
    a.jump(_JEQ_K, 58, 0, "reject")
    a.op(_LD_B_ABS, 14 + 40)  # ICMPv6 type
    a.jump(_JEQ_K, ICMPV6_NS, "accept", 0)
    a.jump(_JEQ_K, ICMPV6_NA, "accept", "reject")
    a.label("accept")
    a.op(_RET_K, SNAPLEN)
    a.label("reject")
    a.op(_RET_K, 0)
    return a.assemble()


@dataclass(frozen=True, slots=True)
class Parsed:
    """One neighbour frame's meaning (see NeighFrame)."""

    op: str
    family: int
    sender_ip: str
    sender_mac: str
    target_ip: str
    dst_mac: str


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def parse_frame(frame: bytes) -> Parsed | None:
    """An Ethernet frame holding ARP or an NDP solicitation/advertisement, else None."""
    if len(frame) < 14:
        return None
    dst_mac = _mac(frame[:6])
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == ETH_P_ARP and len(frame) >= 42:
        _htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
        if ptype != 0x0800 or hlen != 6 or plen != 4 or op not in (1, 2):
            return None
        sha, spa = frame[22:28], frame[28:32]
        tpa = frame[38:42]
        return Parsed(
            "request" if op == 1 else "reply",
            4,
            socket.inet_ntop(socket.AF_INET, spa),
            _mac(sha),
            socket.inet_ntop(socket.AF_INET, tpa),
            dst_mac,
        )
    if ethertype == ETH_P_IPV6 and len(frame) >= 14 + 40 + 24 and frame[20] == 58:
        icmp = 14 + 40
        kind = frame[icmp]
        if kind not in (ICMPV6_NS, ICMPV6_NA):
            return None
        src = socket.inet_ntop(socket.AF_INET6, frame[22:38])
        dst = socket.inet_ntop(socket.AF_INET6, frame[38:54])
        target = socket.inet_ntop(socket.AF_INET6, frame[icmp + 8 : icmp + 24])
        lladdr = _ndp_lladdr(frame[icmp + 24 :], 1 if kind == ICMPV6_NS else 2)
        if kind == ICMPV6_NS:
            return Parsed("request", 6, src, lladdr or _mac(frame[6:12]), target, dst_mac)
        return Parsed("reply", 6, target, lladdr or _mac(frame[6:12]), dst, dst_mac)
    return None


def _ndp_lladdr(options: bytes, want: int) -> str | None:
    """The link-layer address option (1: source, 2: target) of an NDP message."""
    off = 0
    while off + 8 <= len(options):
        kind, length = options[off], options[off + 1] * 8
        if length == 0:
            return None
        if kind == want and length >= 8:
            return _mac(options[off + 2 : off + 8])
        off += length
    return None


def retry_ns(netns_path: str, ifname: str, family: int) -> int:
    """How long the kernel of that namespace solicits an unresolved address on ``ifname``
    before it gives up (the entry fails and its queued packets are freed: NEIGH_FAILED)."""
    base = f"/proc/sys/net/ipv{4 if family == 4 else 6}/neigh/{ifname}"

    def read() -> tuple[int, int, int]:
        def one(name: str, default: int) -> int:
            try:
                with open(f"{base}/{name}") as fh:
                    return int(fh.read().strip())
            except (OSError, ValueError):
                return default

        return one("mcast_solicit", 3), one("app_solicit", 0), one("retrans_time_ms", 1000)

    try:
        mcast, app, retrans_ms = nsenter.run_in(netns_path, read)
    except OSError:
        mcast, app, retrans_ms = 3, 0, 1000
    return max(1, mcast + app) * max(10, retrans_ms) * 1_000_000


def read_entries(netns_path: str, wanted: set[tuple[str, str]]) -> list[NeighEntry]:
    """The neighbour entries (ifname, ip) of one namespace; absent ones as state "none"."""
    from cntrace.sources.netlink import decode, decode_state  # noqa: PLC0415
    from cntrace.sources.netlink.dumps import Conn, dump  # noqa: PLC0415

    inode = nsenter.inode_of(netns_path)
    with Conn.open(netns_path) as conn:
        links = decode.parse_links(dump(conn, "links"), conf=False)
        names = {link.ifindex: link.name for link in links}
        found = decode_state.parse_neighbors(dump(conn, "neighbors"), names)
    by_key = {(n.ifname, n.ip): n for n in found}
    out = []
    for ifname, ip in sorted(wanted):
        n = by_key.get((ifname, ip))
        out.append(NeighEntry(inode, ifname, ip, n.state if n else "none", n.mac if n else None))
    return out


@dataclass
class _Tap:
    """One packet socket for a whole namespace, seeing every interface (no bind to one): a
    bridge with 500 watched ports would otherwise need 500 sockets, and closing each waits for
    an RCU grace period (seconds at exit). Frames of interfaces not watched are dropped here."""

    sock: socket.socket
    prog: ctypes.Array[ctypes.c_char]
    targets: dict[str, TraceTarget]  # ifname -> the watched interface
    macs: dict[str, str]  # ifname -> its own address (a request from it is a solicitation)

    def mac(self, ifname: str) -> str:
        if ifname not in self.macs:
            self.macs[ifname] = own_mac(self.sock, ifname)
        return self.macs[ifname]


SIOCGIFHWADDR = 0x8927


def own_mac(sock: socket.socket, ifname: str) -> str:
    """The interface's hardware address, asked of the kernel in the socket's namespace."""
    import fcntl  # noqa: PLC0415  (only when a solicitation is seen)

    try:
        req = struct.pack("16s16x", ifname.encode()[:15])
        out = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, req)
    except OSError:
        return ""
    return _mac(out[18:24])


def namespace_socket(path: str, code: bytes) -> tuple[socket.socket, ctypes.Array[ctypes.c_char]]:
    """A non-blocking packet socket receiving on every interface of the namespace at ``path``,
    with the classic BPF filter ``code`` and kernel timestamps."""
    sock = nsenter.socket_in(
        path, socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.htons(ETH_P_ALL)
    )
    try:
        prog = ctypes.create_string_buffer(code, len(code))
        fprog = struct.pack("HxxxxxxQ", len(code) // 8, ctypes.addressof(prog))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        sock.close()
        raise
    return sock, prog


class NeighCollector:
    """ARP/NDP frames on every watched interface, for one trace at a time."""

    name = "neigh"

    def __init__(self) -> None:
        self._taps: list[_Tap] = []
        self._interest: frozenset[str] = frozenset()
        self._pending: list[NeighFrame] = []
        self._sent: dict[tuple[str, str], TraceTarget] = {}  # (ifname, ip) asked from a tap
        self._retry: dict[tuple[str, str, int], int] = {}
        self._rt_to_mono = 0
        self._stopped = False
        self._lost = 0

    def can_run(self) -> tuple[bool, str]:
        ok, why = packet_sockets_ok()
        if not ok:
            return ok, why
        return True, "an AF_PACKET socket per watched namespace, filtered on ARP and NDP"

    def attach(self, trace: Trace) -> list[Unwatched]:
        self.stop(trace)
        self._stopped = False
        self._pending, self._sent, self._lost = [], {}, 0
        plan, probe = trace.plan, trace.probe
        self._interest = frozenset(
            a for a in (*plan.neighbours, probe.src, probe.dst) if a and a not in UNSPECIFIED
        )
        self._rt_to_mono = time.monotonic_ns() - time.time_ns()
        code = neigh_filter()
        out: list[Unwatched] = []
        by_ns: dict[int, tuple[str, dict[str, TraceTarget]]] = {}
        for t in (*plan.targets, *plan.l2_targets):
            by_ns.setdefault(t.netns_inode, (t.netns_path, {}))[1].setdefault(t.ifname, t)
        for path, targets in by_ns.values():
            try:
                sock, prog = namespace_socket(path, code)
            except OSError as exc:
                # no target: a hole in L2 evidence only, the hops themselves are still watched
                for t in targets.values():
                    out.append(Unwatched(f"arp/ndp {t.name}", f"no packet socket: {exc.strerror}"))
                continue
            self._taps.append(_Tap(sock, prog, targets, {}))
        return out

    def start(self, trace: Trace) -> list[int]:
        return [tap.sock.fileno() for tap in self._taps]

    def _read(self, t0_ns: int) -> None:
        for tap in self._taps:
            while True:
                try:
                    data, anc, _flags, addr = tap.sock.recvmsg(SNAPLEN, 64)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                t_ns = time.monotonic_ns()
                for level, kind, payload in anc:
                    if level == socket.SOL_SOCKET and kind == 35 and len(payload) >= 16:
                        sec, nsec = struct.unpack("qq", payload[:16])
                        t_ns = sec * 1_000_000_000 + nsec + self._rt_to_mono
                target = tap.targets.get(addr[0])
                if target is None:
                    continue  # an interface of the namespace nobody asked to watch
                p = parse_frame(data)
                if p is None or p.sender_ip in UNSPECIFIED:
                    continue
                asked = p.target_ip if p.op == "request" else p.sender_ip
                if asked not in self._interest:
                    continue
                direction: Direction = "egress" if addr[2] == PACKET_OUTGOING else "ingress"
                retry = 0
                if (
                    p.op == "request"
                    and direction == "egress"
                    and p.sender_mac == tap.mac(target.ifname)
                ):
                    retry = self._retry_for(target, p.family)
                    self._sent.setdefault((target.ifname, asked), target)
                self._pending.append(
                    NeighFrame(
                        target,
                        direction,
                        t_ns - t0_ns,
                        p.op,
                        p.family,
                        p.sender_ip,
                        p.sender_mac,
                        p.target_ip,
                        p.dst_mac,
                        retry,
                    )
                )

    def _retry_for(self, t: TraceTarget, family: int) -> int:
        key = (t.netns_path, t.ifname, family)
        if key not in self._retry:
            self._retry[key] = retry_ns(t.netns_path, t.ifname, family)
        return self._retry[key]

    def drain(self, trace: Trace) -> Seen:
        if not self._stopped:
            self._read(trace.t0_ns)
        frames, self._pending = tuple(self._pending), []
        entries: tuple[NeighEntry, ...] = ()
        if self._stopped and self._sent:
            entries = self._entries(frames)
            self._sent = {}
        return Seen(neigh=frames, neigh_entries=entries)

    def _entries(self, frames: tuple[NeighFrame, ...]) -> tuple[NeighEntry, ...]:
        """The entries of addresses this trace saw solicited from a watched namespace."""
        by_ns: dict[str, set[tuple[str, str]]] = {}
        for (ifname, ip), t in self._sent.items():
            by_ns.setdefault(t.netns_path, set()).add((ifname, ip))
        out: list[NeighEntry] = []
        for path, wanted in by_ns.items():
            with contextlib.suppress(OSError):
                out += read_entries(path, wanted)
        return tuple(out)

    def stop(self, trace: Trace | None = None) -> int:
        """Keep what is waiting (drained after), count the kernel's drops, close the sockets."""
        if trace is not None and self._taps:
            self._read(trace.t0_ns)
        lost = 0
        socks = []
        for tap in self._taps:
            with contextlib.suppress(OSError):
                stats = tap.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
                lost += struct.unpack("II", stats)[1]
            socks.append(tap.sock)
        self._taps = []
        if socks:  # closing a packet socket waits for an RCU grace period: not on this thread

            def _close() -> None:
                for s in socks:
                    s.close()

            threading.Thread(target=_close, name="cntrace-neigh-close", daemon=True).start()
        self._stopped = True
        return lost

    def close(self) -> None:
        self.stop()
