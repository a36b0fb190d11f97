"""Just enough rtnetlink for tc: clsact qdiscs and bpf filters, inside any namespace.

One NETLINK_ROUTE socket per namespace, opened there with nsenter.socket_in, carries every
request: no process per namespace, no library object per call. Adding the clsact qdisc with
NLM_F_EXCL tells, without a race, whether it was already there (then it is not ours to remove).
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from cntrace.sources import nsenter
from cntrace.sources.netlink import proto as p
from cntrace.sources.netlink.proto import (
    IFLA,
    RTM,
    TCA,
    TCA_BPF,
    TCMSG,
    NetlinkError,
    attr,
    attrs,
    c_string,
    message,
    nested,
)

# tc handles (pkt_sched.h)
TC_H_CLSACT = 0xFFFFFFF1
CLSACT_HANDLE = 0xFFFF0000
PARENT_INGRESS = 0xFFFFFFF2
PARENT_EGRESS = 0xFFFFFFF3
ETH_P_ALL = 0x0003


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


class RouteSocket:
    """A NETLINK_ROUTE socket living in one network namespace."""

    def __init__(self, netns_path: str | None = None) -> None:
        kind = (socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, p.NETLINK_ROUTE)
        self.sock = nsenter.socket_in(netns_path, *kind) if netns_path else socket.socket(*kind)
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
        self.sock.send(message(mtype, flags | p.NLM_F_REQUEST, body, seq))
        out: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(1 << 16)
            for rtype, rseq, off, end in p.headers(data):
                if rseq != seq:
                    continue
                if rtype == p.NLMSG_DONE:
                    return out
                if rtype == p.NLMSG_ERROR:
                    p.raise_for(p.error_code(data, off))
                    return out  # the ACK
                out.append((rtype, data[off:end]))
                if not flags & p.NLM_F_DUMP and not flags & p.NLM_F_ACK:
                    return out

    # ------------------------------------------------------------------ links

    def links(self) -> list[LinkInfo]:
        body = p.IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        found = []
        for _t, payload in self._request(RTM.GETLINK, p.NLM_F_DUMP, body):
            _fam, ltype, index, flags, _change = p.IFINFOMSG.unpack_from(payload, 0)
            a = attrs(payload, p.IFINFOMSG.size, len(payload))
            name = c_string(a[IFLA.IFNAME]) if IFLA.IFNAME in a else ""
            found.append(LinkInfo(index, name, ltype, bool(flags & p.IFF_UP)))
        return found

    # ------------------------------------------------------------------ qdiscs

    def qdiscs(self, ifindex: int) -> list[tuple[int, int, str]]:
        """(handle, parent, kind) of each qdisc on the link."""
        body = TCMSG.pack(socket.AF_UNSPEC, ifindex, 0, 0, 0)
        out = []
        for _t, payload in self._request(RTM.GETQDISC, p.NLM_F_DUMP, body):
            _fam, idx, handle, parent, _info = TCMSG.unpack_from(payload, 0)
            if idx != ifindex:
                continue
            out.append((handle, parent, _kind(payload)))
        return out

    def add_clsact(self, ifindex: int) -> bool:
        """Add a clsact qdisc; False when one (or an ingress qdisc) was already there."""
        body = TCMSG.pack(socket.AF_UNSPEC, ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0)
        body += attr(TCA.KIND, b"clsact\0")
        try:
            self._request(RTM.NEWQDISC, p.NLM_F_ACK | p.NLM_F_CREATE | p.NLM_F_EXCL, body)
        except NetlinkError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        return True

    def del_clsact(self, ifindex: int) -> None:
        body = TCMSG.pack(socket.AF_UNSPEC, ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0)
        body += attr(TCA.KIND, b"clsact\0")
        self._request(RTM.DELQDISC, p.NLM_F_ACK, body)

    # ------------------------------------------------------------------ filters

    def add_bpf_filter(
        self, ifindex: int, parent: int, prio: int, handle: int, prog_fd: int, name: str
    ) -> None:
        info = (prio << 16) | socket.htons(ETH_P_ALL)
        opts = (
            attr(TCA_BPF.FD, p.U32.pack(prog_fd))
            + attr(TCA_BPF.NAME, name.encode() + b"\0")
            + attr(TCA_BPF.FLAGS, p.U32.pack(p.TCA_BPF_FLAG_ACT_DIRECT))
        )
        body = TCMSG.pack(socket.AF_UNSPEC, ifindex, handle, parent, info)
        body += attr(TCA.KIND, b"bpf\0") + attr(TCA.OPTIONS | p.NLA_F_NESTED, opts)
        self._request(RTM.NEWTFILTER, p.NLM_F_ACK | p.NLM_F_CREATE | p.NLM_F_EXCL, body)

    def del_filter(self, f: FilterInfo) -> None:
        info = (f.prio << 16) | f.protocol
        body = TCMSG.pack(socket.AF_UNSPEC, f.ifindex, f.handle, f.parent, info)
        body += attr(TCA.KIND, f.kind.encode() + b"\0")
        self._request(RTM.DELTFILTER, p.NLM_F_ACK, body)

    def filters(self, ifindex: int, parent: int) -> list[FilterInfo]:
        body = TCMSG.pack(socket.AF_UNSPEC, ifindex, 0, parent, 0)
        try:
            answers = self._request(RTM.GETTFILTER, p.NLM_F_DUMP, body)
        except NetlinkError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT, errno.ENODEV, errno.EOPNOTSUPP):
                return []  # no clsact/ingress qdisc there
            raise
        out = []
        for _t, payload in answers:
            _fam, idx, handle, par, info = TCMSG.unpack_from(payload, 0)
            if handle == 0:
                continue  # the per-priority chain header, not a filter
            opts = nested(attrs(payload, TCMSG.size, len(payload)).get(TCA.OPTIONS))
            name = c_string(opts[TCA_BPF.NAME]) if TCA_BPF.NAME in opts else None
            prog_id = p.u32(opts.get(TCA_BPF.ID))
            out.append(
                FilterInfo(
                    idx, par, info >> 16, info & 0xFFFF, handle, _kind(payload), name, prog_id
                )
            )
        return out


def _kind(tcmsg: bytes) -> str:
    """TCA_KIND of a qdisc or filter message ("" when absent)."""
    kind = attrs(tcmsg, TCMSG.size, len(tcmsg)).get(TCA.KIND)
    return c_string(kind) if kind is not None else ""
