"""live.merge when the probe waits for a neighbour (issue 17): the route before the wait was
passed (the kernel solicits only for a packet it has routed out of that interface), the egress
where it waited was not, and the ARP frames show at their hops.

A prediction on the recorded lab (client -> an on-link address nobody holds) merged with the
frames and drop a live trace records there.
"""

from __future__ import annotations

from functools import cache

from harness import FIXTURES

from cntrace.model import Path, Snapshot
from cntrace.path import predict
from cntrace.trace import live
from cntrace.trace.events import Drop, NeighFrame, TraceResult, TraceTarget

NOBODY = "10.210.0.250"
CLIENT_MAC = "02:42:0a:d2:00:03"


@cache
def snap() -> Snapshot:
    from cntrace.sources import recorded

    return recorded.load(str(FIXTURES / "snapshots" / "lab" / "healthy.json"))


def predicted() -> Path:
    return predict(snap(), "client", f"{NOBODY}:80")


def target(p: Path, index: int) -> TraceTarget:
    h = p.hops[index - 1]
    assert h.netns is not None and h.interface is not None
    return TraceTarget(f"/run/netns/x{h.netns}", h.netns, h.interface, index, "", None, index)


def frame(t: TraceTarget, direction: str, retry_ns: int = 0) -> NeighFrame:
    return NeighFrame(
        t,
        direction,
        70_000,
        "request",
        4,
        "10.210.0.3",
        CLIENT_MAC,
        NOBODY,  # type: ignore[arg-type]
        "ff:ff:ff:ff:ff:ff",
        retry_ns,
    )


def traced(p: Path, *, solicited: bool) -> Path:
    src_eth0, host_in = target(p, 2), target(p, 3)
    frames = (
        (frame(src_eth0, "egress", 3_000_000_000), frame(host_in, "ingress")) if solicited else ()
    )
    drop = Drop("NEIGH_FAILED", "neigh_invalidate", 3_100_000_000, netns_inode=src_eth0.netns_inode)
    res = TraceResult((), (drop,), (), 0, (), {}, "ebpf", neigh=frames)
    return live.merge(p, res, snap())


def test_the_route_before_a_neighbour_wait_was_passed() -> None:
    p = predicted()
    kinds = [(h.index, h.kind, h.tap) for h in p.hops[:3]]
    assert kinds == [(1, "route", None), (2, "interface", "egress"), (3, "veth", "ingress")]
    merged = traced(p, solicited=True)
    route, out, host_in = merged.hops[:3]
    assert route.observed is True and route.watched is None  # "passed"
    assert out.observed is False and out.watched is True  # the probe never left: it waited
    assert any("ARP who-has 10.210.0.250 sent 1x by eth0" in e for e in out.evidence)
    assert host_in.observed is False
    assert merged.verdict.status == "unreachable" and merged.verdict.reason == "NEIGH_FAILED"


def test_without_the_solicitation_nothing_says_the_route_was_passed() -> None:
    merged = traced(predicted(), solicited=False)
    assert merged.hops[0].kind == "route" and merged.hops[0].observed is False
