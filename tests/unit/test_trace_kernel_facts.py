"""Facts read from the running kernel, on recorded and synthetic inputs: tracepoint formats
(the drop-reason names come from there, never from a table of ours) and BTF struct offsets."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from cntrace.trace import ebpf
from cntrace.trace.btf import NEEDED, Btf, BtfError
from cntrace.trace.kallsyms import Kallsyms
from cntrace.trace.tracefs import TracefsError, parse_format

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "trace"


def test_kfree_skb_format_of_6_18() -> None:
    f = parse_format("skb", "kfree_skb", (FIX / "kfree_skb-6.18.format").read_text())
    assert f.id == 2310
    assert f.fields["skbaddr"] == (8, 8) and f.fields["location"] == (16, 8)
    assert f.fields["reason"] == (36, 4) and f.fields["rx_sk"] == (24, 8)
    reasons = f.symbols["reason"]
    assert reasons[12] == "NETFILTER_DROP" and reasons[3] == "NO_SOCKET"
    assert reasons[2] == "NOT_SPECIFIED" and len(reasons) > 100


def _offsets() -> dict[str, int]:
    return {name: 100 + i for i, (name, _s, _m) in enumerate(NEEDED)}


def test_kfree_skb_format_before_drop_reasons() -> None:
    f = parse_format("skb", "kfree_skb", (FIX / "kfree_skb-5.10.format").read_text())
    assert "reason" not in f.fields and f.symbols == {}
    facts = ebpf.KernelFacts(_offsets(), f)
    lay = facts.layout()
    assert (lay.tp_skbaddr, lay.tp_location, lay.tp_reason) == (8, 16, 0)
    assert facts.reasons == {}


def test_format_without_id_is_refused() -> None:
    with pytest.raises(TracefsError):
        parse_format("skb", "kfree_skb", "name: kfree_skb\nformat:\n")


def test_the_layout_goes_to_the_map_not_into_the_c() -> None:
    f = parse_format("skb", "kfree_skb", (FIX / "kfree_skb-6.18.format").read_text())
    lay = ebpf.KernelFacts(_offsets(), f).layout()
    assert (lay.skb_head, lay.tp_reason) == (100, 36)
    src = ebpf.render_source()
    assert '#include "cntrace_event.h"' not in src and "struct cnt_offsets {" in src
    assert "cnt_offsets.lookup" in src


def test_prebuilt_bytecode_is_built_from_this_source() -> None:
    """probes/cntrace.bpf.json must be regenerated when the C changes, or every machine
    without bcc loses the eBPF back end: `python -m cntrace.trace.ebpf`."""
    key = ebpf.source_key()
    built = ebpf._load_cached(ebpf.probes_dir() / ebpf.PREBUILT, key)
    assert built is not None, "stale probes/cntrace.bpf.json: run python -m cntrace.trace.ebpf"
    assert set(built.programs) == set(ebpf.PROGRAMS) and set(built.maps) == set(ebpf.MAPS)


# --------------------------------------------------------------------------- BTF


class _BtfBuilder:
    """Just enough of the BTF encoding to describe a few structs."""

    def __init__(self) -> None:
        self.strings = b"\0"
        self.types = b""
        self.count = 0

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def int_(self, name: str, size: int) -> int:
        self.types += struct.pack("<III", self.s(name), 1 << 24, size) + struct.pack("<I", size * 8)
        self.count += 1
        return self.count

    def ptr(self, to: int) -> int:
        self.types += struct.pack("<III", 0, 2 << 24, to)
        self.count += 1
        return self.count

    def struct(
        self,
        name: str,
        size: int,
        members: list[tuple[str, int, int]],
        *,
        union: bool = False,
        bitfields: bool = False,
    ) -> int:
        kind = 5 if union else 4
        info = (kind << 24) | len(members) | (1 << 31 if bitfields else 0)
        self.types += struct.pack("<III", self.s(name), info, size)
        for mname, mtype, bit in members:
            self.types += struct.pack("<III", self.s(mname), mtype, bit)
        self.count += 1
        return self.count

    def blob(self) -> bytes:
        hdr = struct.pack(
            "<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strings)
        )
        return hdr + self.types + self.strings


def _sk_buff_btf() -> bytes:
    b = _BtfBuilder()
    u16, u32, u64 = b.int_("u16", 2), b.int_("u32", 4), b.int_("u64", 8)
    pdev = b.ptr(0)
    # union { struct { next, prev; union { dev; dev_scratch } }; rbnode } like the real one
    inner_u = b.struct("", 8, [("dev", pdev, 0), ("dev_scratch", u64, 0)], union=True)
    anon_s = b.struct("", 24, [("next", pdev, 0), ("prev", pdev, 64), ("", inner_u, 128)])
    top_u = b.struct("", 24, [("", anon_s, 0), ("rbnode", u64, 0)], union=True)
    b.struct(
        "sk_buff",
        64,
        [("", top_u, 0), ("len", u32, 192), ("network_header", u16, 224), ("head", u64, 256)],
    )
    b.struct("flags", 4, [("a", u32, (1 << 24) | 3)], bitfields=True)
    return b.blob()


def test_btf_offsets_through_anonymous_members() -> None:
    btf = Btf(_sk_buff_btf())
    assert btf.offset("sk_buff", "dev") == 16
    assert btf.offset("sk_buff", "len") == 24
    assert btf.offset("sk_buff", "network_header") == 28
    assert btf.offset("sk_buff", "head") == 32


def test_btf_refuses_what_it_cannot_answer() -> None:
    btf = Btf(_sk_buff_btf())
    with pytest.raises(BtfError, match="no member"):
        btf.offset("sk_buff", "nothere")
    with pytest.raises(BtfError, match="not in BTF"):
        btf.offset("net_device", "ifindex")
    with pytest.raises(BtfError, match="bitfield"):
        btf.offset("flags", "a")
    with pytest.raises(BtfError):
        Btf(b"\x00" * 40)


# --------------------------------------------------------------------------- kallsyms


def test_kallsyms_resolves_to_function_and_offset(tmp_path: Path) -> None:
    p = tmp_path / "kallsyms"
    p.write_text(
        "ffffffff81000000 T _stext\n"
        "ffffffff81100000 t nf_hook_slow\n"
        "ffffffff81100400 D some_data\n"
        "ffffffff81200000 T tcp_v4_rcv\n"
    )
    k = Kallsyms(str(p), use_cache=False)
    assert k.resolve(0xFFFFFFFF81100099) == "nf_hook_slow+0x99"
    assert k.resolve(0xFFFFFFFF81100500) == "nf_hook_slow+0x500"  # data symbols are skipped
    assert k.function(0xFFFFFFFF81200000) == "tcp_v4_rcv"
    assert k.resolve(0) is None and k.resolve(0x1000) is None


def test_kallsyms_hidden_addresses_are_unusable(tmp_path: Path) -> None:
    p = tmp_path / "kallsyms"
    p.write_text("0000000000000000 T _stext\n0000000000000000 t nf_hook_slow\n")
    assert not Kallsyms(str(p), use_cache=False).usable
