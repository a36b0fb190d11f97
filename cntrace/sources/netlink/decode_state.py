"""Neighbours, FDB entries, sockets and netconf decoded from their dumps (see decode.py for the
approach): the per-namespace state read after links, addresses and routes, and only where a
question needs it.
"""

from __future__ import annotations

import socket

from cntrace.model import FdbEntry, Neighbor, Socket
from cntrace.sources.netlink import proto as p
from cntrace.sources.netlink.decode import MEMO_ENTRIES, Chunks, _family, each, payloads
from cntrace.sources.netlink.proto import (
    NDA,
    NETCONFA,
    attrs,
    i32,
    ip_text,
    mac_text,
    u16,
    u32,
)

NUD_STATES = (
    (0x80, "permanent"),
    (0x40, "noarp"),
    (0x20, "failed"),
    (0x10, "probe"),
    (0x08, "delay"),
    (0x04, "stale"),
    (0x02, "reachable"),
    (0x01, "incomplete"),
)

# --------------------------------------------------------------------------- neighbours and fdb


def _nud(state: int) -> str:
    for bit, name in NUD_STATES:
        if state & bit:
            return name
    return "none"


def parse_neighbors(chunks: Chunks, names: dict[int, str]) -> list[Neighbor]:
    """ARP and NDP entries, as ``ip neigh`` shows them (NOARP and empty entries hidden)."""
    out: list[Neighbor] = []
    for buf, _t, off, end in each(chunks):
        family, index, state, _flags, _type = p.NDMSG.unpack_from(buf, off)
        if family not in (socket.AF_INET, socket.AF_INET6) or not state or state & p.NUD_NOARP:
            continue
        a = attrs(buf, off + p.NDMSG.size, end)
        dst = a.get(NDA.DST)
        if dst is None:
            continue
        ll = a.get(NDA.LLADDR)
        out.append(
            Neighbor(
                ip=ip_text(dst),
                ifname=names.get(index, f"if{index}"),
                state=_nud(state),
                mac=mac_text(ll) if ll and len(ll) == 6 else None,
            )
        )
    return out


def parse_fdb(
    chunks: Chunks,
    names: dict[int, str],
    tunnels: frozenset[int] = frozenset(),
    left_out: frozenset[int] = frozenset(),
) -> list[FdbEntry]:
    """Bridge FDB entries (those with a master bridge), and the device-own (self) entries of the
    VXLAN devices ``tunnels`` (ifindexes), with their remote ``dst``; other self lists (the
    multicast addresses every port lists) are skipped, as are the permanent entries of the ports
    ``left_out`` (sources.sparse: their own MACs)."""
    out: list[FdbEntry] = []
    for buf, _t, off, end in each(chunks):
        family, index, state, flags, _type = p.NDMSG.unpack_from(buf, off)
        if family != p.AF_BRIDGE:
            continue
        if flags & p.NTF_SELF and not flags & p.NTF_MASTER and index not in tunnels:
            continue  # a port's own list (every port lists its multicast addresses): undecoded
        if index in left_out and state & p.NUD_PERMANENT:
            continue
        a = attrs(buf, off + p.NDMSG.size, end)
        master = u32(a.get(NDA.MASTER))
        ll = a.get(NDA.LLADDR)
        if not ll or len(ll) != 6:
            continue
        if master is None and index in tunnels:
            dst = a.get(NDA.DST)
            out.append(
                FdbEntry(
                    mac=mac_text(ll),
                    port=names.get(index, f"if{index}"),
                    local=bool(state & p.NUD_PERMANENT),
                    static=bool(state & p.NUD_NOARP),
                    dst=ip_text(dst) if dst else None,
                )
            )
            continue
        if master is None:
            continue
        out.append(
            FdbEntry(
                mac=mac_text(ll),
                port=names.get(index, f"if{index}"),
                bridge=names.get(master, f"if{master}"),
                vlan=u16(a.get(NDA.VLAN)),
                local=bool(state & p.NUD_PERMANENT),
                static=bool(state & p.NUD_NOARP),
            )
        )
    return out


# --------------------------------------------------------------------------- sockets


def parse_sockets(chunks: Chunks, proto: str) -> list[Socket]:
    """Listening TCP / unconnected bound UDP sockets from an inet_diag dump."""
    out: list[Socket] = []
    for buf, _t, off, _end in each(chunks):
        family, state, sport, src, inode = p.INET_DIAG_MSG.unpack_from(buf, off)
        out.append(
            Socket(
                proto=proto,
                family=_family(family),
                local_ip=ip_text(src[:4] if family == socket.AF_INET else src),
                local_port=socket.ntohs(sport),
                state="listen" if state == p.TCP_LISTEN else "unconn",
                inode=inode or None,
            )
        )
    return out


# --------------------------------------------------------------------------- netconf

_NETCONF_KEYS = {
    NETCONFA.FORWARDING: "forwarding",
    NETCONFA.RP_FILTER: "rp_filter",
    NETCONFA.PROXY_NEIGH: "proxy_arp",  # IPv6: proxy_ndp
}


_NETCONF_SEEN: dict[tuple[bytes, tuple[tuple[int, str], ...], frozenset[int]], dict[str, str]] = {}


def parse_netconf(
    chunks: Chunks, names: dict[int, str], skip: frozenset[int] = frozenset()
) -> dict[str, str]:
    """parse_netconf_once, remembered for small dumps: a thousand single-interface containers'
    netconf entries are equal byte for byte (the same names too), so decoded once."""
    body = payloads(chunks)
    key = (body, tuple(names.items()), skip) if body is not None and len(names) <= 8 else None
    seen = _NETCONF_SEEN.get(key) if key is not None else None
    if seen is not None:
        return dict(seen)
    out = parse_netconf_once(chunks, names, skip)
    if key is not None and len(_NETCONF_SEEN) < MEMO_ENTRIES:
        _NETCONF_SEEN[key] = dict(out)
    return out


def parse_netconf_once(
    chunks: Chunks, names: dict[int, str], skip: frozenset[int] = frozenset()
) -> dict[str, str]:
    """Forwarding, rp_filter and (when on) proxy_arp for all/default/each interface but those
    in ``skip`` (found by NETCONFA_IFINDEX, the kernel's first attribute), as dotted sysctl
    names.

    RTM_GETNETCONF answers from the kernel's devconf directly; reading the same values from
    /proc/sys costs a quarter of a millisecond per file, which is seconds on a big host.
    """
    out: dict[str, str] = {}
    for buf, _t, off, end in each(chunks):
        family = buf[off]
        if (
            skip
            and end - off >= 12
            and p.NLATTR.unpack_from(buf, off + 4)[1] == NETCONFA.IFINDEX
            and p.I32.unpack_from(buf, off + 8)[0] in skip
        ):
            continue
        a = attrs(buf, off + 4, end)  # struct netconfmsg: u8 family, padded
        index = i32(a.get(NETCONFA.IFINDEX))
        if index is None:
            continue
        if index == p.NETCONFA_IFINDEX_ALL:
            dev = "all"
        elif index == p.NETCONFA_IFINDEX_DEFAULT:
            dev = "default"
        else:
            dev = names.get(index, f"if{index}")
        proto = "ipv4" if family == socket.AF_INET else "ipv6"
        for key_attr, key in _NETCONF_KEYS.items():
            if proto == "ipv6" and key == "rp_filter":
                continue
            value = i32(a.get(key_attr))
            if key == "proxy_arp" and (proto == "ipv6" or not value):
                continue  # off is the default: a thousand veths need not say so
            if value is not None:
                out[f"net.{proto}.conf.{dev}.{key}"] = str(value)
    if "net.ipv4.conf.all.forwarding" in out:
        out["net.ipv4.ip_forward"] = out["net.ipv4.conf.all.forwarding"]
    return out
