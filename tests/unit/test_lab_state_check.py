"""A lab state file is checked value by value; the bulk check (state._all_plain) that passes a
1,000-container lab in one regex per field must reject exactly what the value checks reject,
and the message must still name the first bad value."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cntrace.errors import BadInput
from cntrace.lab import state
from cntrace.lab.state import ContainerState, LabState, PortState


def _lab(n: int = 40) -> LabState:
    containers = tuple(
        ContainerState(
            name=f"c{i:04d}",
            netns=f"lab.c{i:04d}",
            network="bridge",
            ip=f"10.1.{i // 250}.{i % 250 + 2}",
            prefixlen=16,
            gateway="10.1.0.1",
            mac=f"02:42:0a:01:{i // 250:02x}:{i % 250 + 2:02x}",
            host_veth=f"vethc{i:04d}",
            pid=1000 + i,
            published=(PortState("tcp", 8000 + i, 80),) if i % 7 == 0 else (),
        )
        for i in range(n)
    )
    return LabState(
        name="lab", host_netns="lab.host", upstream_netns="lab.upstream", namespaces=(),
        status="up", containers=containers,
    )  # fmt: skip


BAD = [
    ("name", "-bad"),
    ("netns", "a/b"),
    ("host_veth", "x" * 70),
    ("ip", "10.1.0.256"),
    ("gateway", "10.01.0.1"),
    ("bind", "not an ip"),
    ("mac", "02:42:0A:01:00:02"),
    ("prefixlen", 33),
    ("pid", 0),
    ("tcp_port", 70000),
    ("udp_port", -1),
    ("published", (PortState("sctp", 80, 80),)),
    ("published", (PortState("tcp", 0, 80),)),
]


def test_a_good_lab_passes_the_bulk_check() -> None:
    lab = _lab()
    assert state._all_plain(lab.containers)
    state._check(lab)


@pytest.mark.parametrize(("field", "value"), BAD, ids=[f"{f}={v!r}"[:40] for f, v in BAD])
def test_every_bad_value_is_named(field: str, value: object) -> None:
    lab = _lab()
    cs = list(lab.containers)
    cs[17] = replace(cs[17], **{field: value})
    bad = replace(lab, containers=tuple(cs))
    assert not state._all_plain(bad.containers)
    with pytest.raises(BadInput, match=rf"containers\[17\]\.{field}"):
        state._check(bad)


def test_ipv6_addresses_take_the_value_checks() -> None:
    lab = _lab()
    cs = list(lab.containers)
    cs[3] = replace(cs[3], bind="::")
    ok = replace(lab, containers=tuple(cs))
    assert not state._all_plain(ok.containers)
    state._check(ok)  # valid, found so one value at a time
