"""A whole host's dumps made by child processes while this one decodes them.

Listing every namespace (`ls`, the console) or reading every namespace in full (`snapshot
--save`) is two kinds of work on a 1,000-container host: the kernel filling dumps (entering each
namespace, making its sockets, rtnl and sock_diag work) and Python decoding them. Done in one
thread they add up; threads do not help (the GIL gives a reader thread one slice per switch
interval, and a namespace takes several). So forked children enter the namespaces in turn, dump
what the plan asks and write the datagrams undecoded to a pipe each, and the parent decodes each
namespace as it arrives: the kernel's work and the decode overlap on two cores. A listing takes
one child (its dumps and the parent's decode are of a size); a full read takes two, since its
dumps cost twice its decode (docs/performance.md, round 7).

The children only make syscalls and pack bytes; they are forked before the runtime thread starts
and leave with os._exit. The parent holds no socket in the namespaces read this way
(``Space.listed``): what reads them later (a lazy fill, a netnsid question, /proc/sys of a host)
enters them again (namespaces.open_many), as it does for a namespace first met then. A read a
child could not make (a namespace gone, no privilege) comes back as that namespace's error, as
the in-process reader gives it; so does each dump that failed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cntrace.errors import NeedsPrivilege
from cntrace.sources import nsenter
from cntrace.sources.namespaces import DETAIL_DUMPS, Space, legacy_tables, netconf, parse_detail
from cntrace.sources.netlink import decode, dumps
from cntrace.sources.netlink import proto as nlp

FORK_MIN = 64  # fewer namespaces than this: forking costs more than it overlaps
HEADER = struct.Struct("=IBI")  # space index, status (OK, GONE, DENIED), frame length
ENTRY = struct.Struct("=BI")  # what (WHATS), chunk count (FAILED: an error text follows)
LENGTH = struct.Struct("=I")
OK, GONE, DENIED = 0, 1, 2
FAILED = 0xFFFFFFFF
WHATS = (
    "links",
    "addresses",
    *DETAIL_DUMPS,
    "fdb",
    *dumps.DIAG_DUMPS,
    "nft_tables",
    "legacy",  # a flag, not a dump: the chunk count says whether iptables-legacy has tables
)
CODE = {w: i for i, w in enumerate(WHATS)}
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20  # fs.pipe-max-size's default: a child rarely waits for the parent
BRIDGED = (b"bridge\0", b"vxlan\0")  # IFLA_INFO_KIND payloads whose namespace has an FDB


@dataclass(frozen=True)
class Plan:
    """What each namespace is read for: links and addresses (a listing), or everything a full
    read dumps (namespaces.read_links + read_detail), with sockets and rulesets as asked."""

    loopback: bool = True
    full: bool = False
    sockets: bool = True
    rulesets: bool = True

    @property
    def children(self) -> int:
        return 2 if self.full else 1


def list_forked(spaces: list[Space], *, loopback: bool) -> Iterator[Space]:
    """``spaces``' links and addresses, dumped in a child and decoded here."""
    return read_forked(spaces, Plan(loopback=loopback))


def read_forked(spaces: list[Space], plan: Plan) -> Iterator[Space]:
    """Dump ``spaces`` in children as ``plan`` says and decode them here, yielding each space
    as it is filled (the caller may interleave other work). NeedsPrivilege as open_many."""
    count = max(1, min(plan.children, len(spaces)))
    pids: list[int] = []
    with contextlib.ExitStack() as stack:
        stack.callback(_reap, pids)  # runs last: every read end is closed by then
        sources: list[BinaryIO] = []
        for k in range(count):
            r, w = os.pipe2(os.O_CLOEXEC)
            with contextlib.suppress(OSError):  # a smaller pipe only makes a child wait more
                fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
            pid = os.fork()
            if pid == 0:  # pragma: no cover  (a child: measured by its output)
                _run_child(r, w, list(enumerate(spaces))[k::count], plan)
            pids.append(pid)
            os.close(w)
            sources.append(stack.enter_context(os.fdopen(r, "rb", buffering=PIPE_SIZE)))
        for i in range(len(spaces)):
            sp = _arrive(sources[i % count], i, spaces, plan)
            if sp is not None:
                yield sp


def _reap(pids: list[int]) -> None:
    for pid in pids:
        os.waitpid(pid, 0)


def _run_child(r: int, w: int, mine: list[tuple[int, Space]], plan: Plan) -> None:
    # pragma: no cover  (in the child)
    status = 1
    try:
        os.close(r)
        with os.fdopen(w, "wb", buffering=PIPE_SIZE) as out:
            _child(mine, plan, out)
        status = 0
    finally:
        os._exit(status)


def _arrive(src: BinaryIO, i: int, spaces: list[Space], plan: Plan) -> Space | None:
    """Read the next frame (space ``i``'s) and fill that space; None when it could not be read."""
    head = src.read(HEADER.size)
    if len(head) < HEADER.size:
        raise OSError(errno.EPIPE, "the namespace lister stopped early")
    index, status, size = HEADER.unpack(head)
    if index != i:
        raise OSError(errno.EPROTO, f"the namespace lister sent namespace {index}, not {i}")
    sp: Space = spaces[index]
    if status == DENIED:
        raise NeedsPrivilege("entering network namespaces", "CAP_SYS_ADMIN")
    body = src.read(size)
    if status == GONE:
        sp.error = body.decode(errors="replace")
        return None
    got: dict[str, list[bytes]] = {}
    at = 0
    while at < len(body):
        code, n = ENTRY.unpack_from(body, at)
        at += ENTRY.size
        what = WHATS[code]
        if n == FAILED:
            (length,) = LENGTH.unpack_from(body, at)
            at += LENGTH.size
            why = body[at : at + length].decode(errors="replace")
            at += length
            if what in DETAIL_DUMPS:  # as read_detail: the first failed dump is the error
                sp.error = sp.error or f"{what}: {why}"
            continue
        if what == "legacy":
            sp.legacy_tables = bool(n)
            continue
        chunks = []
        for _ in range(n):
            (length,) = LENGTH.unpack_from(body, at)
            at += LENGTH.size
            chunks.append(body[at : at + length])
            at += length
        got[what] = chunks
    _fill(sp, got, plan)
    return sp


def _fill(sp: Space, got: dict[str, list[bytes]], plan: Plan) -> None:
    """Decode a namespace's dumps into ``sp`` as the in-process reader does."""
    sp.listed = True
    links = got.pop("links")
    sp.raw_links = decode.parse_links(links, conf=False, loopback=plan.loopback)
    sp.dumps["links"] = links
    addresses = got.pop("addresses", None)
    if addresses is not None:
        sp.addresses = decode.parse_addresses(addresses, loopback=plan.loopback)
    if not plan.full:
        return
    if not any(lk.kind in ("bridge", "vxlan") for lk in sp.raw_links):
        got.pop("fdb", None)  # dumped on a byte match (a name may hold "bridge"): not read
    tables = got.pop("nft_tables", None)
    if tables is not None:
        sp.nft_tables = decode.parse_nft_tables(tables)
    sp.dumps.update(got)
    sp.full = True
    netconf(sp)
    sp.parsed = parse_detail(sp)


def _child(mine: list[tuple[int, Space]], plan: Plan, out: BinaryIO) -> None:
    # pragma: no cover  (in the child)
    """Enter each namespace in turn and write its dumps undecoded (or why it could not be
    read). Decoding here and pickling the result back was tried: slower than the parent's
    decode, the pickles cost both sides more than the decode they moved."""
    for index, space in mine:
        got, why = _dump(space, plan)
        if got is None:
            if why == "denied":
                out.write(HEADER.pack(index, DENIED, 0))
                return
            text = why.encode()
            out.write(HEADER.pack(index, GONE, len(text)) + text)
            continue
        parts: list[bytes] = []
        for what, value in got:
            code = CODE[what]
            if isinstance(value, OSError):
                text = str(value).encode()
                parts += (ENTRY.pack(code, FAILED), LENGTH.pack(len(text)), text)
            elif isinstance(value, bool):
                parts.append(ENTRY.pack(code, int(value)))
            else:
                parts.append(ENTRY.pack(code, len(value)))
                for c in value:
                    parts += (LENGTH.pack(len(c)), c)
        body = b"".join(parts)
        out.write(HEADER.pack(index, OK, len(body)))  # one frame: one read for the parent
        out.write(body)
        out.flush()
    out.flush()


Got = list[tuple[str, list[bytes] | OSError | bool]]


def _dump(space: Space, plan: Plan) -> tuple[Got | None, str]:  # pragma: no cover  (child)
    """The namespace's dumps, or None and why (``denied``: no privilege)."""
    why = "no path to it"
    for path in space.candidates():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            continue
        try:
            nsenter.setns(fd)
        except OSError as exc:
            if exc.errno == errno.EPERM:
                return None, "denied"
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            continue
        finally:
            os.close(fd)
        try:
            return _dumps_here(plan), ""
        except OSError as exc:
            return None, f"links: {exc}"
    return None, f"vanished during discovery ({why})"


def _dumps_here(plan: Plan) -> Got:  # pragma: no cover  (in the child)
    """Every dump of the plan in the namespace this process is in; a failed link dump (or
    route socket) fails the namespace, any other failed dump is that dump's error."""
    got: Got = []
    with _socket(nlp.NETLINK_ROUTE) as sock:
        conn = dumps.Conn(sock)
        links = dumps.dump(conn, "links")
        got.append(("links", links))
        wanted = ["addresses"]
        if plan.full:
            wanted += DETAIL_DUMPS
            if any(kind in c for c in links for kind in BRIDGED):
                wanted.append("fdb")
        for what in wanted:
            got.append((what, _one(conn, what)))
    if plan.full and plan.sockets:
        _on_socket(got, nlp.NETLINK_SOCK_DIAG, dumps.DIAG_DUMPS)
    if plan.full and plan.rulesets:
        _on_socket(got, nlp.NETLINK_NETFILTER, ("nft_tables",))
        got.append(("legacy", legacy_tables()))
    return got


def _on_socket(got: Got, proto: int, whats: tuple[str, ...]) -> None:  # pragma: no cover
    try:
        sock = _socket(proto)
    except OSError as exc:
        got.extend((what, exc) for what in whats)
        return
    with sock:
        conn = dumps.Conn(sock, diag=sock, nf=sock)
        got.extend((what, _one(conn, what)) for what in whats)


def _one(conn: dumps.Conn, what: str) -> list[bytes] | OSError:  # pragma: no cover  (child)
    try:
        return dumps.dump(conn, what)
    except OSError as exc:
        return exc


def _socket(proto: int) -> socket.socket:  # pragma: no cover  (in the child)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, proto)
    try:
        sock.bind((0, 0))
    except OSError:
        sock.close()
        raise
    return sock
