"""The netfilter hop: one hook of one namespace evaluated on the walk's packet.

A hook accepts (a hop when a rule decided it), rewrites (a ``nat`` hop, remembered so the reply can
undo it) or drops (a failing hop through Walk.fail). Which finding explains a drop depends on where
the walk is, so the caller asks cntrace.path.diagnose for it.
"""

from __future__ import annotations

from cntrace import netfilter
from cntrace.model import Netns, Packet, RuleRef
from cntrace.path import diagnose, kube
from cntrace.path.walk import End, Nat, Walk


def run(
    w: Walk,
    ns: Netns,
    hook: str,
    packet: Packet,
    *,
    iif: str | None,
    oif: str | None,
    physdev_in: str | None = None,
    physdev_out: str | None = None,
) -> tuple[Packet, End | None]:
    """Run one netfilter hook; returns (the packet after NAT, the End if it is dropped)."""
    if ns.ruleset.empty:
        return packet, None
    nf = w.netfilter(ns)
    facts = w.facts.get(ns.inode)
    if facts is None:  # a host with 1,000 veths: worth building once per walk
        facts = w.facts[ns.inode] = netfilter.facts_for(ns)
    # The packet as it entered this namespace's hooks: NAT done at an earlier hook then shows
    # in conntrack matches (--ctstate DNAT, ct status dnat), as in the kernel.
    original = w.entries.setdefault((w.direction, ns.inode), packet)
    res = netfilter.evaluate_hook(
        nf,
        hook,
        packet,
        facts,
        iif=iif,
        oif=oif,
        ctstate="NEW" if w.request else "ESTABLISHED",
        physdev_in=physdev_in,
        physdev_out=physdev_out,
        original=original,
    )
    for ref, why in res.uncertain:
        if kube.is_random(nf, ref):  # a random choice: the predictor forks the walk there
            if w.request and (ns.inode, hook, ref) not in w.choices:
                w.choices.append((ns.inode, hook, ref))
            continue
        diagnose.rule_uncertain(w, ns, hook, ref, why)
    where = "bridged " if physdev_in else ""
    if res.verdict in ("drop", "reject"):
        rule = res.deciding
        return packet, w.fail(
            "netfilter",
            ns,
            iif or oif,
            packet,
            f"{where}{hook.upper()}: {res.verdict.upper()} by {rule_name(rule, hook)}",
            why=f"dropped by netfilter in {w.label(ns)} ({hook.upper()})",
            reason="NETFILTER_DROP",
            status="refused" if res.verdict == "reject" else "dropped",
            rule=rule,
            evidence=[_evidence(rule) if rule else f"policy of {hook.upper()}", *_passed(res)],
        )
    after = res.packet
    nat = res.nat if after != packet and w.request else None
    decided = res.deciding
    if ((decided is not None and not decided.policy) or res.matched) and nat is None:
        w.hop(
            "netfilter",
            ns,
            iif or oif,
            packet,
            f"{where}{hook.upper()}: ACCEPT by {rule_name(decided, hook)}",
            rule=decided,
            evidence=[_evidence(decided)] if decided else [],
        )
    if nat is None:
        return after, None
    kind = "dnat" if (after.dst, after.dport) != (packet.dst, packet.dport) else "snat"
    what = (
        f"{packet.dst}:{packet.dport} -> {after.dst}:{after.dport}"
        if kind == "dnat"
        else f"{packet.src}:{packet.sport} -> {after.src}:{after.sport}"
    )
    w.hop(
        "nat",
        ns,
        oif or iif,
        after,
        f"{nat.kind.upper()} {what} ({hook.upper()})",
        rule=nat.rule,
        evidence=[nat.rule.text] if nat.rule else [],
    )
    w.nats.append(Nat(ns.inode, kind, packet, after, nat.rule))
    return after, None


def rule_name(rule: RuleRef | None, hook: str) -> str:
    """The decision in a hop's summary: ``filter/FORWARD rule 3``, or a policy with its back end,
    family, table and chain (two firewalls on one hook each have a policy)."""
    if rule is None:
        return f"the {hook.upper()} policy"
    if rule.policy:
        return rule.name
    return f"{rule.table}/{rule.chain} rule {rule.position}"


def _evidence(rule: RuleRef) -> str:
    """A rule's text; a policy named in full (its text alone, ``policy drop``, says too little)."""
    return rule.name if rule.policy else rule.text


def _passed(res: netfilter.HookResult) -> list[str]:
    """The base chains on this hook that accepted before the one that dropped: with several
    firewalls on one hook an accept ends only its own chain, and the user must see both."""
    out = []
    for v in res.chains:
        if v.verdict != "accept" or v.rule is None or v.type == "nat":
            continue
        if not v.rule.policy or v.matched:  # an empty chain's accept policy says nothing
            r = v.rule
            by = r.text if r.policy else f"{r.chain} rule {r.position}: {r.text}"
            out.append(
                f"{v.backend} {v.family} {v.table} {v.chain} (priority {v.priority}) accepted "
                f"it first ({by}); an accept ends only its own base chain"
            )
    return out
