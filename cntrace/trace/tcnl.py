"""Just enough rtnetlink for tc: clsact qdiscs and bpf filters, inside any namespace.

One NETLINK_ROUTE socket per namespace, opened there with nsenter.socket_in, carries every
request: no process per namespace, no library object per call. Adding the clsact qdisc with
NLM_F_EXCL tells, without a race, whether it was already there (then it is not ours to remove).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from cntrace.sources import nsenter
from cntrace.sources.netlink import NetlinkError, attrs, c_string
from cntrace.sources.netlink import attr as _attr

NETLINK_ROUTE = 0

RTM_GETLINK = 18
RTM_NEWQDISC = 36
RTM_DELQDISC = 37
RTM_GETQDISC = 38
RTM_NEWTFILTER = 44
RTM_DELTFILTER = 45
RTM_GETTFILTER = 46

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

NLMSG_ERROR = 2
NLMSG_DONE = 3

TCA_KIND = 1
TCA_OPTIONS = 2
TCA_BPF_FD = 6
TCA_BPF_NAME = 7
TCA_BPF_FLAGS = 8
TCA_BPF_ID = 11
TCA_BPF_FLAG_ACT_DIRECT = 1

IFLA_IFNAME = 3
IFLA_LINK_NETNSID = 37

TC_H_CLSACT = 0xFFFFFFF1
CLSACT_HANDLE = 0xFFFF0000
PARENT_INGRESS = 0xFFFFFFF2
PARENT_EGRESS = 0xFFFFFFF3
ETH_P_ALL = 0x0003

_HDR = struct.Struct("<IHHII")
_TCMSG = struct.Struct("<BxxxiIII")
_IFINFO = struct.Struct("<BxHiII")


@dataclass(frozen=True, slots=True)
class LinkInfo:
    ifindex: int
    name: str
    type: int  # ARPHRD_*: 1 Ethernet, 772 loopback, 65534 none (L3 devices)
    up: bool


@dataclass(frozen=True, slots=True)
class FilterInfo:
    """A tc filter as dumped: enough to recognise cntrace's own and to delete it."""

    ifindex: int
    parent: int
    prio: int
    protocol: int
    handle: int
    kind: str
    name: str | None = None  # TCA_BPF_NAME
    prog_id: int | None = None


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    return iter(attrs(data, 0, len(data)).items())


class RouteSocket:
    """A NETLINK_ROUTE socket living in one network namespace."""

    def __init__(self, netns_path: str | None = None) -> None:
        if netns_path:
            self.sock = nsenter.socket_in(
                netns_path, socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
            )
        else:
            self.sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
            )
        self.sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RouteSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def _request(self, mtype: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one request; returns (type, payload) of each answer, raising on NLMSG_ERROR."""
        self._seq += 1
        seq = self._seq
        msg = _HDR.pack(_HDR.size + len(body), mtype, flags | NLM_F_REQUEST, seq, 0) + body
        self.sock.send(msg)
        out: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(1 << 16)
            pos = 0
            while pos + _HDR.size <= len(data):
                length, rtype, _rflags, rseq, _pid = _HDR.unpack_from(data, pos)
                payload = data[pos + _HDR.size : pos + length]
                pos += (length + 3) & ~3
                if rseq != seq:
                    continue
                if rtype == NLMSG_DONE:
                    return out
                if rtype == NLMSG_ERROR:
                    (code,) = struct.unpack_from("<i", payload, 0)
                    if code == 0:
                        return out  # the ACK
                    raise NetlinkError(-code, os.strerror(-code))
                out.append((rtype, payload))
                if not flags & NLM_F_DUMP and not flags & NLM_F_ACK:
                    return out

    # ------------------------------------------------------------------ links

    def links(self) -> list[LinkInfo]:
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        found = []
        for _t, payload in self._request(RTM_GETLINK, NLM_F_DUMP, body):
            _fam, ltype, index, flags, _change = _IFINFO.unpack_from(payload, 0)
            name = ""
            for kind, val in _attrs(payload[_IFINFO.size :]):
                if kind == IFLA_IFNAME:
                    name = c_string(val)
            found.append(LinkInfo(index, name, ltype, bool(flags & 1)))
        return found

    # ------------------------------------------------------------------ qdiscs

    def qdiscs(self, ifindex: int) -> list[tuple[int, int, str]]:
        """(handle, parent, kind) of each qdisc on the link."""
        body = _TCMSG.pack(socket.AF_UNSPEC, ifindex, 0, 0, 0)
        out = []
        for _t, payload in self._request(RTM_GETQDISC, NLM_F_DUMP, body):
            _fam, idx, handle, parent, _info = _TCMSG.unpack_from(payload, 0)
            if idx != ifindex:
                continue
            kind = ""
            for k, val in _attrs(payload[_TCMSG.size :]):
                if k == TCA_KIND:
                    kind = c_string(val)
            out.append((handle, parent, kind))
        return out

    def add_clsact(self, ifindex: int) -> bool:
        """Add a clsact qdisc; False when one (or an ingress qdisc) was already there."""
        body = _TCMSG.pack(socket.AF_UNSPEC, ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0)
        body += _attr(TCA_KIND, b"clsact\0")
        try:
            self._request(RTM_NEWQDISC, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)
        except NetlinkError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        return True

    def del_clsact(self, ifindex: int) -> None:
        body = _TCMSG.pack(socket.AF_UNSPEC, ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0)
        body += _attr(TCA_KIND, b"clsact\0")
        self._request(RTM_DELQDISC, NLM_F_ACK, body)

    # ------------------------------------------------------------------ filters

    def add_bpf_filter(
        self, ifindex: int, parent: int, prio: int, handle: int, prog_fd: int, name: str
    ) -> None:
        info = (prio << 16) | socket.htons(ETH_P_ALL)
        opts = (
            _attr(TCA_BPF_FD, struct.pack("<I", prog_fd))
            + _attr(TCA_BPF_NAME, name.encode() + b"\0")
            + _attr(TCA_BPF_FLAGS, struct.pack("<I", TCA_BPF_FLAG_ACT_DIRECT))
        )
        body = _TCMSG.pack(socket.AF_UNSPEC, ifindex, handle, parent, info)
        body += _attr(TCA_KIND, b"bpf\0") + _attr(TCA_OPTIONS | 0x8000, opts)
        self._request(RTM_NEWTFILTER, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def del_filter(self, f: FilterInfo) -> None:
        info = (f.prio << 16) | f.protocol
        body = _TCMSG.pack(socket.AF_UNSPEC, f.ifindex, f.handle, f.parent, info)
        body += _attr(TCA_KIND, f.kind.encode() + b"\0")
        self._request(RTM_DELTFILTER, NLM_F_ACK, body)

    def filters(self, ifindex: int, parent: int) -> list[FilterInfo]:
        body = _TCMSG.pack(socket.AF_UNSPEC, ifindex, 0, parent, 0)
        try:
            answers = self._request(RTM_GETTFILTER, NLM_F_DUMP, body)
        except NetlinkError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT, errno.ENODEV, errno.EOPNOTSUPP):
                return []  # no clsact/ingress qdisc there
            raise
        out = []
        for _t, payload in answers:
            _fam, idx, handle, par, info = _TCMSG.unpack_from(payload, 0)
            if handle == 0:
                continue  # the per-priority chain header, not a filter
            kind, name, prog_id = "", None, None
            for k, val in _attrs(payload[_TCMSG.size :]):
                if k == TCA_KIND:
                    kind = c_string(val)
                elif k == TCA_OPTIONS:
                    for ok, ov in _attrs(val):
                        if ok == TCA_BPF_NAME:
                            name = c_string(ov)
                        elif ok == TCA_BPF_ID:
                            (prog_id,) = struct.unpack_from("<I", ov, 0)
            out.append(FilterInfo(idx, par, info >> 16, info & 0xFFFF, handle, kind, name, prog_id))
        return out
