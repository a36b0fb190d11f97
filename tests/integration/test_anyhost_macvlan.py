"""macvlan children on a parent, with the kernel's semantics (issue 12), on real namespaces.

    sw  e0 10.83.0.1/24 ==veth== p0 10.83.0.2/24  par   (the parent's namespace)
                                  |-- macvlan bridge  -> c1 eth0 10.83.0.11/24
                                  |-- macvlan bridge  -> c2 eth0 10.83.0.12/24
                                  |-- macvlan private -> c3 eth0 10.83.0.13/24
                                  `-- macvlan vepa    -> c4 eth0 10.83.0.14/24

Bridge-mode siblings reach each other inside the parent; the wire (sw) reaches every child; the
parent's own namespace reaches none of them through p0 (the classic surprise: macvlan-parent);
a private child talks to no sibling (macvlan-private); a vepa child reaches a sibling only if the
far end (sw, a plain veth peer here) reflects frames, which sw does not (macvlan-vepa, exit 1).
Every prediction from a live snapshot is checked against a real TCP connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import clirun
import pytest
from harness import require_root
from hostkit import World, new_world

from cntrace.path import predict
from cntrace.sources import live

KIDS = {
    "c1": ("10.83.0.11", "bridge"),
    "c2": ("10.83.0.12", "bridge"),
    "c3": ("10.83.0.13", "private"),
    "c4": ("10.83.0.14", "vepa"),
}
AGREES = {"delivered": {"delivered"}, "unreachable": {"timeout", "unreachable"}}


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_root()
    w = new_world("m")
    try:
        w.add("sw", "par", *KIDS)
        w.veth("par", "p0", "sw", "e0")
        w.ip("sw", "addr add 10.83.0.1/24 dev e0")
        w.ip("par", "addr add 10.83.0.2/24 dev p0")
        for kid, (ip, mode) in KIDS.items():
            w.ip("par", f"link add mv-{kid} link p0 type macvlan mode {mode}")
            w.ip("par", f"link set mv-{kid} netns {w.ns(kid)}")
            w.ip(kid, f"link set mv-{kid} name eth0")
            w.ip(kid, f"addr add {ip}/24 dev eth0")
            w.ip(kid, "link set eth0 up")
            w.listen(kid, 80)
        w.listen("sw", 80)
        yield w
    finally:
        w.down()


@pytest.mark.parametrize(
    ("src", "dst", "want", "code"),
    [
        ("c1", "10.83.0.12", "delivered", None),  # bridge-mode siblings
        ("c2", "10.83.0.11", "delivered", None),
        ("sw", "10.83.0.11", "delivered", None),  # the wire reaches a child
        ("c3", "10.83.0.1", "delivered", None),  # a private child reaches the wire
        ("par", "10.83.0.11", "unreachable", "macvlan-parent"),
        ("c1", "10.83.0.13", "unreachable", "macvlan-private"),
        ("c4", "10.83.0.11", "unreachable", "macvlan-vepa"),  # sw reflects nothing
        ("c4", "10.83.0.1", "delivered", None),  # a vepa child reaches the wire
    ],
)
def test_macvlan_semantics(world: World, src: str, dst: str, want: str, code: str | None) -> None:
    for role in world.roles:
        world.ip(role, "neigh flush all")
    snap = live.read_snapshot()
    path = predict(snap, f"netns:{world.ns(src)}", f"{dst}:80")
    real = world.connect(src, dst, 80, timeout=1.5)
    assert path.verdict.status == want, (path.verdict, [h.summary for h in path.hops])
    assert real in AGREES[want], f"kernel {real}"
    if code is not None:
        assert path.findings and path.findings[0].code == code, path.findings


@pytest.mark.parametrize(
    ("src", "dst", "want", "code"),
    [
        ("c1", "10.83.0.12", "delivered", None),
        ("par", "10.83.0.11", "unreachable", "macvlan-parent"),
    ],
    ids=["sibling", "parent-to-child"],
)
def test_live_confirms_macvlan(
    world: World, src: str, dst: str, want: str, code: str | None
) -> None:
    """The live trace agrees: the probe between siblings is seen arriving at the child's eth0;
    the parent's probe leaves p0 and never reaches the child."""
    for role in world.roles:
        world.ip(role, "neigh flush all")
    doc = clirun.run_json(
        "path", "--live", "--json", f"netns:{world.ns(src)}", f"{dst}:80", rc=(0, 1)
    )
    assert doc["mode"] == "live", doc
    assert not [n for n in doc["notes"] if "disagrees" in n], doc["notes"]
    codes = [f["code"] for f in doc["findings"]]
    if code is None:
        assert doc["verdict"]["status"] == want, doc["verdict"]
        dest = [h for h in doc["hops"] if h["netns_label"] == world.ns("c2")]
        assert dest and any(h["observed"] for h in dest), doc["hops"]
    else:
        assert doc["verdict"]["status"] != "delivered", doc["verdict"]
        assert code in codes, codes
        child = [h for h in doc["hops"] if h["netns_label"] == world.ns("c1") and h["observed"]]
        assert not child, child


def test_vepa_to_a_sibling_through_a_far_end_that_reflects_nothing_exits_1(world: World) -> None:
    """The CLI's exit status follows the verdict: not 0 ("left the host") for a connection that
    times out because the visible far end does not send the frame back."""
    res = clirun.run_ok("path", "--json", f"netns:{world.ns('c4')}", "10.83.0.11:80", rc=1)
    doc = json.loads(res.stdout)
    assert doc["verdict"]["status"] == "unreachable", doc["verdict"]
    (f,) = [f for f in doc["findings"] if f["code"] == "macvlan-vepa"]
    assert f["severity"] == "error" and world.ns("sw") in f["summary"], f
    assert world.connect("c4", "10.83.0.11", 80, timeout=1.5) in ("timeout", "unreachable")
