"""Struct member offsets read from the running kernel's BTF (/sys/kernel/btf/vmlinux).

The kernel headers installed here (Debian 6.1) do not describe the running kernel's ``struct
sk_buff``; reading a kernel struct with header layouts would silently read the wrong bytes. So the
few offsets the probes need are taken from BTF, which the kernel builds from its own source, and
passed to the eBPF C as constants.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterable

VMLINUX = "/sys/kernel/btf/vmlinux"

_MAGIC = 0xEB9F
_KIND_INT, _KIND_PTR, _KIND_ARRAY, _KIND_STRUCT, _KIND_UNION, _KIND_ENUM = 1, 2, 3, 4, 5, 6
_KIND_TYPEDEF, _KIND_VOLATILE, _KIND_CONST, _KIND_RESTRICT = 8, 9, 10, 11
_KIND_FUNC_PROTO, _KIND_VAR, _KIND_DATASEC, _KIND_DECL_TAG, _KIND_TYPE_TAG = 13, 14, 15, 17, 18
_KIND_ENUM64 = 19
_BITFIELD = 1 << 40  # marks a bitfield member's offset
_QUALIFIERS = (_KIND_TYPEDEF, _KIND_VOLATILE, _KIND_CONST, _KIND_RESTRICT, _KIND_TYPE_TAG)


class BtfError(Exception):
    """BTF is missing, malformed, or lacks a struct member the probes need."""


# Bytes after the 12-byte type header: (fixed, per vlen item), by kind.
_EXTRA = {
    1: (4, 0),  # INT
    3: (12, 0),  # ARRAY
    4: (0, 12),  # STRUCT
    5: (0, 12),  # UNION
    6: (0, 8),  # ENUM
    13: (0, 8),  # FUNC_PROTO
    14: (4, 0),  # VAR
    15: (0, 12),  # DATASEC
    17: (4, 0),  # DECL_TAG
    19: (0, 12),  # ENUM64
}
_HDR = struct.Struct("<III")


class Btf:
    """A BTF blob, indexed in one pass; members are decoded only for the structs asked about.

    vmlinux BTF holds ~130,000 types: decoding them all in Python costs a second, so the pass
    only records where each type starts and which of the wanted struct names it carries."""

    def __init__(self, data: bytes, wanted: Iterable[str] = ()) -> None:
        if len(data) < 24:
            raise BtfError("BTF blob too short")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != _MAGIC:
            raise BtfError("not a little-endian BTF blob")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self._strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
        self._blob = data[hdr_len + type_off : hdr_len + type_off + type_len]
        self._pos = array("I", [0])  # type id -> offset in the blob (id 0 is void)
        self._by_name: dict[str, int] = {}
        self._index(set(wanted))

    @classmethod
    def from_file(cls, path: str = VMLINUX, wanted: Iterable[str] = ()) -> Btf:
        try:
            with open(path, "rb") as fh:
                return cls(fh.read(), wanted)
        except OSError as exc:
            raise BtfError(f"cannot read {path}: {exc.strerror}") from exc

    def _str(self, off: int) -> str:
        end = self._strings.find(b"\0", off)
        return self._strings[off:end].decode()

    def _name_offsets(self, names: set[str]) -> dict[int, str]:
        """Where each wanted name starts in the string section (it may occur more than once)."""
        out: dict[int, str] = {}
        for name in names:
            needle = b"\0" + name.encode() + b"\0"
            at = self._strings.find(needle)
            while at >= 0:
                out[at + 1] = name
                at = self._strings.find(needle, at + 1)
        return out

    def _index(self, wanted: set[str]) -> None:
        blob, n = self._blob, len(self._blob)
        unpack, extra, pos_append = _HDR.unpack_from, _EXTRA, self._pos.append
        name_at = self._name_offsets(wanted) if wanted else None
        pos = 0
        while pos < n:
            pos_append(pos)
            name_off, info, _size = unpack(blob, pos)
            kind = (info >> 24) & 0x1F
            fixed, per = extra.get(kind, (0, 0))
            if kind in (_KIND_STRUCT, _KIND_UNION) and name_off:
                if name_at is None:
                    self._by_name.setdefault(self._str(name_off), len(self._pos) - 1)
                elif name_off in name_at:
                    self._by_name.setdefault(name_at[name_off], len(self._pos) - 1)
            pos += 12 + fixed + per * (info & 0xFFFF)

    def _type(self, type_id: int) -> tuple[int, int, int, int]:
        """(kind, vlen, kind_flag, size_or_type) of a type."""
        _name, info, size_or_type = _HDR.unpack_from(self._blob, self._pos[type_id])
        return (info >> 24) & 0x1F, info & 0xFFFF, info >> 31, size_or_type

    def _resolve(self, type_id: int) -> int:
        """Strip typedefs and qualifiers."""
        while type_id:
            kind, _v, _k, target = self._type(type_id)
            if kind not in _QUALIFIERS:
                break
            type_id = target
        return type_id

    def _find_member(self, type_id: int, name: str) -> tuple[int, int] | None:
        """(member type id, bit offset) of ``name``, looking inside anonymous members too."""
        type_id = self._resolve(type_id)
        if not type_id:
            return None
        kind, vlen, kflag, _size = self._type(type_id)
        if kind not in (_KIND_STRUCT, _KIND_UNION):
            return None
        base = self._pos[type_id] + 12
        for i in range(vlen):
            m_name, m_type, m_off = _HDR.unpack_from(self._blob, base + 12 * i)
            bit = m_off & 0xFFFFFF if kflag else m_off
            if kflag and m_off >> 24:
                bit |= _BITFIELD  # a bitfield: never a byte offset to read at
            if m_name and self._str(m_name) == name:
                return m_type, bit
            if not m_name:
                inner = self._find_member(m_type, name)
                if inner is not None:
                    return inner[0], bit + inner[1]
        return None

    def offset(self, struct_name: str, path: str) -> int:
        """Byte offset of ``path`` (``a.b.c``) inside ``struct struct_name``."""
        type_id = self._by_name.get(struct_name)
        if type_id is None:
            raise BtfError(f"struct {struct_name} not in BTF")
        total = 0
        for part in path.split("."):
            found = self._find_member(type_id, part)
            if found is None:
                raise BtfError(f"struct {struct_name} has no member {path}")
            type_id, bit = found
            total += bit
        if total % 8 or total & _BITFIELD:
            raise BtfError(f"{struct_name}.{path} is a bitfield")
        return total // 8


# The members the probes read: (field of struct cnt_offsets, struct, member path).
NEEDED: tuple[tuple[str, str, str], ...] = (
    ("skb_head", "sk_buff", "head"),
    ("skb_data", "sk_buff", "data"),
    ("skb_dev", "sk_buff", "dev"),
    ("skb_len", "sk_buff", "len"),
    ("skb_mark", "sk_buff", "mark"),
    ("skb_network_header", "sk_buff", "network_header"),
    ("dev_ifindex", "net_device", "ifindex"),
    ("dev_nd_net", "net_device", "nd_net.net"),
    ("net_inum", "net", "ns.inum"),
)


def kernel_offsets(
    path: str = VMLINUX, needed: Iterable[tuple[str, str, str]] = NEEDED
) -> dict[str, int]:
    """The offsets in NEEDED, from the running kernel."""
    needed = tuple(needed)
    btf = Btf.from_file(path, {st for _c, st, _m in needed})
    return {const: btf.offset(st, member) for const, st, member in needed}
