"""Entering network namespaces from inside this process, without fork or exec.

Python 3.11 has no os.setns, so libc's setns(2) is called through ctypes. setns(CLONE_NEWNET)
changes only the calling thread, and a socket keeps the namespace it was created in: discovery
opens one netlink socket per namespace this way (cheap), instead of a process per namespace
(the cost that makes per-namespace tools slow). Every entry restores the thread's original
namespace, even on error.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
from collections.abc import Callable, Iterator
from typing import TypeVar

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

T = TypeVar("T")


def load_libc() -> ctypes.CDLL:
    """libc by its soname: ctypes.util.find_library runs `ldconfig -p` (a process, tens of ms
    on every command), and glibc's soname has been libc.so.6 for decades."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # another libc (musl): ask the slow way
        from ctypes.util import find_library  # noqa: PLC0415

        return ctypes.CDLL(find_library("c"), use_errno=True)


_libc = load_libc()
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.setns.restype = ctypes.c_int


class NetnsError(OSError):
    """A namespace could not be entered (gone, or no privilege)."""


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """Move the calling thread into the namespace behind ``fd``."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise NetnsError(err, f"setns: {os.strerror(err)}")


def netns_path(name_or_path: str) -> str:
    """``web`` -> /run/netns/web; paths are returned unchanged."""
    return name_or_path if "/" in name_or_path else os.path.join(NETNS_RUN_DIR, name_or_path)


def inode_of(path: str) -> int:
    """The nsfs inode that identifies the namespace behind ``path``."""
    return os.stat(path).st_ino


@contextlib.contextmanager
def entered(path: str) -> Iterator[None]:
    """Run the body with this thread inside the namespace at ``path``, then come back."""
    try:
        target = os.open(netns_path(path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NetnsError(errno.ENOENT, f"no namespace at {path}") from exc
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        os.close(target)
        raise
    try:
        setns(target)
        try:
            yield
        finally:
            setns(home)
    finally:
        os.close(target)
        os.close(home)


def socket_in(path: str, family: int, type_: int, proto: int = 0) -> socket.socket:
    """A socket that lives in the namespace at ``path`` (it stays there after we return)."""
    with entered(path):
        return socket.socket(family, type_, proto)


def run_in(path: str, fn: Callable[..., T], *args: object) -> T:
    """Call ``fn`` inside the namespace at ``path``."""
    with entered(path):
        return fn(*args)


def named() -> dict[str, str]:
    """The `ip netns` names and their paths."""
    try:
        names = sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return {}
    return {n: os.path.join(NETNS_RUN_DIR, n) for n in names}


def command_in(path: str, argv: list[str]) -> list[str]:
    """``argv`` prefixed to run inside the namespace at ``path``.

    nsenter(1) rather than a preexec_fn that calls setns: forking with a Python callback is
    unsafe once threads exist (discovery, the tracer and the TUI all run some), and
    `ip netns exec` remounts /sys, which hides the cgroup hierarchy from daemons.
    """
    return ["nsenter", f"--net={netns_path(path)}", "--", *argv]
