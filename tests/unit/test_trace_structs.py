"""The C event structs (probes/cntrace_event.h) and their Python mirror must agree exactly:
the ring buffer hands over raw bytes, and a field out of step reads garbage silently."""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import pytest

from cntrace.trace import events_c

HEADER = Path(__file__).resolve().parents[2] / "probes" / "cntrace_event.h"
C_TYPES = {
    "__u8": ctypes.c_uint8,
    "__u16": ctypes.c_uint16,
    "__u32": ctypes.c_uint32,
    "__u64": ctypes.c_uint64,
}


def _c_structs() -> dict[str, list[tuple[str, str, int | None]]]:
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    out = {}
    for name, body in re.findall(r"struct (\w+) \{(.*?)\};", text, re.S):
        fields = []
        for raw in body.split(";"):
            decl = raw.strip()
            if not decl:
                continue
            m = re.fullmatch(r"(\w+) (\w+)(?:\[(\w+)\])?", decl)
            assert m, f"unexpected declaration in struct {name}: {decl!r}"
            ctype, field, count = m.groups()
            n = None
            if count is not None:
                n = int(count) if count.isdigit() else getattr(events_c, count)
            fields.append((field, ctype, n))
        out[name] = fields
    return out


C = _c_structs()


def test_every_c_struct_has_a_mirror() -> None:
    assert set(C) == set(events_c.STRUCTS)


@pytest.mark.parametrize("name", sorted(events_c.STRUCTS))
def test_fields_match_in_name_type_and_order(name: str) -> None:
    py = events_c.STRUCTS[name]._fields_
    assert [f for f, *_ in C[name]] == [f for f, _t in py]
    for (field, ctype, count), (_pf, ptype) in zip(C[name], py, strict=True):
        want = C_TYPES[ctype] * count if count else C_TYPES[ctype]
        assert ctypes.sizeof(ptype) == ctypes.sizeof(want), field
        if count:
            assert ptype._length_ == count and ptype._type_ == C_TYPES[ctype], field  # type: ignore[attr-defined]
        else:
            assert ptype == C_TYPES[ctype], field


@pytest.mark.parametrize("name", sorted(events_c.STRUCTS))
def test_sizes_are_padded_by_hand(name: str) -> None:
    """No implicit padding: the C compiler and ctypes then cannot disagree on layout."""
    st = events_c.STRUCTS[name]
    packed = sum(ctypes.sizeof(t) for _f, t in st._fields_)
    assert ctypes.sizeof(st) == packed
    assert packed % 4 == 0


def test_constants_match() -> None:
    text = HEADER.read_text()
    for name, value in re.findall(r"#define (CNT_\w+) (0x[0-9a-f]+|\d+)", text):
        assert getattr(events_c, name) == int(value, 0), name
