"""Run nft commands inside a namespace: in-process through libnftables (sources.libnftables),
else the nft program; delete a table over raw netlink where no library may run (other threads).

A trace adds, lists and deletes a table in every namespace on the path: at ~1 ms a command in
process against ~12 ms for starting ``nft``, this is a large part of its budget.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import TypeVar

from cntrace.sources import nsenter
from cntrace.sources.libnftables import OUTPUT_HANDLE, library
from cntrace.sources.netlink import proto as nlp
from cntrace.sources.netlink.proto import NFTA_TABLE, attr, message

T = TypeVar("T")


def available() -> bool:
    return library() is not None or shutil.which("nft") is not None


def run(netns_path: str, script: str, *, handles: bool = False) -> tuple[int, str, str]:
    """Run an nft script in the namespace; returns (status, output, error text)."""
    lib = library()
    if lib is None:
        return _run_program(netns_path, script, handles)
    with nsenter.entered(netns_path):
        ((rc, out, err),) = lib.run(script, flags=OUTPUT_HANDLE if handles else 0)
    return rc, out, err


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


def _nfnl(mtype: int, flags: int, seq: int, family: int, res_id: int, attrs: bytes = b"") -> bytes:
    body = nlp.NFGENMSG.pack(family, 0, socket.htons(res_id)) + attrs
    return message(mtype, flags, body, seq)


def delete_table(netns_path: str, family: str, name: str) -> tuple[bool, str]:
    """Delete an nftables table over netlink (thread-safe, no program, no library)."""
    batch = (
        _nfnl(nlp.NFNL_MSG_BATCH_BEGIN, nlp.NLM_F_REQUEST, 1, 0, nlp.NFNL_SUBSYS_NFTABLES)
        + _nfnl(
            nlp.NFT_MSG_DELTABLE,
            nlp.NLM_F_REQUEST | nlp.NLM_F_ACK,
            2,
            nlp.NFPROTO.get(family, nlp.NFPROTO["inet"]),
            0,
            attr(NFTA_TABLE.NAME, name.encode() + b"\0"),
        )
        + _nfnl(nlp.NFNL_MSG_BATCH_END, nlp.NLM_F_REQUEST, 3, 0, nlp.NFNL_SUBSYS_NFTABLES)
    )
    try:
        sock = nsenter.socket_in(
            netns_path, socket.AF_NETLINK, socket.SOCK_RAW, nlp.NETLINK_NETFILTER
        )
    except OSError as exc:
        return False, f"cannot open netfilter netlink: {exc.strerror}"
    with sock:
        sock.bind((0, 0))
        sock.settimeout(5)
        sock.send(batch)
        while True:
            data = sock.recv(65536)
            for mtype, seq, off, _end in nlp.headers(data):
                if mtype == nlp.NLMSG_ERROR and seq == 2:  # for the delete: the ACK or the error
                    code = nlp.error_code(data, off)
                    if code in (0, errno.ENOENT):
                        return True, ""
                    return False, os.strerror(code)
