"""Netlink sockets per namespace and dumps of many namespaces at once.

pyroute2 builds a full object tree per message and costs milliseconds per IPRoute, which is
seconds on a host with a thousand namespaces. Here each namespace gets plain sockets (created
inside it with setns, see nsenter), every namespace is sent the same dump request before any
answer is read, and the answers are kept as raw datagrams for netlink.decode.
"""

from __future__ import annotations

import errno
import fcntl
import socket
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from cntrace.sources import nsenter
from cntrace.sources.netlink import proto as p
from cntrace.sources.netlink.proto import IFLA, NETNSA, RTM, attr, attrs, message

Chunks = list[bytes]
Answer = tuple[int, int, bytes, int, int]  # request index, message type, datagram, start, end

_DUMP = p.NLM_F_REQUEST | p.NLM_F_DUMP


def _inet_diag_req(family: int, proto: int, states: int) -> bytes:
    # struct inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid (48 bytes)
    return struct.pack("=BBBxI", family, proto, 0, states) + bytes(48)


def _diag(family: int, proto: int, state: int) -> bytes:
    return message(p.SOCK_DIAG_BY_FAMILY, _DUMP, _inet_diag_req(family, proto, 1 << state))


# The kinds of device that can be a bridge port and name another local device by IFLA_LINK
# (their lower device), besides the veth and netkit pairs that name their peer
# (sources.port_read): every kernel kind with an ndo_get_iflink and an Ethernet face.
LOWER_KINDS = (
    "vxlan", "macvlan", "macvtap", "ipvlan", "ipvtap", "vlan", "gretap", "ip6gretap",
    "erspan", "ip6erspan", "macsec", "dsa",
)  # fmt: skip


_SKIP_STATS = attr(IFLA.EXT_MASK, p.U32.pack(p.IFLA_EXT_MASK_SKIP_STATS))
_NOMASTER = attr(IFLA.MASTER, p.U32.pack(0xFFFFFFFF))


def _link_dump(*filters: bytes) -> bytes:
    return message(RTM.GETLINK, _DUMP, bytes(p.IFINFOMSG.size) + _SKIP_STATS + b"".join(filters))


def _kind(kind: str) -> bytes:
    """A kind filter: the kernel skips other links before describing them (cheap on any host);
    a kind no module registered is not filtered at all, which the no-master form shows
    cheaply: lo comes back."""
    return attr(IFLA.LINKINFO | p.NLA_F_NESTED, attr(p.IFLA_INFO.KIND, kind.encode() + b"\0"))


REQUESTS: dict[str, bytes] = {
    "links": _link_dump(),
    # The links no device is master of (IFLA_MASTER -1, "ip link show nomaster"; kernels
    # before 6.5 match nothing: sources.port_read checks for lo), and every bridge port as the
    # bridge describes it (AF_BRIDGE: name, master, IFLA_LINK, no IFLA_LINK_NETNSID). Neither
    # fills a veth's netnsid, which the kernel finds by a scan of the namespace's netnsids:
    # a full dump of a host of N veths into N namespaces is quadratic (0.26 s at 5,000).
    "links_nomaster": _link_dump(_NOMASTER),
    "bridge_ports": message(RTM.GETLINK, _DUMP, p.IFINFOMSG.pack(p.AF_BRIDGE, 0, 0, 0, 0)),
    **{f"kind:{k}": _link_dump(_kind(k)) for k in LOWER_KINDS},
    **{f"kind-nomaster:{k}": _link_dump(_NOMASTER, _kind(k)) for k in LOWER_KINDS},
    "addresses": message(RTM.GETADDR, _DUMP, bytes(p.IFADDRMSG.size)),
    "routes": message(RTM.GETROUTE, _DUMP, bytes(p.RTMSG.size)),
    "rules": message(RTM.GETRULE, _DUMP, bytes(p.RTMSG.size)),
    "neighbors": message(RTM.GETNEIGH, _DUMP, bytes(p.NDMSG.size)),
    "fdb": message(RTM.GETNEIGH, _DUMP, p.NDMSG.pack(p.AF_BRIDGE, 0, 0, 0, 0)),
    "tcp4": _diag(socket.AF_INET, socket.IPPROTO_TCP, p.TCP_LISTEN),
    "tcp6": _diag(socket.AF_INET6, socket.IPPROTO_TCP, p.TCP_LISTEN),
    "udp4": _diag(socket.AF_INET, socket.IPPROTO_UDP, p.TCP_CLOSE),
    "udp6": _diag(socket.AF_INET6, socket.IPPROTO_UDP, p.TCP_CLOSE),
    "nft_tables": message(p.NFT_MSG_GETTABLE, _DUMP, bytes(p.NFGENMSG.size)),
    "netconf4": message(RTM.GETNETCONF, _DUMP, struct.pack("=Bxxx", socket.AF_INET)),
    "netconf6": message(RTM.GETNETCONF, _DUMP, struct.pack("=Bxxx", socket.AF_INET6)),
}
DIAG_DUMPS = ("tcp4", "tcp6", "udp4", "udp6")


HIGH_FD = 1024  # FD_SETSIZE


def netlink_socket(proto: int) -> socket.socket:
    """A bound netlink socket in the calling thread's current namespace, moved to a descriptor
    at or past FD_SETSIZE when the limit allows: a big host's read holds three per namespace,
    and C code that select()s (libnftables 1.0.6's netlink reader, an nft trace) aborts the
    whole process on a descriptor of its own past 1,023 — so cntrace leaves the low ones free."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, proto)
    try:
        s.bind((0, 0))
    except OSError:
        s.close()
        raise
    try:
        high = fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, HIGH_FD)
    except OSError:
        return s  # the soft limit stops at 1,024 (cli.main raises it when it can)
    s.close()
    return socket.socket(fileno=high)


@dataclass
class Conn:
    """The netlink sockets of one namespace: route (always), sock_diag and netfilter (optional).

    Create it while the thread is inside the namespace (``Conn.here``) or with ``Conn.open``;
    a socket keeps the namespace it was created in, so the thread may leave right after.
    """

    route: socket.socket
    diag: socket.socket | None = None
    nf: socket.socket | None = None
    errors: list[str] = field(default_factory=list)

    @classmethod
    def here(cls, *, diag: bool = False, nf: bool = False) -> Conn:
        conn = cls(netlink_socket(p.NETLINK_ROUTE))
        try:
            if diag:
                conn.diag = netlink_socket(p.NETLINK_SOCK_DIAG)
            if nf:
                conn.nf = netlink_socket(p.NETLINK_NETFILTER)
        except OSError:
            conn.close()
            raise
        return conn

    @classmethod
    def open(cls, path: str, *, diag: bool = False, nf: bool = False) -> Conn:
        """Sockets inside the namespace at ``path``."""
        with nsenter.entered(path):
            return cls.here(diag=diag, nf=nf)

    def socket_for(self, dump: str) -> socket.socket | None:
        if dump in DIAG_DUMPS:
            return self.diag
        if dump == "nft_tables":
            return self.nf
        return self.route

    def close(self) -> None:
        for s in (self.route, self.diag, self.nf):
            if s is not None:
                s.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recv_dump(sock: socket.socket) -> Chunks:
    """Read datagrams until NLMSG_DONE; return them undecoded."""
    chunks: Chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return chunks
        chunks.append(data)
        # NLMSG_DONE (or the error that ends a dump) is always the last message of its datagram.
        if p.last_type(data) in (p.NLMSG_DONE, p.NLMSG_ERROR):
            return chunks


def dump_many(conns: Sequence[Conn], dump: str) -> list[Chunks | OSError]:
    """Send the same dump request on every namespace's socket, then collect every answer.

    Sending all requests first lets the kernel fill each namespace's first chunk while we are
    still sending; one namespace failing (it vanished, the subsystem is missing) gives an OSError
    in its slot instead of failing the others.
    """
    request = REQUESTS[dump]
    sent: list[socket.socket | OSError] = []
    for conn in conns:
        sock = conn.socket_for(dump)
        if sock is None:
            sent.append(OSError(errno.ENOTCONN, f"no socket for {dump}"))
            continue
        try:
            sock.send(request)
            sent.append(sock)
        except OSError as exc:
            sent.append(exc)
    out: list[Chunks | OSError] = []
    for item in sent:
        if isinstance(item, OSError):
            out.append(item)
            continue
        try:
            out.append(_recv_dump(item))
        except OSError as exc:
            out.append(exc)
    return out


def dump(conn: Conn, what: str) -> Chunks:
    """One dump on one namespace."""
    result = dump_many([conn], what)[0]
    if isinstance(result, OSError):
        raise result
    return result


def _ask(conn: Conn, rtype: int, payloads: Sequence[bytes], batch: int) -> Iterator[Answer]:
    """Send one request per payload and yield every answer message with the index of the
    payload it answers; requests go out in small batches so the answers never overflow the
    socket's receive buffer."""
    sock = conn.route
    for start in range(0, len(payloads), batch):
        part = payloads[start : start + batch]
        for i, payload in enumerate(part):
            sock.send(message(rtype, p.NLM_F_REQUEST, payload, seq=start + i + 1))
        answered: set[int] = set()
        while len(answered) < len(part):
            data = sock.recv(65536)
            for mtype, seq, off, end in p.headers(data):
                if start < seq <= start + len(part):  # not a stray answer to older traffic
                    answered.add(seq)
                    yield seq - 1, mtype, data, off, end


def get_links(conn: Conn, ifindexes: Iterable[int], batch: int = 64) -> Chunks:
    """The RTM_NEWLINK answers for these interfaces, one RTM_GETLINK each (a link gone since
    it was listed is left out)."""
    bodies = [p.IFINFOMSG.pack(0, 0, index, 0, 0) + _SKIP_STATS for index in sorted(ifindexes)]
    out: Chunks = []
    for _i, mtype, data, _off, _end in _ask(conn, RTM.GETLINK, bodies, batch):
        if mtype == RTM.NEWLINK and (not out or out[-1] is not data):
            out.append(data)
    return out


def nsids(conn: Conn, fds: Iterable[int], batch: int = 64) -> list[int | None]:
    """The netnsid this namespace uses for each namespace fd (None: none assigned); RTM_GETNSID
    with NETNSA_FD is answered synchronously."""
    fds = list(fds)
    payloads = [bytes(4) + attr(NETNSA.FD, p.U32.pack(fd)) for fd in fds]  # rtgenmsg, padded
    out: list[int | None] = [None] * len(fds)
    for i, mtype, data, off, end in _ask(conn, RTM.GETNSID, payloads, batch):
        if mtype == RTM.NEWNSID:
            nsid = p.i32(attrs(data, off + 4, end).get(NETNSA.NSID))
            out[i] = None if nsid is None or nsid < 0 else nsid
    return out
