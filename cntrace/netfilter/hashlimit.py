"""iptables ``-m hashlimit`` decided from the kernel's per-key token buckets.

xt_hashlimit keeps one bucket per key (the addresses and ports ``--hashlimit-mode`` names,
masked) in a table named by ``--hashlimit-name``; ``/proc/net/ipt_hashlimit/NAME``
(``ip6t_hashlimit`` for IPv6) prints each as ``EXPIRES SRC:SPORT->DST:DPORT CREDIT CAP COST``,
fields outside the mode 0. The kernel refills a bucket when the file is read
(``dl_seq_real_show`` calls ``rateinfo_recalc``), so the credit is exact at that moment; only
the expiry is coarse, ``(expires - jiffies) / HZ`` truncated to whole seconds.

- no entry for the key: a fresh bucket (``rateinfo_init``: credit = burst * cost), so the packet
  is within the limit: ``--hashlimit-upto`` matches, ``--hashlimit-above`` does not;
- an entry: within when ``credit >= cost`` (bytes mode: the cost is ``(len >> 4) + 1`` chunks,
  capped at a full bucket, and an empty bucket is refilled while CAP, the refills left, is
  non-zero: ``hashlimit_byte_cost``);
- an entry whose shown expiry is 0 or negative may be collected before the packet (the garbage
  collector runs every ``--hashlimit-htable-gcinterval``): both outcomes are computed, decided
  when they agree, otherwise uncertain naming the expiry.

``--hashlimit-rate-match`` entries print a window state instead of a bucket: uncertain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cntrace.netfilter.probe_headers import proto_num
from cntrace.netfilter.steps import Atom, Effect, Field, Match, Step
from cntrace.netfilter.values import ip_to_int

if TYPE_CHECKING:
    from cntrace.netfilter.state import State

BYTE_SHIFT = 4  # XT_HASHLIMIT_BYTE_SHIFT
_PORT_PROTOS = frozenset({6, 17, 33, 132, 136})  # proto_ports_offset 0; ESP/AH: the SPI
_HZ_VALUES = (100, 250, 300, 1000)


@dataclass(frozen=True, slots=True)
class Bucket:
    """One line of ``/proc/net/ipt_hashlimit/NAME`` (addresses as integers)."""

    expires: int  # whole seconds left, truncated toward 0 (negative: expired)
    credit: int
    cap: int
    cost: int


Key = tuple[int, int, int, int]  # src, sport, dst, dport (0 outside the mode)
_LINE = re.compile(r"(-?\d+) ([0-9a-fA-F.:]+):(\d+)->([0-9a-fA-F.:]+):(\d+) (\d+) (\d+) (\d+)$")


def parse_table(text: str) -> dict[Key, Bucket]:
    """The buckets of one hashlimit table, by key."""
    out: dict[Key, Bucket] = {}
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m is None:
            continue
        try:
            src, dst = ip_to_int(m.group(2))[1], ip_to_int(m.group(4))[1]
        except ValueError:
            continue
        key = (src, int(m.group(3)), dst, int(m.group(5)))
        g = m.groups()
        out[key] = Bucket(int(g[0]), int(g[5]), int(g[6]), int(g[7]))
    return out


# --------------------------------------------------------------------------- lowering

_LIMITS = ("--hashlimit-upto", "--hashlimit-above", "--hashlimit")


def m_hashlimit(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    """The limit option is the Match (``over:bytes``); the others join it as ``k=v``
    (``stateful.join_options``)."""
    if opt in _LIMITS and args:
        over = opt.endswith("above") != neg
        unit = args[0].split("/")[0].lower()
        byte_mode = unit.endswith("b")  # 4kb/s, 123456b/s; packet rates are N/sec
        f = Field("st:hashlimit", arg=f"{int(over)}:{int(byte_mode)}")
        return Match((f,), "==", ((Atom(1),),), text=text)
    if opt.startswith("--hashlimit-"):
        return Effect("hashlimit:" + opt[12:], args[0] if args else "1")
    raise ValueError(f"unknown option {opt}")


# --------------------------------------------------------------------------- evaluation


def _mask(value: int, bits: int, prefix: str | None) -> int:
    n = min(int(prefix), bits) if prefix and prefix.isdigit() else bits
    return value & (((1 << n) - 1) << (bits - n))


def probe_key(st: State, kv: dict[str, str]) -> Key | str:
    """The key ``hashlimit_init_dst`` builds for the packet (or why it is not known)."""
    p = st.packet
    mode = set(kv.get("mode", "").split(","))
    fam = p.family
    bits = 32 if fam == 4 else 128
    src = _mask(ip_to_int(p.src)[1], bits, kv.get("srcmask")) if "srcip" in mode else 0
    dst = _mask(ip_to_int(p.dst)[1], bits, kv.get("dstmask")) if "dstip" in mode else 0
    sport = dport = 0
    if mode & {"srcport", "dstport"}:
        num = proto_num(p)
        if num in (50, 51):
            return "hashlimit: the key holds the IPsec SPI, which the probe does not carry"
        if num in _PORT_PROTOS:
            sport = (p.sport or 0) if "srcport" in mode else 0
            dport = (p.dport or 0) if "dstport" in mode else 0
    return src, sport, dst, dport


def _lengths(st: State) -> tuple[int, int]:
    n = st.probe.length
    if n is not None:
        return n, n
    return (20 if st.packet.family == 4 else 40), 65535


def _full(hz: int) -> int:
    """CREDITS_PER_JIFFY_BYTES * HZ: a full bucket in bytes mode."""
    cpj = 1 << ((0xFFFFFFFF // hz).bit_length() - 1)  # POW2_BELOW32(MAX_CPJ_BYTES)
    return cpj * hz


def _within_bytes(b: Bucket, length: int, hz: int) -> bool:
    cost = min(((length >> BYTE_SHIFT) + 1) * b.cost, _full(hz))
    return b.credit >= cost or b.cap > 0  # an empty bucket is refilled while refills remain


def within(b: Bucket, byte_mode: bool, st: State) -> bool | str:
    """Whether the packet passes the bucket (``credit >= cost``), at the time the file was
    read; in bytes mode for every length and HZ the probe and the recorded clock allow."""
    if not byte_mode:
        return b.credit >= b.cost
    kst = st.nf.kernel
    hzs = (kst.hz,) if kst is not None and kst.hz else _HZ_VALUES
    lo, hi = _lengths(st)
    outcomes = {_within_bytes(b, n, hz) for n in (lo, hi) for hz in hzs}
    if len(outcomes) == 1:
        return outcomes.pop()
    return f"hashlimit: {b.credit} byte credits left; the probe's length decides"


def holds(st: State, arg: str) -> bool | str:
    """Whether ``-m hashlimit`` holds for the walk's packet, or the reason it is not known."""
    head, *rest = arg.split(";")
    kv = dict(p.partition("=")[::2] for p in rest)
    over_s, byte_s = head.split(":")
    over = over_s == "1"
    name = kv.get("name", "")
    where = ("ipt_hashlimit" if st.packet.family == 4 else "ip6t_hashlimit") + f"/{name}"
    kst = st.nf.kernel
    table = kst.hashlimit.get(where) if kst is not None else None
    if table is None:
        return f"hashlimit: the table {name!r} was not read (/proc/net/{where})"
    key = probe_key(st, kv)
    if isinstance(key, str):
        return key
    bucket = table.get(key)
    if bucket is None:
        res: bool | str = True  # a fresh bucket: the first packet is within the limit
    elif "rate-match" in kv:
        return "hashlimit --hashlimit-rate-match: the kernel prints its window, not a bucket"
    else:
        res = within(bucket, byte_s == "1", st)
        if bucket.expires <= 0 and res is not True:
            gc = kv.get("htable-gcinterval", "1000")
            return (
                f"hashlimit: the key's bucket had expired or was about to when read "
                f"({bucket.expires} s left); the collector (every {gc} ms) may reset it"
            )
    if isinstance(res, str):
        return res
    return res != over
