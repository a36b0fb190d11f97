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
import errno
import os
import time
from collections.abc import Callable
from typing import TypedDict, Unpack

from cntrace.errors import BadInput, EnvironmentProblem
from cntrace.model import Hop, Path, RuleRef, Snapshot, Verdict
from cntrace.trace import pcapng
from cntrace.trace.events import Backend, RuleEvent, Sighting, TracePlan, TraceResult, TraceTarget
from cntrace.trace.session import run_trace

Key = tuple[int, str]  # (netns inode, interface name)


def _netns_path(snap: Snapshot, inode: int | None) -> str | None:
    ns = snap.ns(inode)
    if ns is None or not ns.paths:
        return None
    named = [p for p in ns.paths if p.startswith("/run/netns/")]
    return (named or list(ns.paths))[0]


def plan_for(
    snap: Snapshot,
    path: Path,
    *,
    backend: Backend = "auto",
    timeout: float = 1.0,
    ready_file: str | None = None,
    size: int = 0,
) -> TracePlan:
    """The trace that watches every tap of the predicted path, request first, then reply."""
    if not path.hops:
        raise BadInput(f"nothing to trace: {path.verdict.summary}")
    source = _netns_path(snap, path.source.netns)
    if source is None:
        raise BadInput("cannot enter the source's namespace (it has no path cntrace can open)")
    targets: list[TraceTarget] = []
    seen: set[Key] = set()
    for h in sorted(path.hops, key=lambda h: h.direction != "request"):
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
    )


class PlanOptions(TypedDict, total=False):
    """plan_for's options, as trace_path passes them on."""

    backend: Backend
    timeout: float
    ready_file: str | None
    size: int


def trace_path(
    snap: Snapshot,
    predicted: Path,
    *,
    pcap: str | None = None,
    notice: Callable[[str], None] | None = None,
    **options: Unpack[PlanOptions],
) -> tuple[Path, dict[str, float]]:
    """Run the live trace for ``predicted`` and return the merged Path and the phase timings."""
    t = time.perf_counter()
    plan = plan_for(snap, predicted, **options)
    planned = time.perf_counter() - t
    try:
        result = run_trace(plan, notice=notice)
    except (EnvironmentProblem, BadInput) as exc:  # the kernel refused to send it: observed
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return _unsendable(predicted, cause), {"plan": planned}
        raise
    if pcap:
        pcapng.write(pcap, result)
    timings = {"plan": planned, **result.timings}
    return merge(predicted, result), timings


def _unsendable(predicted: Path, cause: OSError) -> Path:
    """The source's kernel refused to send the probe at all: that is the observation."""
    why = os.strerror(cause.errno or 0)
    first = dataclasses.replace(
        predicted.hops[0],
        observed=False,
        watched=True,
        ok=False,
        reason=errno.errorcode.get(cause.errno or 0),
    )
    hops = (
        first,
        *(dataclasses.replace(h, observed=False, watched=True) for h in predicted.hops[1:]),
    )
    status = "no-route" if cause.errno == errno.ENETUNREACH else "unreachable"
    notes = (
        ()
        if predicted.verdict.status == status
        else (
            f"observation disagrees with the prediction: predicted "
            f"{predicted.verdict.status.upper()}, observed {status.upper()}",
        )
    )
    verdict = Verdict(
        status,
        1,
        f"the source's kernel refuses to send: {why}",
        errno.errorcode.get(cause.errno or 0),
    )
    return dataclasses.replace(predicted, hops=hops, verdict=verdict, mode="live", notes=notes)


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


def _ruleref(e: RuleEvent) -> RuleRef | None:
    if e.kind != "rule" or e.position is None:
        return None
    text = e.rule_text or ""
    backend = "iptables-nft" if text.startswith("-A ") else "nftables"
    return RuleRef(
        backend=backend,
        table=e.table,
        chain=e.chain,
        position=e.position,
        text=text,
        handle=e.handle,
        family=e.family,
        verdict=e.verdict,
    )


def merge(predicted: Path, result: TraceResult) -> Path:
    """The predicted Path with every hop marked seen / not seen / not watched, and a verdict
    from what was observed."""
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
    verdict, hops, notes = _verdict(predicted, hops, result, status, detail)
    stats = {
        "sightings": len(result.sightings),
        "drops": len(result.drops),
        "rule_events": len(result.rule_events),
        "lost_events": result.lost_events,
        "unwatched": len(result.unwatched),
    }
    notes = [f"backend: {result.backend}", *result.notices, *notes]
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


def _infer_untapped(hops: list[Hop], result: TraceResult) -> list[Hop]:
    """Hops no program watches directly (route, nat, socket...) count as passed when the packet
    was seen at a later hop of the same direction (or, for the request's last hop, when a reply
    came back)."""
    out = list(hops)
    replied = bool(result.replies)
    for i, h in enumerate(out):
        if h.observed is not None:
            continue
        same = [x for x in out if x.direction == h.direction]
        later = [x for x in same if x.index > h.index and x.observed]
        tapped_before = [x for x in same if x.index < h.index and x.tap is not None]
        last_of_direction = h.index == same[-1].index
        passed = (
            bool(later)
            or (h.direction == "request" and replied)
            or (last_of_direction and bool(tapped_before) and bool(tapped_before[-1].observed))
        )
        out[i] = dataclasses.replace(h, observed=passed, watched=None)
    return out


def _verdict(
    predicted: Path, hops: list[Hop], result: TraceResult, status: str, detail: str
) -> tuple[Verdict, list[Hop], list[str]]:
    """The observed verdict, the hop it happened at, and notes where it departs from the
    prediction."""
    p = predicted.verdict
    request = [h for h in hops if h.direction == "request"]
    drop = result.request_drop if status in ("dropped", "refused") else None
    last_seen = max((h.index for h in hops if h.observed and h.tap), default=0)
    rule: RuleRef | None = None
    at: Hop | None
    if status == "dropped":
        # In the drop's namespace, after the last hop where the probe was seen; the predicted
        # failing hop when it is one of those.
        after = [h for h in request if h.index > last_seen]
        if drop is not None and drop.netns_inode is not None:
            after = [h for h in after if h.netns == drop.netns_inode] or after
        kind = _kind_of(drop.location if drop is not None else None)
        by_kind = [h for h in after if h.kind == kind] if kind else []
        at = _pick(by_kind, None) or _pick(after, p.at_hop) or (request[-1] if request else None)
        rule = next(
            (
                _ruleref(e)
                for e in result.rule_events
                if not e.is_reply and (e.verdict or "").startswith("drop")
            ),
            None,
        )
    elif status in ("refused", "delivered"):
        at = next((h for h in request if h.kind == "socket"), request[-1] if request else None)
    else:  # timeout, unreachable: the predicted hop beyond the last sighting, else the next
        # watched hop (where the trail goes cold), else the last sighting itself
        after = [h for h in hops if h.index > last_seen]
        at = next((h for h in after if h.index == p.at_hop), None) or _pick(
            [h for h in after if h.tap and h.watched], None
        )
        if at is None:
            at = next((h for h in hops if h.index == last_seen), None)
    reason = drop.reason if drop is not None else None
    location = drop.location if drop is not None else None
    if at is not None and status != "delivered":
        failed = {"ok": False, "observed": False} if status == "dropped" else {}
        hops = [
            dataclasses.replace(h, reason=reason, location=location, **failed)  # type: ignore[arg-type]
            if h.index == at.index
            else h
            for h in hops
        ]
    where = f" in {at.netns_label}" if at is not None else ""
    summary = {
        "delivered": f"delivered: {detail}",
        "refused": f"refused{where}: {detail}",
        "dropped": f"dropped{where} by the kernel"
        + (f" ({reason}" + (f" in {location}" if location else "") + ")" if reason else "")
        + (f", rule {rule.table}/{rule.chain} #{rule.position}" if rule else ""),
        "unreachable": f"unreachable: {detail}",
        "timeout": f"no answer within the timeout: {detail}",
    }.get(status, detail)

    notes: list[str] = []
    predicted_ns = hops[p.at_hop - 1].netns if p.at_hop else None
    same_end = status == p.status or (
        {status, p.status} <= {"dropped", "timeout", "unreachable"}
        and at is not None
        and at.netns == predicted_ns
    )
    agrees = same_end and (p.at_hop is None or at is None or at.index == p.at_hop)
    if not agrees:
        notes.append(
            f"observation disagrees with the prediction: predicted {p.status.upper()}"
            + (f" at hop {p.at_hop}" if p.at_hop else "")
            + f", observed {status.upper()}"
            + (f" at hop {at.index}" if at else "")
        )
    for h in hops:
        if (
            h.tap
            and h.watched
            and h.observed is False
            and h.ok
            and (at is None or h.index < at.index)
        ):
            notes.append(
                f"hop {h.index} ({h.netns_label} {h.interface} {h.tap}) was predicted but not seen"
            )
    verdict = Verdict(
        status,
        at.index if at else None,
        summary,
        reason or (p.reason if agrees else None),
        rule or (p.rule if agrees else None),
    )
    return verdict, hops, notes


def _pick(hops: list[Hop], index: int | None) -> Hop | None:
    """The hop with ``index`` if present, else the first one."""
    for h in hops:
        if h.index == index:
            return h
    return hops[0] if hops else None


# Which kind of hop a kernel function that freed the packet belongs to.
_LOCATION_KINDS = (
    (("br_", "nbp_"), "bridge"),
    (("nf_", "nft_", "ipt_", "ip6t_", "xt_"), "netfilter"),
    (("ip_", "ip6_", "fib", "ipv6_", "icmp_"), "route"),
    (("tcp_", "udp_", "raw_", "inet_"), "socket"),
    (("veth_", "__dev_forward", "dev_forward", "netif_"), "veth"),
)


def _kind_of(location: str | None) -> str | None:
    if not location:
        return None
    for prefixes, kind in _LOCATION_KINDS:
        if location.startswith(prefixes):
            return kind
    return None
