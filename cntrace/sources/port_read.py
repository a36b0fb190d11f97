"""A big bridge host's links, read without making the kernel describe every port in full.

A full RTM_GETLINK dump of a namespace holding one end of N veths whose other ends are in N
namespaces costs the kernel O(N^2): for each veth it names the peer's namespace by netnsid,
found by a linear scan of the namespace's netnsids (__peernet2id). Measured here: 21 ms for a
host of 1,000 containers, 256 ms for 5,000, against 25 ms for the same host's 5,000 bridge ports
as the bridge lists them (AF_BRIDGE) and 2 ms for its links that have no master.

A narrow read (sources.sparse) leaves out the plain bridge ports whose far end it did not read,
so on such a host it asks for less: the links without a master in full, the bridge's port list
(ifindex, name, master, IFLA_LINK), the ports of each kind that names a lower device (vxlan,
macvlan, vlan ...: dumps.LOWER_KINDS, filtered by the kernel before it describes a link), and
then in full, one RTM_GETLINK each, every port that may not be plain and every port whose far end
is read (:func:`bring_back`). A port is taken for a plain one when it is enslaved to a bridge of
the namespace, its IFLA_LINK names another device, that device does not name it back (a veth
pair with both ends here), it is of no lower-device kind and it holds only link-scope addresses:
what a full read's rule (a veth or netkit port with a netnsid) finds. Its IFLA_LINK may well be
an index some local link has: a peer made inside a container is often its ifindex 2.

The read is whole or not at all: a namespace with fewer than BIG ports, a kernel that does not
filter by "no master" (before 6.5 the filter matches nothing, so lo is missing) and a device
that neither list holds (a bond's or VRF's slave, found in the netconf dump) all take the full
dump instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from cntrace.sources import sparse
from cntrace.sources.netlink import decode, dumps
from cntrace.sources.netlink import proto as p
from cntrace.sources.netlink.proto import IFLA, NETCONFA

if TYPE_CHECKING:
    from cntrace.sources.namespaces import Space

BIG = 64  # bridge ports: below this the full dump costs less than the extra round trips
_PORT_ATTRS = frozenset((IFLA.IFNAME, IFLA.MASTER, IFLA.LINK))


class Port(NamedTuple):
    """A bridge port as the AF_BRIDGE dump lists it."""

    name: str
    master: int
    link: int | None


def port_index(chunks: dumps.Chunks) -> dict[int, Port]:
    """ifindex -> Port for every enslaved port of an AF_BRIDGE link dump (a NIC describing
    its own embedded switch has no master and is not a port)."""
    out: dict[int, Port] = {}
    for buf, _t, off, end in decode.each(chunks):
        index = p.I32.unpack_from(buf, off + 4)[0]
        a = p.attrs(buf, off + p.IFINFOMSG.size, end, _PORT_ATTRS)
        master = p.u32(a.get(IFLA.MASTER))
        if master:
            name = p.c_string(a[IFLA.IFNAME]) if IFLA.IFNAME in a else f"if{index}"
            out[index] = Port(name, master, p.u32(a.get(IFLA.LINK)))
    return out


def netconf_indexes(chunks: dumps.Chunks) -> set[int]:
    """The interfaces an RTM_GETNETCONF dump names (every device with IPv4 configuration)."""
    out: set[int] = set()
    for buf, _t, off, end in decode.each(chunks):
        if end - off >= 12 and p.NLATTR.unpack_from(buf, off + 4)[1] == NETCONFA.IFINDEX:
            index = p.I32.unpack_from(buf, off + 8)[0]
            if index > 0:
                out.add(index)
    return out


def read(
    sp: Space,
    ports: dict[int, Port],
    top: dumps.Chunks,
    netconf: dumps.Chunks,
    addresses: dumps.Chunks,
    loopback: bool,
    kinds: tuple[str, ...],
) -> bool:
    """Fill ``sp.raw_links`` from ``top`` (the links without a master) and, fetched one by
    one, the ports that may not be plain; the others are kept in ``sp.unread``. False when
    the lists do not cover every link (the caller dumps them all)."""
    assert sp.conn is not None
    top_indexes = {p.I32.unpack_from(buf, off + 4)[0] for buf, _t, off, _e in decode.each(top)}
    if decode.LOOPBACK_IFINDEX not in top_indexes:
        return False  # the kernel ignored or misread the "no master" filter
    local = top_indexes | set(ports)
    if netconf_indexes(netconf) - local:
        return False  # a slave of a bond, team or VRF: only the full dump lists it
    links = decode.parse_links(top, conf=False, loopback=loopback)
    bridges = {r.ifindex for r in links if r.kind == "bridge"}
    _held, wider = sparse.split(addresses, set(ports))
    lower = set()
    for kind in kinds:
        try:
            found = dumps.dump(sp.conn, f"kind:{kind}")
            lower |= {r.ifindex for r in decode.parse_links(found, conf=False)}
        except OSError:
            return False
    iflink = {r.ifindex: r.link for r in links} | {i: port.link for i, port in ports.items()}
    unread = {
        index
        for index, port in ports.items()
        if port.master in bridges
        and port.link  # 0: a tunnel with no lower device
        and port.link != index
        and index not in lower
        and iflink.get(port.link) != index  # a pair with both ends here
        and index not in wider
    }
    fetched = decode.parse_links(dumps.get_links(sp.conn, set(ports) - unread), conf=False)
    sp.raw_links = sorted([*links, *fetched], key=lambda r: r.ifindex)
    sp.unread = {i: ports[i] for i in unread}
    return True


def registered_kinds(conn: dumps.Conn) -> tuple[str, ...]:
    """The LOWER_KINDS some module registered: the kernel filters a dump by a kind it knows
    and ignores a kind it does not, so a no-master dump that brings lo back names a kind with
    no device anywhere (asked in a small namespace, each answer costs microseconds)."""
    out = []
    for kind in dumps.LOWER_KINDS:
        found = dumps.dump(conn, f"kind-nomaster:{kind}")
        if not any(r.ifindex == decode.LOOPBACK_IFINDEX for r in decode.parse_links(found)):
            out.append(kind)
    return tuple(out)


def bring_back(among: list[Space], peers: dict[tuple[int, int], int]) -> list[Space]:
    """Fetch the unread ports whose far end is now read (a link of ``among`` resolved to
    their namespace names them by IFLA_LINK); returns the namespaces that gained links, whose
    own peers the caller resolves again."""
    by_inode = {sp.inode: sp for sp in among if sp.unread}
    if not by_inode:
        return []
    wanted: dict[int, set[int]] = {}
    for sp in among:
        for lk in sp.raw_links:
            far = by_inode.get(peers.get((sp.inode, lk.ifindex), -1))
            if far is not None and lk.link in far.unread:
                wanted.setdefault(far.inode, set()).add(lk.link)
    grown = []
    for inode, indexes in wanted.items():
        far = by_inode[inode]
        if far.conn is None:
            continue
        fetched = decode.parse_links(dumps.get_links(far.conn, indexes), conf=False)
        for index in indexes:
            far.unread.pop(index, None)
        far.raw_links = sorted([*far.raw_links, *fetched], key=lambda r: r.ifindex)
        grown.append(far)
    return grown
