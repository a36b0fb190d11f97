"""A whole host's links and addresses dumped by a child process while this one decodes them.

Listing every namespace (`ls`, the console, `snapshot --save`) is two kinds of work of about equal
size on a 1,000-container host: the kernel filling dumps (entering each namespace, making a
socket, ~40 link and address messages' worth of rtnl work each) and Python decoding them. Done in
one thread they add up; threads do not help (the GIL gives a reader thread one slice per switch
interval, and a namespace takes several). So a forked child enters each namespace in turn, dumps
its links and addresses and writes the datagrams undecoded to a pipe, and the parent decodes each
namespace as it arrives: the two overlap on two cores.

The child only makes syscalls and packs bytes; it is forked before the runtime thread starts and
leaves with os._exit. The parent holds no socket in the listed namespaces afterwards
(``Space.listed``): what reads them later (detail, a lazy fill, a netnsid question) enters them
again (namespaces.open_many), as it does for a namespace first met then. A read the child could
not make (a namespace gone, no privilege) comes back as that namespace's error, as read_links
gives it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Iterator
from typing import BinaryIO

from cntrace.errors import NeedsPrivilege
from cntrace.sources import nsenter
from cntrace.sources.namespaces import Space
from cntrace.sources.netlink import decode, dumps

FORK_MIN = 64  # fewer namespaces than this: forking costs more than it overlaps
HEADER = struct.Struct("=IBI")  # space index, status (OK, GONE, DENIED), frame length
LENGTH = struct.Struct("=I")
OK, GONE, DENIED = 0, 1, 2
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20  # fs.pipe-max-size's default: the child rarely waits for the parent


def list_forked(spaces: list[Space], *, loopback: bool) -> Iterator[Space]:
    """Dump ``spaces``' links and addresses in a child and decode them here, yielding each space
    as it is filled (the caller may interleave other work). NeedsPrivilege as open_many."""
    r, w = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):  # a smaller pipe only makes the child wait more often
        fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (the child: measured by its output)
        status = 1
        try:
            os.close(r)
            with os.fdopen(w, "wb", buffering=PIPE_SIZE) as out:
                _child(spaces, out)
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    try:
        with os.fdopen(r, "rb", buffering=PIPE_SIZE) as src:
            for _ in spaces:
                head = src.read(HEADER.size)
                if len(head) < HEADER.size:
                    raise OSError(errno.EPIPE, "the namespace lister stopped early")
                index, status, count = HEADER.unpack(head)
                sp = spaces[index]
                if status == DENIED:
                    raise NeedsPrivilege("entering network namespaces", "CAP_SYS_ADMIN")
                body = src.read(count)
                if status == GONE:
                    sp.error = body.decode(errors="replace")
                    continue
                links, at = _chunks(body, 0)
                addresses, _ = _chunks(body, at)
                sp.listed = True
                sp.raw_links = decode.parse_links(links, conf=False, loopback=loopback)
                sp.dumps["links"] = links
                sp.addresses = decode.parse_addresses(addresses, loopback=loopback)
                yield sp
    finally:
        os.waitpid(pid, 0)


def _chunks(body: bytes, at: int) -> tuple[list[bytes], int]:
    """One dump's datagrams from a frame, and where the next dump starts."""
    (n,) = LENGTH.unpack_from(body, at)
    at += LENGTH.size
    out = []
    for _ in range(n):
        (size,) = LENGTH.unpack_from(body, at)
        at += LENGTH.size
        out.append(body[at : at + size])
        at += size
    return out, at


def _child(spaces: list[Space], out: BinaryIO) -> None:  # pragma: no cover  (in the child)
    """Enter each namespace in turn and write its two dumps undecoded (or why it could not be
    read). Decoding here and pickling the result back was tried: slower than the parent's
    decode, the pickles cost both sides more than the decode they moved."""
    for index, space in enumerate(spaces):
        got, why = _dump(space)
        if got is None:
            if why == "denied":
                out.write(HEADER.pack(index, DENIED, 0))
                return
            text = why.encode()
            out.write(HEADER.pack(index, GONE, len(text)) + text)
            continue
        parts = []
        for chunks in got:
            parts.append(LENGTH.pack(len(chunks)))
            for c in chunks:
                parts += (LENGTH.pack(len(c)), c)
        body = b"".join(parts)
        out.write(HEADER.pack(index, OK, len(body)))  # one frame: one read for the parent
        out.write(body)
        out.flush()
    out.flush()


def _dump(space: Space) -> tuple[list[list[bytes]] | None, str]:  # pragma: no cover  (child)
    """(links, addresses) of one namespace, or None and why (``denied``: no privilege)."""
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
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.bind((0, 0))
                conn = dumps.Conn(sock)
                return [dumps.dump(conn, "links"), dumps.dump(conn, "addresses")], ""
            except OSError as exc:
                return None, f"links: {exc}"
    return None, f"vanished during discovery ({why})"
