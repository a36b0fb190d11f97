"""Link messages read by shape (netlink.link_shapes) decode as the walk decodes them.

A shape is learnt from one message and used for any later message of the same length whose
attribute headers (the link's, IFLA_LINKINFO's, the bridge port's) and kind strings are the same.
These messages are built to collide with the one learnt: new values in every field the decoder
reads; the same length with headers moved, a kind of the same length, a nested attribute
changed; kinds whose data the shape does not read; malformed ones. Each is decoded with the
shapes warm, and by the walk alone, and the answers compared.
"""

from __future__ import annotations

import random
import struct

import pytest

from cntrace.sources.netlink import decode, link_shapes, proto


def attr(atype: int, payload: bytes, nested: bool = False) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, atype | (0x8000 if nested else 0)) + payload + b"\0" * (-n % 4)


def msg(body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), 16, 2, 1, 0) + body


def s(text: str) -> bytes:
    return text.encode() + b"\0"


def port(
    state: int = 3,
    cost: int = 2,
    prio: int = 32,
    isolated: int = 0,
    rng: random.Random | None = None,
) -> bytes:
    parts = [
        attr(1, bytes([state])),
        attr(2, struct.pack("=H", prio)),
        attr(3, struct.pack("=I", cost)),
        attr(4, bytes([0])),
        attr(8, bytes([1])),
        attr(9, bytes([1])),
        attr(33, bytes([isolated])),
        attr(20, struct.pack("=Q", 12345)),  # a timer nobody reads
    ]
    if rng is not None:
        rng.shuffle(parts)
    return b"".join(parts)


def link(
    index: int = 7,
    name: str = "veth0001",
    mac: bytes = bytes.fromhex("0242ac110002"),
    kind: str = "veth",
    slave: bytes | None = None,
    master: int | None = 3,
    oper: int = 6,
    peer: int = 12,
    nsid: int | None = 4,
    flags: int = 0x1 | 0x10000,
    extra: bytes = b"",
    rng: random.Random | None = None,
) -> bytes:
    info = attr(1, s(kind))
    if slave is not None:
        info += attr(4, s("bridge")) + attr(5, slave, nested=True)
    parts = [
        attr(3, s(name)),
        attr(1, mac),
        attr(4, struct.pack("=I", 1500)),
        attr(5, struct.pack("=i", peer)),
        attr(16, bytes([oper])),
        attr(18, info, nested=True),
        attr(7, b"\0" * 32),
    ]
    if master is not None:
        parts.insert(4, attr(10, struct.pack("=I", master)))
    if nsid is not None:
        parts.append(attr(37, struct.pack("=i", nsid)))
    if rng is not None:
        rng.shuffle(parts)
    return struct.pack("=BxHiII", 0, 1, index, flags, 0) + b"".join(parts) + extra


def decoded(bodies: list[bytes]) -> list[decode.RawLink]:
    return decode.parse_links([b"".join(msg(b) for b in bodies)], conf=False)


def walked(bodies: list[bytes], monkeypatch: pytest.MonkeyPatch) -> list[decode.RawLink]:
    with monkeypatch.context() as m:
        m.setattr(link_shapes, "build", lambda *_a: None)
        m.setattr(link_shapes, "learn", lambda *_a: None)
        return decoded(bodies)


@pytest.fixture(autouse=True)
def cold() -> None:
    link_shapes._SHAPES.clear()


def test_a_learnt_shape_reads_new_values(monkeypatch: pytest.MonkeyPatch) -> None:
    first = link(slave=port())
    decoded([first])
    assert sum(map(len, link_shapes._SHAPES.values())) == 1
    others = [
        link(index=9, name="veth0002", mac=bytes(range(6)), slave=port(state=1, cost=7)),
        link(master=5, oper=2, peer=40, nsid=0, flags=0, slave=port(isolated=1, prio=64)),
        link(name="eth9\0\0\0x", slave=port()),  # a NUL inside: the name stops there
    ]
    for body in others:
        assert len(body) == len(first)
    calls = []
    real = link_shapes.Shape.build

    def counted(self: link_shapes.Shape, buf: bytes, off: int) -> decode.RawLink | None:
        got = real(self, buf, off)
        calls.append(got is not None)
        return got

    monkeypatch.setattr(link_shapes.Shape, "build", counted)
    assert decoded(others) == walked(others, monkeypatch)
    assert calls == [True, True, True]  # all three read by the shape, none walked


def test_colliding_messages_are_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    base = link(slave=port())
    decoded([base])
    collide = [
        link(kind="vcan", slave=port()),  # a kind of the same length
        link(name="veth00001", mac=bytes(5), slave=port()),  # header lengths moved, same total
        link(slave=port()[:-12] + attr(21, struct.pack("=Q", 1))),  # a port attribute changed
        link(master=None, slave=port(), extra=attr(10, struct.pack("=I", 3))),  # master moved
    ]
    for body in collide:
        assert len(body) == len(base)
        assert decoded([body]) == walked([body], monkeypatch)


def test_kinds_with_data_and_devconf_are_never_shapes() -> None:
    for kind in sorted(decode.KINDS_WITH_DATA):
        decoded([link(kind=kind)])
    decode.parse_links([msg(link())], conf=True)
    assert not link_shapes._SHAPES


def test_malformed_messages_are_never_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    good = link(slave=port())
    cut = good[:-8] + struct.pack("=HH", 200, 50) + b"\0" * 4  # an attribute past the end
    short = good + struct.pack("=HH", 2, 1)  # an attribute shorter than its header
    for body in (cut, short):
        link_shapes._SHAPES.clear()
        assert decoded([body]) == walked([body], monkeypatch)
        assert not link_shapes._SHAPES


@pytest.mark.parametrize("shuffled", ["", "ports", "all"])
def test_random_links_decode_as_walked(monkeypatch: pytest.MonkeyPatch, shuffled: str) -> None:
    """Random links; ``shuffled``: the bridge port's attributes in random order, or all of
    them, so that messages of one length come in many layouts (each a collision for the
    others: "ports" differ only inside the bridge port's nested attributes)."""
    rng = random.Random(15)
    order = rng if shuffled == "all" else None
    port_order = rng if shuffled else None
    names = ["veth0001", "eth0", "veth-c0042", "lab0", "x"]
    kinds = ["veth", "netkit", "vcan", "dummy", "bridge", "vxlan"]
    bodies = []
    for _ in range(600):
        slave = port(rng.randrange(6), rng.randrange(1, 100), rng=port_order)
        bodies.append(
            link(
                index=rng.randrange(1, 5000),
                name=rng.choice(names),
                mac=bytes(rng.randrange(256) for _ in range(rng.choice((6, 6, 6, 0, 8)))),
                kind=rng.choice(kinds),
                slave=slave if rng.random() < 0.6 else None,
                master=rng.choice((None, 3, 4)),
                oper=rng.randrange(8),
                peer=rng.randrange(100),
                nsid=rng.choice((None, 0, 1, 7)),
                flags=rng.choice((0, 1, 0x10001)),
                rng=order,
            )
        )
    want = walked(bodies, monkeypatch)
    assert decoded(bodies) == want  # learning as it goes
    assert link_shapes._SHAPES
    assert decoded(bodies) == want  # every shape warm
    assert proto.IFINFOMSG.size == 16
