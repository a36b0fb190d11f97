"""proto.attrs recognises a layout it walked before; what it returns must be what a walk gives.

The cache is keyed by a region's length and the wanted types, and a layout matches only when every
attribute header sits where it sat before. These regions are built to collide: the same length
with headers moved, changed types, a length that differs only inside one attribute, truncated and
malformed ones. Each is decoded with the cache warm and cold (walked), and the answers compared.
"""

from __future__ import annotations

import random

import pytest

from cntrace.sources.netlink import proto


def walked(buf: bytes, want: frozenset[int] | None) -> dict[int, bytes]:
    """attrs with the layout cache out of the way: the plain walk."""
    saved = proto._LAYOUT_MIN_ATTRS
    proto._LAYOUT_MIN_ATTRS = 10**9
    try:
        return proto.attrs(buf, 0, len(buf), want)
    finally:
        proto._LAYOUT_MIN_ATTRS = saved


def region(parts: list[tuple[int, bytes]]) -> bytes:
    return b"".join(proto.attr(t, payload) for t, payload in parts)


@pytest.fixture(autouse=True)
def cold_cache() -> None:
    proto._LAYOUTS.clear()


def test_the_same_layout_is_read_from_the_cache_with_new_payloads() -> None:
    first = region([(t, bytes([t]) * 4) for t in range(1, 9)])
    second = region([(t, bytes([t + 100]) * 4) for t in range(1, 9)])
    want = frozenset({2, 5, 8})
    assert proto.attrs(first, 0, len(first), want) == walked(first, want)
    assert len(proto._LAYOUTS) == 1
    got = proto.attrs(second, 0, len(second), want)
    assert got == {2: bytes([102]) * 4, 5: bytes([105]) * 4, 8: bytes([108]) * 4}
    assert got == walked(second, want)


def test_equal_length_different_layout_is_walked() -> None:
    # Same total length: one attribute's payload grows by 4 while the next shrinks by 4, so
    # every header after it moves; and a variant with two types swapped in place.
    base = [(t, b"x" * 8) for t in range(1, 9)]
    moved = [(1, b"x" * 12), (2, b"x" * 4), *base[2:]]
    swapped = [base[1], base[0], *base[2:]]
    for want in (None, frozenset({1, 2, 7})):
        proto._LAYOUTS.clear()
        proto.attrs(region(base), 0, len(region(base)), want)
        for variant in (moved, swapped):
            buf = region(variant)
            assert len(buf) == len(region(base))
            assert proto.attrs(buf, 0, len(buf), want) == walked(buf, want)


def test_nested_flag_and_duplicates_match_the_walk() -> None:
    parts = [(t | (0x8000 if t % 2 else 0), b"ab") for t in range(1, 8)] + [(3, b"last")]
    buf = region(parts)
    for _ in range(2):  # cold, then from the cache
        assert proto.attrs(buf, 0, len(buf)) == walked(buf, None)
    assert proto.attrs(buf, 0, len(buf))[3] == b"last"


def test_malformed_or_truncated_regions_are_never_remembered() -> None:
    good = region([(t, b"abcd") for t in range(1, 9)])
    zero_len = good[:16] + b"\x00\x00\x09\x00" + good[20:]
    cut = good[:-2]
    for buf in (zero_len, cut):
        proto._LAYOUTS.clear()
        assert proto.attrs(buf, 0, len(buf)) == walked(buf, None)
        assert not proto._LAYOUTS


def test_offsets_inside_a_larger_buffer() -> None:
    body = region([(t, bytes([t]) * 6) for t in range(1, 10)])
    buf = b"H" * 20 + body + b"T" * 12
    want = frozenset({4, 9})
    assert proto.attrs(buf, 20, 20 + len(body), want) == walked(body, want)
    assert proto.attrs(buf, 20, 20 + len(body), want) == walked(body, want)  # cached now


def test_random_regions_agree_with_the_walk() -> None:
    rng = random.Random(15)
    wants = (None, frozenset({1, 3}), frozenset(range(1, 20, 2)))
    for _ in range(3000):
        n = rng.randint(1, 14)
        parts = [
            (rng.choice((1, 2, 3, 4, 5, 6, 0x8003)), bytes(rng.randint(0, 9))) for _ in range(n)
        ]
        buf = region(parts)
        want = rng.choice(wants)
        assert proto.attrs(buf, 0, len(buf), want) == walked(buf, want), parts
