"""The compiled-probe cache: bytecode is stored with the map fds it was compiled against and
relocated to the new maps' fds when loaded; a stale or foreign entry is never used."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from cntrace.trace import bpfsys, ebpf


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def program(*fds: int) -> bytes:
    out = b""
    for fd in fds:
        out += insn(0x18, 1, bpfsys.BPF_PSEUDO_MAP_FD, 0, fd) + insn(0)  # ld_imm64 map fd
    out += insn(0x18, 2, 0, 0, 77) + insn(0)  # a plain 64-bit constant: untouched
    return out + insn(0x95)  # exit


def test_relocate_patches_only_map_references() -> None:
    code = program(5, 6, 5)
    assert bpfsys.map_fds_in(code) == {5, 6}
    out = bpfsys.relocate(code, {5: 40, 6: 41})
    assert bpfsys.map_fds_in(out) == {40, 41}
    assert struct.unpack_from("<i", out, 6 * 8 + 4)[0] == 77
    with pytest.raises(bpfsys.BpfError):
        bpfsys.relocate(code, {5: 40})


def _entry(key: str) -> dict[str, object]:
    return {
        "key": key,
        "programs": {n: {"type": t, "insns": ""} for n, t in ebpf.PROGRAMS.items()},
        "maps": {
            n: {
                "spec": {
                    "name": n,
                    "type": 2,
                    "key_size": 4,
                    "value_size": 8,
                    "max_entries": 1,
                    "flags": 0,
                },
                "fd": 3 + i,
            }
            for i, n in enumerate(ebpf.MAPS)
        },
    }


def test_cache_entry_must_carry_its_key(tmp_path: Path) -> None:
    path = tmp_path / "probes.json"
    path.write_text(json.dumps(_entry("abc")))
    assert ebpf._load_cached(path, "abc") is not None
    assert ebpf._load_cached(path, "other") is None
    bad = _entry("abc")
    del bad["maps"]["cnt_events"]  # type: ignore[attr-defined]
    path.write_text(json.dumps(bad))
    assert ebpf._load_cached(path, "abc") is None
    path.write_text("not json")
    assert ebpf._load_cached(path, "abc") is None


def test_probe_sources_are_found() -> None:
    d = ebpf.probes_dir()
    assert (d / ebpf.SOURCE).is_file() and (d / ebpf.HEADER).is_file()
    src = (d / ebpf.SOURCE).read_text()
    for name in ebpf.PROGRAMS:
        assert f" {name}(" in src
    for name in ebpf.MAPS:
        assert f" {name}" in src or f"({name}," in src
