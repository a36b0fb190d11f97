"""The live-trace engine without a kernel: the stop rule (pure), and the engine running a fake
collector that obeys the collector contract (the point is the contract: the real collectors run
in tests/integration/test_trace.py)."""

from __future__ import annotations

import errno
import os
import time

import pytest

from cntrace.errors import EnvironmentProblem
from cntrace.model import Packet
from cntrace.trace import inject
from cntrace.trace.collector import Collector, Seen, StopRule, Trace, ending, neigh_deadline
from cntrace.trace.events import (
    Drop,
    NeighFrame,
    RuleEvent,
    Sighting,
    TracePlan,
    TraceTarget,
    Unwatched,
)
from cntrace.trace.session import TraceEngine

SRC = TraceTarget("/run/netns/c", 11, "eth0", 2, "cli eth0")
MID = TraceTarget("/run/netns/r", 12, "veth1", 7, "rtr veth1")
FAR = TraceTarget("/run/netns/s", 13, "eth0", 2, "srv eth0")
UDP = Packet("udp", "10.0.0.2", "10.0.1.5", 40000, 53)
TCP = Packet("tcp", "10.0.0.2", "10.0.1.5", 40000, 80)


def plan(targets: tuple[TraceTarget, ...] = (SRC, MID, FAR), **kw: object) -> TracePlan:
    return TracePlan("/run/netns/c", UDP, targets, **kw)  # type: ignore[arg-type]


def seen(t: TraceTarget, reply: bool = False) -> Sighting:
    return Sighting(t, "ingress", 5, UDP.reply() if reply else UDP, reply)


def drop(reason: str, reply: bool = False) -> Drop:
    return Drop(reason, "nf_hook_slow", 7, is_reply=reply)


# --------------------------------------------------------------------------- the stop rule


def rule(probe: Packet = TCP, targets: tuple[TraceTarget, ...] = (SRC, MID, FAR)) -> StopRule:
    return StopRule.of(plan(targets, settle_s=0.03), SRC.netns_inode, probe)


def test_a_reply_home_ends_the_trace_after_a_settle() -> None:
    assert ending(rule(), Seen((seen(SRC, reply=True),)), [], 0) == ("reply", 30_000_000)


def test_a_reply_still_on_its_way_home_does_not() -> None:
    assert ending(rule(), Seen((seen(MID, reply=True),)), [], 0) is None
    # with the source's namespace unwatched, any reply is the last one cntrace will see
    assert ending(rule(targets=(MID, FAR)), Seen((seen(MID, reply=True),)), [], 0) == (
        "reply",
        30_000_000,
    )


def test_a_drop_of_the_probe_ends_it_but_not_one_of_the_reply_or_no_socket() -> None:
    assert ending(rule(), Seen(drops=(drop("NETFILTER_DROP"),)), [], 0) == ("drop", 30_000_000)
    assert ending(rule(), Seen(drops=(drop("NETFILTER_DROP", reply=True),)), [], 0) is None
    assert ending(rule(), Seen(drops=(drop("NO_SOCKET"),)), [], 0) is None  # a reply follows


def test_udp_that_reached_the_far_end_ends_quiet_once_nothing_arrives() -> None:
    r = rule(UDP)
    at_far = [seen(SRC), seen(FAR)]
    assert r.quiet_ns == 200_000_000  # at least 0.2 s, whatever the settle
    assert ending(r, Seen(), at_far, r.quiet_ns - 1) is None
    assert ending(r, Seen(), at_far, r.quiet_ns) == ("quiet", 0)
    assert ending(r, Seen(), [seen(SRC), seen(MID)], 10**10) is None  # not at the far end
    assert ending(r, Seen(), [seen(FAR, reply=True)], 10**10) is None  # a reply is not the probe


def test_tcp_and_icmp_are_never_quiet_they_always_get_an_answer() -> None:
    for probe in (TCP, Packet("icmp", "10.0.0.2", "10.0.1.5", icmp_type=8)):
        r = rule(probe)
        assert not r.no_reply_ok
        assert ending(r, Seen(), [seen(FAR)], 10**10) is None


def test_no_targets_means_only_a_reply_or_a_drop_can_end_it() -> None:
    r = rule(UDP, targets=())
    assert r.last_target is None and not r.source_watched
    assert ending(r, Seen(), [], 10**10) is None
    assert ending(r, Seen((seen(MID, reply=True),)), [], 0) == ("reply", 30_000_000)


# --------------------------------------------------------------------------- the contract

HOME = TraceTarget("/proc/self/ns/net", os.stat("/proc/self/ns/net").st_ino, "lo", 1, "lo")


class Fake:
    """A collector that sees the probe at the far end, then (after ``reply_after`` drains) its
    reply at home; it writes down every call of the contract."""

    def __init__(self, name: str = "fake", *, fail: str = "", reply_after: int = 2) -> None:
        self.name = name
        self.calls: list[str] = []
        self.fail = fail
        self.reply_after = reply_after
        self._drains = 0
        self._stopped = False
        self._pipe = os.pipe()

    def _call(self, step: str) -> None:
        self.calls.append(step)
        if step == self.fail:
            raise OSError(f"{self.name} cannot {step}")

    def can_run(self) -> tuple[bool, str]:
        return True, "always"

    def attach(self, trace: Trace) -> list[Unwatched]:
        self._call("attach")
        self._drains, self._stopped = 0, False
        return [Unwatched(f"{self.name} somewhere", "not here")]

    def start(self, trace: Trace) -> list[int]:
        self._call("start")
        assert trace.nonce and trace.matcher is not None
        return [self._pipe[0]]

    def drain(self, trace: Trace) -> Seen:
        self._call("drain")
        if self._stopped:  # what only the end can tell
            event = RuleEvent(HOME.netns_path, HOME.netns_inode, "inet", "t", "c", 1, None, None, 9)
            return Seen(rules=(event,), notices=(f"{self.name} finished",))
        assert trace.t0_ns > 0, "drained before injection"
        self._drains += 1
        home, far = trace.plan.targets[0], trace.plan.targets[-1]
        if self._drains == 1:
            return Seen((Sighting(far, "ingress", 1, trace.probe, False),))
        if self._drains == self.reply_after:
            return Seen((Sighting(home, "ingress", 2, trace.probe.reply(), True),))
        return Seen()

    def stop(self, trace: Trace) -> int:
        self._call("stop")
        self._stopped = True
        return 3

    def close(self) -> None:
        self.calls.append("close")


class FakeSender:
    """The probe is not sent: the fake collectors report what they please. ``refuse`` makes
    the source's kernel refuse it with that errno, as a netfilter drop or a missing route do."""

    refuse: int | None = None

    def __init__(self, _path: str, packet: Packet) -> None:
        self.packet = packet

    def send(self, marker: inject.Marker, _size: int = 0) -> inject.Injected:
        if self.refuse is not None:
            raise OSError(self.refuse, os.strerror(self.refuse))
        return inject.Injected(self.packet, marker, time.monotonic_ns(), b"", time.time_ns())

    def news(self) -> list[inject.SourceNews]:
        return []

    def fileno(self) -> int:
        return -1

    def path_mtu(self) -> int | None:
        return 1400

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def no_send(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeSender.refuse = None
    monkeypatch.setattr(inject, "Sender", FakeSender)


def engine(*collectors: Collector) -> TraceEngine:
    return TraceEngine("capture", remove_leftovers=False, backends={"capture": collectors})


def here(probe: Packet = UDP, timeout: float = 2.0) -> TracePlan:
    """A plan the engine takes without privilege: this process's namespace, a complete probe."""
    return TracePlan(HOME.netns_path, probe, (HOME, FAR), timeout_s=timeout)


def test_the_engine_runs_each_collector_through_the_contract() -> None:
    a, b = Fake("a"), Fake("b", reply_after=99)
    with engine(a, b) as e:
        r = e.trace(here())
        for c in (a, b):
            assert c.calls[:2] == ["attach", "start"] and c.calls[-2:] == ["stop", "drain"]
            assert set(c.calls[2:-2]) == {"drain"}
        assert r.ended == "reply" and r.timings["collect"] < 1.0
        assert [(s.target, s.is_reply) for s in r.sightings] == [
            (FAR, False),
            (FAR, False),
            (HOME, True),
        ]
        assert r.lost_events == 6
        assert [u.what for u in r.unwatched] == ["a somewhere", "b somewhere"]
        assert len(r.rule_events) == 2 and r.notices == ("a finished", "b finished")
        assert r.backend == "capture" and r.probe == UDP and r.marker
        again = e.trace(here())  # the same collectors serve the next trace
        assert again.ended == "reply" and a.calls.count("attach") == 2
        assert again.marker != r.marker
    assert a.calls[-1] == b.calls[-1] == "close"


def test_udp_without_a_reply_ends_quiet_and_tcp_waits_for_the_timeout() -> None:
    with engine(Fake(reply_after=99)) as e:
        r = e.trace(here(UDP))
        assert r.ended == "quiet" and 0.2 <= r.timings["collect"] < 1.0
        r = e.trace(here(TCP, timeout=0.3))
        assert r.ended == "timeout" and r.timings["collect"] >= 0.25  # 0.3 s from the injection
        assert r.outcome() == ("timeout", "last seen at srv eth0 ingress")


@pytest.mark.parametrize("step", ["attach", "start", "stop"])
def test_every_collector_is_stopped_when_one_fails(step: str) -> None:
    a, b, c = Fake("a"), Fake("b", fail=step), Fake("c")
    with engine(a, b, c) as e, pytest.raises(OSError, match=f"b cannot {step}"):
        e.trace(here())
    assert a.calls.count("stop") == b.calls.count("stop") == 1
    # one that attach never reached has nothing to stop
    assert c.calls.count("stop") == (0 if step == "attach" else 1)
    assert "drain" not in a.calls or step == "stop"


def test_armed_without_a_probe_attaches_and_stops_only() -> None:
    a = Fake()
    with engine(a) as e:
        with e.armed(here()):
            assert a.calls == ["attach", "start"]
        assert a.calls == ["attach", "start", "stop"]
    assert a.calls[-1] == "close"


@pytest.mark.parametrize(
    ("err", "status"),
    [
        (errno.EPERM, "dropped"),
        (errno.ENETUNREACH, "no-route"),
        (errno.EHOSTUNREACH, "unreachable"),
        (errno.EMSGSIZE, "dropped"),
        (errno.ECONNREFUSED, "refused"),
    ],
)
def test_a_refused_send_is_the_observation_not_a_failure(err: int, status: str) -> None:
    FakeSender.refuse = err
    a = Fake(reply_after=99)
    with engine(a) as e:
        r = e.trace(here(TCP, timeout=5.0))
    assert r.ended == "send-error" and r.timings["collect"] < 1.0  # no waiting for the timeout
    sent = r.send_error
    assert sent is not None and sent.errno == errno.errorcode[err]
    assert r.outcome()[0] == status, r.outcome()
    assert (sent.mtu == 1400) == (err == errno.EMSGSIZE)  # the path MTU, read back
    assert a.calls[-3:] == ["stop", "drain", "close"]


def test_an_unexpected_send_error_is_an_environment_problem() -> None:
    FakeSender.refuse = errno.ENOBUFS
    with engine(Fake()) as e, pytest.raises(EnvironmentProblem, match="could not send"):
        e.trace(here())


# --------------------------------------------------------------------------- neighbour waits


def ask(t_ns: int, retry_ns: int = 3_000_000_000, op: str = "request") -> NeighFrame:
    if op == "reply":
        return NeighFrame(SRC, "ingress", t_ns, "reply", 4, "10.0.0.9", "02:00:00:00:00:09", "x")
    return NeighFrame(
        SRC,
        "egress",
        t_ns,
        "request",
        4,
        "10.0.0.2",
        "02:00:00:00:00:02",
        "10.0.0.9",
        "ff:ff:ff:ff:ff:ff",
        retry_ns,
    )


def test_an_unanswered_solicitation_holds_the_trace_until_the_kernel_gives_up() -> None:
    second = 1_000_000_000
    t0, timeout_at, bound, margin = 100 * second, 101 * second, 5 * second, second // 2
    assert neigh_deadline([], timeout_at, t0, bound, margin) == (timeout_at, None)
    frames = [ask(1000)]
    deadline, why = neigh_deadline(frames, timeout_at, t0, bound, margin)
    assert why == frames[0] and deadline == t0 + 1000 + 3 * second + margin
    # answered: no reason to wait; a kernel that retries longer than the bound: the bound
    assert neigh_deadline([*frames, ask(5, op="reply")], timeout_at, t0, bound, margin)[1] is None
    assert neigh_deadline([ask(0, 30 * second)], timeout_at, t0, bound, margin)[0] == t0 + bound
    # a solicitation only seen passing (retry_ns 0: not this namespace's own) does not hold it
    assert neigh_deadline([ask(0, 0)], timeout_at, t0, bound, margin)[1] is None
