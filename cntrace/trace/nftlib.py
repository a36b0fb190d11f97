"""Run nft commands inside a namespace: in-process through libnftables, else the nft program.

libnftables (the library behind ``nft``) called through ctypes from a thread that has entered
the namespace costs ~1 ms a command, where starting ``nft`` costs ~12 ms; a trace adds, lists
and deletes a table in every namespace on the path, so this is a large part of its budget.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Callable
from typing import TypeVar

from cntrace.sources import nsenter

_OUTPUT_HANDLE = 1 << 3
_lib: ctypes.CDLL | None = None
_lib_tried = False
_lock = threading.Lock()

T = TypeVar("T")


def _library() -> ctypes.CDLL | None:
    global _lib, _lib_tried
    with _lock:
        if _lib_tried:
            return _lib
        _lib_tried = True
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            return None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        _lib = lib
        return lib


def available() -> bool:
    return _library() is not None or shutil.which("nft") is not None


def run(netns_path: str, script: str, *, handles: bool = False) -> tuple[int, str, str]:
    """Run an nft script in the namespace; returns (status, output, error text)."""
    lib = _library()
    if lib is None:
        return _run_program(netns_path, script, handles)
    with nsenter.entered(netns_path):
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            return 1, "", "libnftables: cannot create a context"
        try:
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            if handles:
                lib.nft_ctx_output_set_flags(ctx, _OUTPUT_HANDLE)
            rc = lib.nft_run_cmd_from_buffer(ctx, script.encode())
            out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
        finally:
            lib.nft_ctx_free(ctx)
    return int(rc), out, err


def _run_program(netns_path: str, script: str, handles: bool) -> tuple[int, str, str]:
    res = subprocess.run(
        nsenter.command_in(netns_path, ["nft", *(["-a"] if handles else []), "-f", "-"]),
        input=script,
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    return res.returncode, res.stdout, res.stderr


def each(paths: list[str], fn: Callable[[str], T]) -> list[T]:
    """``fn`` for every namespace at once, one thread each: setns is per thread, and the kernel
    work of each call (a table's RCU grace period) then overlaps. ``fn`` must not use
    libnftables, which is not meant for concurrent use."""
    if len(paths) <= 1:
        return [fn(p) for p in paths]
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def work(i: int, p: str) -> None:
        try:
            results[i] = fn(p)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [results[i] for i in range(len(paths))]


# --------------------------------------------------------------------------- raw netlink


NETLINK_NETFILTER = 12
_NFNL_MSG_BATCH_BEGIN = 0x10
_NFNL_MSG_BATCH_END = 0x11
_NFT_MSG_DELTABLE = (10 << 8) | 2
_FAMILY_NUMBERS = {"inet": 1, "ip": 2, "arp": 3, "netdev": 5, "bridge": 7, "ip6": 10}


def _msg(mtype: int, flags: int, seq: int, family: int, res_id: int, attrs: bytes = b"") -> bytes:
    body = struct.pack("<BBH", family, 0, socket.htons(res_id)) + attrs
    return struct.pack("<IHHII", 16 + len(body), mtype, flags, seq, 0) + body


def delete_table(netns_path: str, family: str, name: str) -> tuple[bool, str]:
    """Delete an nftables table over netlink (thread-safe, no program, no library)."""
    raw = name.encode() + b"\0"
    attr = struct.pack("<HH", 4 + len(raw), 1) + raw + b"\0" * ((4 - len(raw) % 4) % 4)
    batch = (
        _msg(_NFNL_MSG_BATCH_BEGIN, 1, 1, 0, 10)
        + _msg(_NFT_MSG_DELTABLE, 1 | 4, 2, _FAMILY_NUMBERS.get(family, 1), 0, attr)
        + _msg(_NFNL_MSG_BATCH_END, 1, 3, 0, 10)
    )
    try:
        sock = nsenter.socket_in(netns_path, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError as exc:
        return False, f"cannot open netfilter netlink: {exc.strerror}"
    with sock:
        sock.bind((0, 0))
        sock.settimeout(5)
        sock.send(batch)
        while True:
            data = sock.recv(65536)
            pos = 0
            while pos + 16 <= len(data):
                length, mtype, _f, seq, _p = struct.unpack_from("<IHHII", data, pos)
                if mtype == 2 and seq == 2:  # NLMSG_ERROR for the delete: the ACK or the error
                    (code,) = struct.unpack_from("<i", data, pos + 16)
                    if code == 0 or -code == errno.ENOENT:
                        return True, ""
                    return False, os.strerror(-code)
                pos += max(16, (length + 3) & ~3)
