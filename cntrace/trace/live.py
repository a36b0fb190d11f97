"""`cntrace path --live`: trace one real probe along the predicted path and merge what was seen.

The prediction says where the packet should go; each hop with a ``tap`` names the interface and
direction where a tc program sees it, so the trace attaches exactly there (request and reply
interfaces, in path order) and nftables tracing runs in every namespace on the way that has
rules. The result is merged back hop by hop: seen (with the time and the packet as seen there, so
NAT shows where it happened), watched but not seen, or not watched at all. The verdict then comes
from what was observed, with the kernel's drop reason and the rule that dropped it; where
observation and prediction disagree, the report says so plainly.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TypedDict, Unpack

from cntrace.errors import BadInput, CntraceError, EnvironmentProblem
from cntrace.model import Hop, Path, Snapshot
from cntrace.trace import observed, pcapng
from cntrace.trace.events import Backend, RuleEvent, Sighting, TracePlan, TraceResult, TraceTarget
from cntrace.trace.session import run_trace
from cntrace.trace.verdict import live_verdict

Key = tuple[int, str]  # (netns inode, interface name)


def _netns_path(snap: Snapshot, inode: int | None) -> str | None:
    ns = snap.ns(inode)
    if ns is None or not ns.paths:
        return None
    named = [p for p in ns.paths if p.startswith("/run/netns/")]
    return (named or list(ns.paths))[0]


class NothingToTrace(Exception):
    """The prediction gives nothing a probe could follow (no hops, no source namespace)."""


def plan_for(
    snap: Snapshot,
    path: Path,
    *,
    backend: Backend = "auto",
    timeout: float = 1.0,
    ready_file: str | None = None,
    size: int = 0,
) -> TracePlan:
    """The trace that watches every tap of the predicted path, request first, then reply; every
    other port of the bridges on the way for ARP/NDP floods; the neighbours that matter."""
    if not path.hops:
        raise NothingToTrace(f"nothing to trace: {path.verdict.summary}")
    source = _netns_path(snap, path.source.netns)
    if source is None:
        raise NothingToTrace(
            "cannot enter the source's namespace (it has no path cntrace can open)"
        )
    targets: list[TraceTarget] = []
    seen: set[Key] = set()
    # A fork (a Service's endpoints) is watched on every branch: the kernel picks one.
    every = [*path.hops, *(h for b in path.branches[1:] for h in b.hops)]
    for h in sorted(every, key=lambda h: h.direction != "request"):
        if h.tap is None or h.interface is None or h.netns is None:
            continue
        key = (h.netns, h.interface)
        ns = snap.ns(h.netns)
        nspath = _netns_path(snap, h.netns)
        link = ns.link(h.interface) if ns else None
        if key in seen or nspath is None or link is None:
            continue
        seen.add(key)
        owner = next((c for c in snap.containers if c.netns == h.netns), None)
        targets.append(
            TraceTarget(
                netns_path=nspath,
                netns_inode=h.netns,
                ifname=h.interface,
                ifindex=link.ifindex,
                label=f"{h.netns_label} {h.interface}",
                container=owner.name if owner else None,
                hop=h.index,
            )
        )
    nft_namespaces = []
    for inode in dict.fromkeys(h.netns for h in path.hops if h.netns is not None):
        ns = snap.ns(inode)
        nspath = _netns_path(snap, inode)
        if ns is not None and nspath is not None and not ns.ruleset.empty:
            nft_namespaces.append(nspath)
    first = path.hops[0].packet
    probe = dataclasses.replace(first, src="", sport=None)
    return TracePlan(
        source,
        probe,
        tuple(targets),
        tuple(nft_namespaces),
        timeout_s=timeout,
        backend=backend,
        ready_file=ready_file,
        size=size,
        l2_targets=_bridge_ports(snap, path, seen),
        neighbours=_neighbours(snap, path),
        destination_netns=_destination(path),
    )


def _destination(path: Path) -> int | None:
    """The namespace whose socket the request reaches (after DNAT), else the destination's."""
    sockets = [h for h in path.hops if h.kind == "socket" and h.direction == "request"]
    return sockets[0].netns if sockets else path.destination.netns


def _bridge_ports(snap: Snapshot, path: Path, taps: set[Key]) -> tuple[TraceTarget, ...]:
    """Every port of each bridge on the request's way that is not a tap already: where a
    flooded ARP/NDP solicitation shows (TraceTarget.hop is the bridge's hop)."""
    out: list[TraceTarget] = []
    done = set(taps)
    for h in path.hops:
        if h.kind != "bridge" or h.netns is None or h.direction != "request":
            continue
        ns = snap.ns(h.netns)
        nspath = _netns_path(snap, h.netns)
        link = ns.link(h.interface) if ns and h.interface else None
        if ns is None or nspath is None or link is None:
            continue
        bridge = (
            link
            if link.kind == "bridge"
            else next((b for b in ns.links if b.ifindex == link.master), None)
        )
        if bridge is None:
            continue
        for port in ns.links:
            if port.master == bridge.ifindex and (h.netns, port.name) not in done:
                done.add((h.netns, port.name))
                out.append(
                    TraceTarget(
                        nspath,
                        h.netns,
                        port.name,
                        port.ifindex,
                        f"{h.netns_label} {port.name}",
                        hop=h.index,
                    )
                )
    return tuple(out)


def _neighbours(snap: Snapshot, path: Path) -> tuple[str, ...]:
    """The addresses whose ARP/NDP resolution matters: every address the packet carries on its
    way, and the gateways of the namespaces it crosses."""
    found: dict[str, None] = {}
    for h in path.hops:
        for p in (h.packet,):
            found.setdefault(p.src)
            found.setdefault(p.dst)
    for inode in dict.fromkeys(h.netns for h in path.hops if h.netns is not None):
        ns = snap.ns(inode)
        for r in ns.routes if ns else ():
            if r.gateway:
                found.setdefault(r.gateway)
    return tuple(a for a in found if a)


class PlanOptions(TypedDict, total=False):
    """plan_for's options, as trace_path passes them on."""

    backend: Backend
    timeout: float
    ready_file: str | None
    size: int


@dataclasses.dataclass(frozen=True, slots=True)
class LiveAnswer:
    """A live trace's answer: always a Path; ``problem`` when the environment kept the trace
    from running (the Path is then the prediction, marked "predicted only": exit 3)."""

    path: Path
    timings: dict[str, float]
    problem: CntraceError | None = None


def trace_path(
    snap: Snapshot,
    predicted: Path,
    *,
    pcap: str | None = None,
    notice: Callable[[str], None] | None = None,
    **options: Unpack[PlanOptions],
) -> tuple[Path, dict[str, float]]:
    """Run the live trace for ``predicted`` and return the merged Path and the phase timings."""
    answer = trace_live(snap, predicted, pcap=pcap, notice=notice, **options)
    return answer.path, answer.timings


def trace_live(
    snap: Snapshot,
    predicted: Path,
    *,
    pcap: str | None = None,
    notice: Callable[[str], None] | None = None,
    **options: Unpack[PlanOptions],
) -> LiveAnswer:
    """The live trace of ``predicted``, whatever happens: a probe that could not be built or
    sent, was not seen, or an engine that could not attach all end in a Path."""
    t = time.perf_counter()
    try:
        plan = plan_for(snap, predicted, **options)
    except NothingToTrace as exc:
        return LiveAnswer(predicted_only(predicted, str(exc)), {})
    planned = time.perf_counter() - t
    try:
        result = run_trace(plan, notice=notice)
    except EnvironmentProblem as exc:
        return LiveAnswer(predicted_only(predicted, str(exc)), {"plan": planned}, exc)
    except BadInput as exc:  # the probe cannot be built (no source namespace, no port ...)
        return LiveAnswer(predicted_only(predicted, str(exc)), {"plan": planned})
    if pcap:
        pcapng.write(pcap, result)
    timings = {"plan": planned, **result.timings}
    return LiveAnswer(merge(predicted, result, snap), timings)


def predicted_only(predicted: Path, why: str) -> Path:
    """The prediction as a live document when nothing could be observed: every hop not watched
    (with why), the verdict predicted and saying so."""
    hops = tuple(
        dataclasses.replace(
            h, observed=False, watched=False, evidence=(*h.evidence, f"live: not watched: {why}")
        )
        for h in predicted.hops
    )
    v = predicted.verdict
    verdict = dataclasses.replace(v, summary=f"predicted only ({why}): {v.summary}")
    return dataclasses.replace(
        predicted,
        hops=hops,
        verdict=verdict,
        mode="live",
        stats={"sightings": 0, "drops": 0, "rule_events": 0, "lost_events": 0, "unwatched": 1},
        notes=(*predicted.notes, f"predicted only: nothing was observed ({why})"),
    )


# ---------------------------------------------------------------------- merging


def _key(t: TraceTarget) -> Key:
    return (t.netns_inode, t.ifname)


def _first(sightings: list[Sighting]) -> Sighting | None:
    return min(sightings, key=lambda s: s.t_ns) if sightings else None


def _rule_event_for(h: Hop, events: tuple[RuleEvent, ...]) -> RuleEvent | None:
    if h.rule is None:
        return None
    reply = h.direction == "reply"
    for e in events:
        if e.netns_inode != h.netns or e.is_reply != reply or e.kind != "rule":
            continue
        if e.table != h.rule.table or e.chain != h.rule.chain:
            continue
        if e.position == h.rule.position or (e.rule_text and e.rule_text == h.rule.text):
            return e
    return None


def merge(predicted: Path, result: TraceResult, snap: Snapshot | None = None) -> Path:
    """The predicted Path with every hop marked seen / not seen / not watched (with why), the
    ARP/NDP frames seen at each, and a verdict from what was observed. On a fork (a Service's
    endpoints), the branch the kernel took becomes the path, and is marked chosen."""
    predicted = _taken_branch(predicted, result)
    by_target: dict[tuple[Key, str, bool], list[Sighting]] = {}
    for s in result.sightings:
        by_target.setdefault((_key(s.target), s.direction, s.is_reply), []).append(s)
    unwatched_keys = {
        _key(u.target) for u in result.unwatched if u.target is not None and not u.partial
    }
    # nftables tracing is all or nothing per trace: when any namespace could not be traced, a
    # rule not reported is "not watched" rather than "not passed".
    nftrace_ok = not any(u.what.startswith("nftrace") for u in result.unwatched)

    # The prediction used a stand-in source port; the probe had a real one: show that one.
    stand_in = predicted.hops[0].packet.sport if predicted.hops else None
    real = result.probe.sport if result.probe is not None else None

    hops: list[Hop] = []
    for h in predicted.hops:
        reply = h.direction == "reply"
        changes: dict[str, object] = {}
        if stand_in is not None and real is not None and stand_in != real:
            p = h.packet
            if not reply and p.sport == stand_in:
                changes["packet"] = dataclasses.replace(p, sport=real)
            elif reply and p.dport == stand_in:
                changes["packet"] = dataclasses.replace(p, dport=real)
        if h.tap is not None and h.interface is not None and h.netns is not None:
            key = (h.netns, h.interface)
            seen = _first(by_target.get((key, h.tap, reply), []))
            if seen is not None:
                changes.update(
                    observed=True,
                    t_us=max(0, seen.t_ns // 1000),
                    observed_packet=seen.packet,
                    watched=True,
                )
            elif key in unwatched_keys:
                changes.update(observed=False, watched=False)
            else:
                changes.update(observed=False, watched=True)
        elif h.kind == "netfilter" and h.rule is not None:
            e = _rule_event_for(h, result.rule_events)
            if e is not None:
                # Trace events carry the time they were read, not when the rule ran: no t_us.
                changes.update(observed=True, watched=True)
            else:
                changes.update(observed=False, watched=nftrace_ok)
        hops.append(dataclasses.replace(h, **changes))  # type: ignore[arg-type]

    hops = _infer_untapped(hops, result)
    status, detail = result.outcome()
    verdict, hops, notes = live_verdict(predicted, hops, result, status, detail)
    l2 = observed.neigh_evidence(hops, result)
    hops = [
        dataclasses.replace(
            h,
            evidence=(
                *h.evidence,
                *l2.get(h.index, ()),
                *(observed.unwatched_evidence(h, result.unwatched) if h.watched is False else ()),
            ),
        )
        for h in hops
    ]
    stats = {
        "sightings": len(result.sightings),
        "drops": len(result.drops),
        "rule_events": len(result.rule_events),
        "lost_events": result.lost_events,
        "unwatched": len(result.unwatched),
        "neighbour_frames": len(result.neigh),
        "source_events": len(result.source),
    }
    notes = [
        f"backend: {result.backend}",
        *result.notices,
        *observed.end_notes(result, snap, predicted.source.netns),
        *notes,
        *_wrapped(hops, result),
    ]
    for u in result.unwatched:
        notes.append(f"not watched: {u.what} ({u.why})" + (" [partial]" if u.partial else ""))
    if result.lost_events:
        notes.append(
            f"{result.lost_events} trace events were lost: a hop marked not seen may "
            "have been missed"
        )
    return dataclasses.replace(
        predicted, hops=tuple(hops), verdict=verdict, mode="live", stats=stats, notes=tuple(notes)
    )


def _wrapped(hops: list[Hop], result: TraceResult) -> list[str]:
    """Where the probe was seen, or dropped, inside a VXLAN packet: both packets, named."""
    out = []
    for s in result.sightings:
        if s.inner is None:
            continue
        ns, iface = _key(s.target)
        hop = next(
            (h for h in hops if (h.netns, h.interface, h.tap) == (ns, iface, s.direction)), None
        )
        where = f"hop {hop.index} ({hop.netns_label} {iface} {s.direction})" if hop else iface
        out.append(f"{where}: seen inside VXLAN VNI {s.vni}: outer {s.packet}, inner {s.inner}")
    for d in result.drops:
        if d.inner is not None:
            out.append(
                f"the kernel dropped the VXLAN packet carrying the probe ({d.reason}"
                + (f" in {d.location}" if d.location else "")
                + f"): outer {d.packet}, VNI {d.vni}, inner {d.inner}"
            )
    return out


def _taken_branch(predicted: Path, result: TraceResult) -> Path:
    """The fork's branch the kernel chose, from the rewrite the probe was seen with."""
    if not predicted.branches:
        return predicted
    seen = {
        (s.packet.dst, s.packet.dport)
        for s in result.sightings
        if not s.is_reply and s.direction in ("ingress", "egress")
    }
    taken = None
    for i, b in enumerate(predicted.branches):
        if b.endpoint is None:
            continue
        ip, _, port = b.endpoint.rpartition(":")
        if (ip, int(port)) in seen:
            taken = i
            break
    if taken is None:
        return predicted  # not seen past the DNAT: the observation cannot say
    branches = tuple(
        dataclasses.replace(b, chosen=i == taken) for i, b in enumerate(predicted.branches)
    )
    chosen = branches[taken]
    return dataclasses.replace(
        predicted, hops=chosen.hops, verdict=chosen.verdict, branches=branches
    )


def _infer_untapped(hops: list[Hop], result: TraceResult) -> list[Hop]:
    """Hops no program watches directly (route, nat, socket...) count as passed when the packet
    was seen at a later hop of the same direction (or, for the request's last hop, when a reply
    came back), or reached one where its namespace's kernel solicited the next hop: ARP/NDP is
    sent only for a packet already routed out of that interface and held in its neighbour queue,
    so the route and OUTPUT before it were passed even though the packet itself never left."""
    out = list(hops)
    replied = bool(result.replies)
    solicited = {
        (f.target.netns_inode, f.target.ifname)
        for f in result.neigh
        if f.op == "request" and f.retry_ns > 0 and f.direction == "egress"
    }
    queued = {
        h.index
        for h in out
        if h.tap == "egress" and h.direction == "request" and (h.netns, h.interface) in solicited
    }
    for i, h in enumerate(out):
        if h.observed is not None:
            continue
        same = [x for x in out if x.direction == h.direction]
        later = [x for x in same if x.index > h.index and (x.observed or x.index in queued)]
        tapped_before = [x for x in same if x.index < h.index and x.tap is not None]
        last_of_direction = h.index == same[-1].index
        passed = (
            bool(later)
            or (h.direction == "request" and replied)
            or (last_of_direction and bool(tapped_before) and bool(tapped_before[-1].observed))
        )
        out[i] = dataclasses.replace(h, observed=passed, watched=None)
    return out
