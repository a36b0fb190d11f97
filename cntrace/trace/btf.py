"""Struct member offsets read from the running kernel's BTF (/sys/kernel/btf/vmlinux).

The kernel headers installed here (Debian 6.1) do not describe the running kernel's ``struct
sk_buff``; reading a kernel struct with header layouts would silently read the wrong bytes. So the
few offsets the probes need are taken from BTF, which the kernel builds from its own source, and
passed to the eBPF C as constants.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class _Type:
    kind: int
    name: str
    size_or_type: int
    kind_flag: bool
    members: tuple[tuple[str, int, int], ...]  # (name, type id, bit offset) for struct/union


class Btf:
    """A parsed BTF blob: enough to resolve ``struct.member.member`` to a byte offset."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 24:
            raise BtfError("BTF blob too short")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != _MAGIC:
            raise BtfError("not a little-endian BTF blob")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self._strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
        self._types: list[_Type | None] = [None]  # type id 0 is void
        self._by_name: dict[tuple[int, str], int] = {}
        self._parse(data[hdr_len + type_off : hdr_len + type_off + type_len])

    @classmethod
    def from_file(cls, path: str = VMLINUX) -> Btf:
        try:
            with open(path, "rb") as fh:
                return cls(fh.read())
        except OSError as exc:
            raise BtfError(f"cannot read {path}: {exc.strerror}") from exc

    def _str(self, off: int) -> str:
        end = self._strings.find(b"\0", off)
        return self._strings[off:end].decode()

    def _parse(self, blob: bytes) -> None:
        pos, n = 0, len(blob)
        unpack = struct.unpack_from
        while pos < n:
            name_off, info, size_or_type = unpack("<III", blob, pos)
            pos += 12
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            kflag = bool(info >> 31)
            members: tuple[tuple[str, int, int], ...] = ()
            if kind in (_KIND_STRUCT, _KIND_UNION):
                ms = []
                for i in range(vlen):
                    m_name, m_type, m_off = unpack("<III", blob, pos + 12 * i)
                    bit = m_off & 0xFFFFFF if kflag else m_off
                    if kflag and m_off >> 24:
                        bit |= _BITFIELD  # a bitfield: never a byte offset to read at
                    ms.append((self._str(m_name) if m_name else "", m_type, bit))
                members = tuple(ms)
                pos += 12 * vlen
            elif kind in (_KIND_INT, _KIND_VAR, _KIND_DECL_TAG):
                pos += 4
            elif kind == _KIND_ARRAY:
                pos += 12
            elif kind == _KIND_ENUM or kind in (_KIND_FUNC_PROTO,):
                pos += 8 * vlen
            elif kind in (_KIND_DATASEC, _KIND_ENUM64):
                pos += 12 * vlen
            name = self._str(name_off) if name_off and kind in (_KIND_STRUCT, _KIND_UNION) else ""
            self._types.append(_Type(kind, name, size_or_type, kflag, members))
            if name:
                self._by_name.setdefault((kind, name), len(self._types) - 1)

    def _resolve(self, type_id: int) -> int:
        """Strip typedefs and qualifiers."""
        t = self._types[type_id]
        while t is not None and t.kind in _QUALIFIERS:
            type_id = t.size_or_type
            t = self._types[type_id]
        return type_id

    def _find_member(self, type_id: int, name: str) -> tuple[int, int] | None:
        """(member type id, bit offset) of ``name``, looking inside anonymous members too."""
        t = self._types[self._resolve(type_id)]
        if t is None or t.kind not in (_KIND_STRUCT, _KIND_UNION):
            return None
        for m_name, m_type, bit in t.members:
            if m_name == name:
                return m_type, bit
            if not m_name:
                inner = self._find_member(m_type, name)
                if inner is not None:
                    return inner[0], bit + inner[1]
        return None

    def offset(self, struct_name: str, path: str) -> int:
        """Byte offset of ``path`` (``a.b.c``) inside ``struct struct_name``."""
        type_id = self._by_name.get((_KIND_STRUCT, struct_name))
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


# The members the probes read: (constant name, struct, member path).
NEEDED: tuple[tuple[str, str, str], ...] = (
    ("OFF_SKB_HEAD", "sk_buff", "head"),
    ("OFF_SKB_DATA", "sk_buff", "data"),
    ("OFF_SKB_DEV", "sk_buff", "dev"),
    ("OFF_SKB_LEN", "sk_buff", "len"),
    ("OFF_SKB_MARK", "sk_buff", "mark"),
    ("OFF_SKB_NETWORK_HEADER", "sk_buff", "network_header"),
    ("OFF_SKB_MAC_HEADER", "sk_buff", "mac_header"),
    ("OFF_DEV_IFINDEX", "net_device", "ifindex"),
    ("OFF_DEV_ND_NET", "net_device", "nd_net.net"),
    ("OFF_NET_INUM", "net", "ns.inum"),
)


def kernel_offsets(
    path: str = VMLINUX, needed: Iterable[tuple[str, str, str]] = NEEDED
) -> dict[str, int]:
    """The offsets in NEEDED, from the running kernel."""
    btf = Btf.from_file(path)
    return {const: btf.offset(st, member) for const, st, member in needed}
