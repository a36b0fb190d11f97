"""The verdict of a live trace: from what was observed, at the hop where it happened.

live.merge has marked the hops; this picks the hop the observation points at (the drop's hop
kind from the freeing function, the source's hop for a refused send, the hop past the last
sighting for a trail gone cold), writes the summary, and says where it departs from the
prediction.
"""

from __future__ import annotations

import dataclasses

from cntrace.model import Hop, Path, RuleRef, Verdict
from cntrace.trace.events import RuleEvent, TraceResult

_IPTABLES_BUILTIN = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")


def _ruleref(e: RuleEvent) -> RuleRef | None:
    if e.kind == "policy" and e.verdict in ("accept", "drop"):
        # nftables tracing names no back end; iptables-nft's chains are its built-in names.
        ipt = e.chain in _IPTABLES_BUILTIN and e.family in ("ip", "ip6")
        return RuleRef(
            backend="iptables-nft" if ipt else "nftables",
            table=e.table,
            chain=e.chain,
            position=None,
            text=f"policy {e.verdict}",
            family=e.family,
            verdict=e.verdict,
            policy=True,
        )
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


def live_verdict(
    predicted: Path, hops: list[Hop], result: TraceResult, status: str, detail: str
) -> tuple[Verdict, list[Hop], list[str]]:
    """The observed verdict, the hop it happened at, and notes where it departs from the
    prediction."""
    p = predicted.verdict
    request = [h for h in hops if h.direction == "request"]
    drop = result.request_drop if status in ("dropped", "refused", "unreachable") else None
    sent = result.send_error
    last_seen = max((h.index for h in hops if h.observed and h.tap), default=0)
    rule: RuleRef | None = None
    at: Hop | None
    if sent is not None:
        at = _send_error_hop(predicted, request, sent.errno or "")
        if status == "dropped":
            rule = next(
                (
                    _ruleref(e)
                    for e in result.rule_events
                    if not e.is_reply and (e.verdict or "").startswith("drop")
                ),
                None,
            )
    elif status == "dropped":
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
    reason = drop.reason if drop is not None else (sent.errno if sent is not None else None)
    location = drop.location if drop is not None else None
    if at is not None and status != "delivered":
        failed = {"ok": False, "observed": False} if status == "dropped" or sent is not None else {}
        hops = [
            dataclasses.replace(h, reason=reason, location=location, **failed)  # type: ignore[arg-type]
            if h.index == at.index
            else h
            for h in hops
        ]
    where = f" in {at.netns_label}" if at is not None else ""
    if sent is not None:  # the source's kernel refused it: its words are the summary
        ruled = f", {_named(rule)}" if rule else ""
        summary = f"{status.replace('-', ' ')}{where}: {detail}{ruled}"
    else:
        summary = {
            "delivered": f"delivered: {detail}",
            "refused": f"refused{where}: {detail}",
            "dropped": f"dropped{where} by the kernel"
            + (f" ({reason}" + (f" in {location}" if location else "") + ")" if reason else "")
            + (f", {_named(rule)}" if rule else ""),
            "unreachable": f"unreachable: {detail}",
            "no-route": f"no route: {detail}",
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
    waiting = result.unanswered() if status == "unreachable" else []
    for f in waiting:
        notes.append(
            f"the probe waited in {f.target.name}'s neighbour queue for {f.target_ip}: "
            "it never left that namespace"
        )
    for h in hops:
        if (
            h.tap
            and h.watched
            and h.observed is False
            and h.ok
            and (at is None or h.index < at.index)
            and not waiting
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


def _send_error_hop(predicted: Path, request: list[Hop], err: str) -> Hop | None:
    """Where a refused send happened: in the source's namespace, the netfilter hop (EPERM), the
    routing decision (no route), the interface (EMSGSIZE), the socket (ECONNREFUSED)."""
    if err == "ECONNREFUSED":
        return next((h for h in request if h.kind == "socket"), request[-1] if request else None)
    home = [h for h in request if h.netns == predicted.source.netns] or request[:1]
    kind = {"EPERM": "netfilter", "EMSGSIZE": "interface"}.get(err, "route")
    failing = [h for h in home if h.kind == kind and not h.ok]
    of_kind = [h for h in home if h.kind == kind]
    return next(iter(failing or of_kind or home[-1:]), None)


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


def _named(rule: RuleRef) -> str:
    return rule.name if rule.policy else f"rule {rule.name}"
