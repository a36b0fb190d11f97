"""Link messages decoded by shape: a bridge's thousand ports in one unpack each.

A host of 1,000 containers lists ~2,000 links whose messages differ only in values: the same
attributes, of the same lengths, at the same offsets (every container's eth0 alike, every bridge
port alike). decode.parse_link walks three attribute regions per message (the link's, IFLA_LINKINFO
and the bridge port's IFLA_INFO_SLAVE_DATA) and builds a dict of each; that was most of the
decode of `ls` and the console on such a host. A :class:`Shape` is learnt from a message the
walk decoded: every attribute header it walked (all three regions) and where each payload the
decoder reads sits. A later message of the same length is of that shape when one unpack of those
headers gives the same words and its kind strings are the same bytes; then every attribute the
walk would find is at the recorded offset, and the link is built from those slices with the
walk's own conversions (decode.make_link), so the answer is the walk's.

Only what decode reads without kind data is learnt: links decoded without devconf (``conf``
false) whose kind has no IFLA_INFO_DATA decoder (not a bridge, vxlan or macvlan). Anything
malformed or cut short is never a shape.
"""

from __future__ import annotations

import struct
import sys

from cntrace.records import BridgePort
from cntrace.sources.netlink import decode
from cntrace.sources.netlink import proto as p
from cntrace.sources.netlink.proto import IFLA, IFLA_INFO

PER_LENGTH = 4  # shapes kept per message length
PORTS_KEPT = 256  # distinct bridge port settings kept per shape
LIMIT = 4096  # message lengths with shapes: a long-running console reads many dumps
_SHAPES: dict[int, list[Shape]] = {}
_SCALARS = (  # (attribute, struct code, payload bytes the decoder needs): decode.make_link's
    (IFLA.MTU, "I", 4),
    (IFLA.MASTER, "I", 4),
    (IFLA.LINK, "i", 4),
    (IFLA.LINK_NETNSID, "i", 4),
    (IFLA.OPERSTATE, "B", 1),
)
Walked = list[tuple[int, int, int, int]]  # (header offset, header word, type, payload end)


class Shape:
    """Where one layout of link message keeps what decode.parse_link reads."""

    __slots__ = (
        "alias",
        "brport",
        "check",
        "expect",
        "kind",
        "kinds",
        "mac",
        "name",
        "port",
        "ports",
        "scalars",
        "slots",
    )

    def __init__(
        self,
        headers: list[tuple[int, int]],
        kinds: tuple[tuple[int, int, bytes], ...],
        picks: dict[int, tuple[int, int]],
        brport: tuple[tuple[int, int, int], ...] | None,
        kind: str | None,
    ) -> None:
        headers = sorted(headers)  # nested headers sit inside the link's region
        fmt, pos = ["="], 0
        for at, _word in headers:
            fmt.append(f"{at - pos}xI" if at > pos else "I")
            pos = at + 4
        self.check = struct.Struct("".join(fmt))
        self.expect = tuple(w for _a, w in headers)
        self.kinds = kinds  # (start, end, bytes) of IFLA_INFO_KIND and _SLAVE_KIND payloads
        self.kind = kind  # IFLA_INFO_KIND's text, None when absent
        self.name = picks.get(IFLA.IFNAME)
        self.mac = picks.get(IFLA.ADDRESS)
        self.alias = picks.get(IFLA.IFALIAS)
        self.brport = brport  # the bridge port's wanted attributes, or None: not a port
        # A bridge's ports mostly share their settings: one BridgePort (frozen) per distinct
        # set of payloads, read in one unpack.
        spans = sorted((a, b, t) for t, a, b in brport or ())
        fmt, pos = ["="], 0
        for a, b, _t in spans:
            fmt.append(f"{a - pos}x{b - a}s" if a > pos else f"{b - a}s")
            pos = b
        self.port = (struct.Struct("".join(fmt)), tuple(t for _a, _b, t in spans))
        self.ports: dict[tuple[bytes, ...], BridgePort] = {}
        fmt, pos = ["="], 0
        present = sorted(
            (picks[t][0], code, i)
            for i, (t, code, need) in enumerate(_SCALARS)
            if t in picks and picks[t][1] - picks[t][0] >= need
        )
        where = [-1] * len(_SCALARS)
        for n, (at, code, i) in enumerate(present):
            fmt.append(f"{at - pos}x{code}" if at > pos else code)
            pos = at + struct.calcsize("=" + code)
            where[i] = n
        self.scalars = struct.Struct("".join(fmt))
        self.slots = tuple(where)  # each scalar's place in the unpacked tuple (-1: absent)

    def build(self, buf: bytes, off: int) -> decode.RawLink | None:
        """The link at ``off`` if it is of this shape, else None."""
        if self.check.unpack_from(buf, off) != self.expect:
            return None
        for a, b, raw in self.kinds:
            if buf[off + a : off + b] != raw:
                return None
        v = (*self.scalars.unpack_from(buf, off), None)  # v[-1]: an absent scalar
        s = self.slots
        _family, iftype, index, flags, _change = p.IFINFOMSG.unpack_from(buf, off)
        return decode.make_link(
            (iftype, index, flags),
            buf[off + self.name[0] : off + self.name[1]] if self.name else None,
            buf[off + self.mac[0] : off + self.mac[1]] if self.mac else None,
            buf[off + self.alias[0] : off + self.alias[1]] if self.alias else None,
            (v[s[0]], v[s[1]], v[s[2]], v[s[3]], v[s[4]]),
            self.kind,
            self._port(buf, off) if self.brport is not None else None,
            {},
            {},
        )

    def _port(self, buf: bytes, off: int) -> BridgePort:
        layout, types = self.port
        key = layout.unpack_from(buf, off)
        port = self.ports.get(key)
        if port is None:
            port = decode.bridge_port(dict(zip(types, key, strict=True)))
            if len(self.ports) < PORTS_KEPT:
                self.ports[key] = port
        return port


def build(buf: bytes, off: int, end: int) -> decode.RawLink | None:
    """The link at ``off`` from a learnt shape, or None: none fits (the walk decodes it)."""
    shapes = _SHAPES.get(end - off)
    if shapes is None:
        return None
    for i, shape in enumerate(shapes):
        got = shape.build(buf, off)
        if got is not None:
            if i:  # the shape that fits goes first: a dump's messages come in runs
                shapes.insert(0, shapes.pop(i))
            return got
    return None


def learn(buf: bytes, off: int, end: int) -> None:
    """Record the shape of the link message at ``off`` (decoded by the walk just now)."""
    known = _SHAPES.get(end - off)
    if (known is not None and len(known) >= PER_LENGTH) or len(_SHAPES) >= LIMIT:
        return
    start = off + p.IFINFOMSG.size
    top = _walk(buf, start, end)
    if top is None:
        return
    headers = [(at - off, word) for at, word, _t, _e in top]
    picks = {t: (at + 4 - off, e - off) for at, _w, t, e in top if t in decode.LINK_ATTRS}
    kinds: list[tuple[int, int, bytes]] = []
    brport: tuple[tuple[int, int, int], ...] | None = None
    kind = None
    if IFLA.LINKINFO in picks:
        a, b = picks[IFLA.LINKINFO]
        info = _walk(buf, off + a, off + b)
        if info is None:
            return
        headers += [(at - off, word) for at, word, _t, _e in info]
        got = {t: (at + 4 - off, e - off) for at, _w, t, e in info if t in decode.INFO_ATTRS}
        kind = _text(buf, off, got.get(IFLA_INFO.KIND))
        if kind in decode.KINDS_WITH_DATA:
            return
        slave = _text(buf, off, got.get(IFLA_INFO.SLAVE_KIND))
        for t in (IFLA_INFO.KIND, IFLA_INFO.SLAVE_KIND):
            if t in got:
                kinds.append((*got[t], buf[off + got[t][0] : off + got[t][1]]))
            else:
                kinds.append((-1, -1, b""))  # absent: the empty slice at -1..-1 is b""
        if slave == "bridge":
            brport = ()
            if IFLA_INFO.SLAVE_DATA in got:
                a, b = got[IFLA_INFO.SLAVE_DATA]
                port = _walk(buf, off + a, off + b)
                if port is None:
                    return
                headers += [(at - off, word) for at, word, _t, _e in port]
                chosen = {t: (at + 4 - off, e - off) for at, _w, t, e in port}
                brport = tuple(
                    (t, a, b) for t, (a, b) in chosen.items() if t in decode.BRPORT_ATTRS
                )
    _SHAPES.setdefault(end - off, []).append(Shape(headers, tuple(kinds), picks, brport, kind))


def _text(buf: bytes, off: int, span: tuple[int, int] | None) -> str | None:
    return p.c_string(buf[off + span[0] : off + span[1]]) if span else None


def _walk(buf: bytes, start: int, end: int) -> Walked | None:
    """Every attribute header between ``start`` and ``end`` as proto.attrs walks them (the
    type masked, a later one of a type winning when the caller keeps a dict), or None when the
    region is malformed or an attribute runs past its end."""
    out: Walked = []
    at = start
    while at + 4 <= end:
        alen, atype = p.NLATTR.unpack_from(buf, at)
        if alen < 4 or at + alen > end:
            return None
        word = alen | atype << 16 if sys.byteorder == "little" else alen << 16 | atype
        out.append((at, word, atype & p.NLA_TYPE_MASK, at + alen))
        at += (alen + 3) & ~3
    return out
