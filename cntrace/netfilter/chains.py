"""One hook for one packet: its base chains in kernel order, each run rule by rule.

``run_hook`` is where every base chain on a hook, across tables and back ends, runs in priority
order; ``_Hook.run_chain`` follows jumps, gotos and returns; ``_Hook.run_rule`` runs one rule's
steps. A new kind of step gets its case in ``run_rule``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cntrace.errors import BadInput
from cntrace.model import RuleRef
from cntrace.netfilter.matching import match_holds, vmap_verdict
from cntrace.netfilter.model import HOOKS, Chain, Rule, Table
from cntrace.netfilter.nat import DST_HOOKS, apply_nat, conntrack_nat
from cntrace.netfilter.results import ChainVisit, HookResult, Nat
from cntrace.netfilter.state import State
from cntrace.netfilter.steps import (
    MASK32,
    Effect,
    Mangle,
    Match,
    NatSpec,
    Unsupported,
    Verdict,
    VerdictMap,
)

if TYPE_CHECKING:
    from cntrace.netfilter.steps import Step

_CONNTRACK_PRIORITY = -200  # NF_IP_PRI_CONNTRACK: chains before it see no conntrack entry yet
_MAX_DEPTH = 64


class _Hook:
    """Evaluation of one hook: collects matched rules, uncertainty and notes."""

    def __init__(self, st: State, hook: str) -> None:
        self.st = st
        self.hook = hook
        self.matched: list[RuleRef] = []
        self.uncertain: list[tuple[RuleRef, str]] = []
        self.notes: list[str] = []
        self.nat: Nat | None = None
        self.tables = st.nf.table_index()

    def run_chain(self, base: Chain) -> tuple[str, Rule | None]:
        """Run a base chain: (verdict, deciding rule or None for the policy)."""
        table = self.tables.get((base.backend, base.family, base.table))
        stack: list[tuple[Chain, int]] = []
        cur = base
        idx = 0
        while True:
            rules = cur.rules
            if idx >= len(rules):
                if not stack:
                    return (base.policy or "accept"), None
                cur, idx = stack.pop()
                continue
            rule = rules[idx]
            idx += 1
            outcome = self.run_rule(rule, table)
            if outcome is None:
                continue
            kind = outcome.kind
            if kind in ("accept", "drop", "reject", "queue"):
                return kind, rule
            if kind == "continue":
                continue
            if kind == "return":
                if not stack:
                    return (base.policy or "accept"), None
                cur, idx = stack.pop()
                continue
            target = table.chains.get(outcome.target or "") if table is not None else None
            if target is None:
                self.uncertain.append((rule.ref(), f"{kind} to unknown chain {outcome.target}"))
                continue
            if kind == "jump":
                if len(stack) >= _MAX_DEPTH:
                    self.uncertain.append((rule.ref(), "chain jumps nested too deep (a loop?)"))
                    return (base.policy or "accept"), None
                stack.append((cur, idx))
            cur, idx = target, 0

    def run_rule(self, rule: Rule, table: Table | None) -> Verdict | None:
        """Run one rule's steps; the verdict it gives, or None to go on with the next rule."""
        st = self.st
        uncertain: list[str] = []
        verdict: Verdict | None = None
        step: Step
        for step in rule.steps:
            if isinstance(step, Match):
                res = match_holds(st, step, table)
                if res is False:
                    return None
                if res is not True:
                    uncertain.append(str(res))
            elif isinstance(step, Verdict):
                verdict = step
                break
            elif isinstance(step, Effect):
                if step.kind == "notrack" and not st.ct_attached:
                    st.untracked = True
                    st.cache.clear()
            elif isinstance(step, Mangle):
                self.mangle(step)
            elif isinstance(step, NatSpec):
                kind, nat, why = apply_nat(st, step, rule, self.hook)
                if why:
                    uncertain.append(why)
                if nat is not None:
                    self.nat = nat
                verdict = Verdict(kind)
                break
            elif isinstance(step, VerdictMap):
                v, why = vmap_verdict(st, step, table)
                if why:
                    uncertain.append(why)
                if v is None:
                    if why:
                        self.record(rule, uncertain)
                    return None
                verdict = v
                break
            elif isinstance(step, Unsupported):
                uncertain.append(step.reason)
        self.record(rule, uncertain)
        return verdict

    def record(self, rule: Rule, uncertain: list[str]) -> None:
        ref = rule.ref()
        self.matched.append(ref)
        for why in uncertain:
            self.uncertain.append((ref, why))

    def mangle(self, m: Mangle) -> None:
        st = self.st
        old = st.packet.mark if m.dest == "mark" else st.ctmark
        src = 0
        if m.src == "mark":
            src = st.packet.mark
        elif m.src == "ctmark":
            src = st.ctmark
        new = ((old & m.keep) ^ (src & m.src_mask) ^ m.xor) & MASK32
        if m.dest == "mark":
            if new != st.packet.mark:
                st.set_packet(st.packet.rewritten(mark=new))
        else:
            st.ctmark = new
            st.cache.clear()


def run_hook(st: State, hook: str) -> HookResult:
    if hook not in HOOKS:
        raise BadInput(f"unknown hook {hook!r} (one of {', '.join(HOOKS)})")
    h = _Hook(st, hook)
    st.cache.clear()
    manip = "dst" if hook in DST_HOOKS else "src"
    visits: list[ChainVisit] = []
    verdict = "accept"
    deciding: Rule | None = None
    last_rule: Rule | None = None
    last_filter_rule: Rule | None = None
    policy: str | None = None
    new_conn = st.ctstate in ("new", "related")
    conntracked = False
    ct_on = st.nf.conntrack_enabled(st.packet.family)
    for chain in st.nf.base_chains(hook, st.packet.family):
        prio = chain.priority if chain.priority is not None else 0
        ctype = chain.type or "filter"
        if not conntracked and prio > _CONNTRACK_PRIORITY:
            conntracked = True
            if not st.untracked and ct_on:
                st.ct_attached = True
                st.cache.clear()
        skip = None
        if ctype == "nat":
            if not ct_on:
                skip = "no rule enables connection tracking here, so nat chains do not run"
            elif st.untracked:
                skip = "untracked packets are not NATed"
            elif not new_conn:
                skip = "nat chains see only the first packet of a connection"
            elif manip in st.nat_done:
                skip = "NAT for this connection is already set up"
        if skip:
            visits.append(_visit(chain, None, None, skip))
            continue
        first = len(h.matched)
        v, rule = h.run_chain(chain)
        visits.append(_visit(chain, v, rule.ref() if rule else None, None, h.matched[first:]))
        if rule is not None:
            last_rule = rule
            if ctype != "nat":
                last_filter_rule = rule
        if v != "accept":
            verdict = v
            deciding = rule
            if rule is None:
                policy = f"{chain.label} policy {v}"
            break
        if rule is None and chain.policy == "accept" and chain.rules:
            policy = f"{chain.label} policy accept"
    if not conntracked and not st.untracked and ct_on:
        st.ct_attached = True
    if verdict == "accept":
        deciding = last_rule
        if last_filter_rule is not None:
            deciding = last_filter_rule
        if deciding is not None:
            policy = None
        # Any nat slot pass sets up a (possibly null) binding for its manip type.
        if hook != "forward" and new_conn and not st.untracked and ct_on:
            st.nat_done.add(manip)
        if hook != "forward" and not new_conn and st.conntrack is not None and h.nat is None:
            h.nat = conntrack_nat(st, hook)
    return HookResult(
        hook=hook,
        verdict=verdict,
        packet=st.packet,
        matched=tuple(h.matched),
        deciding=deciding.ref() if deciding else None,
        policy=policy,
        nat=h.nat,
        uncertain=tuple(h.uncertain),
        chains=tuple(visits),
        iif=st.iif,
        oif=st.oif,
        notes=tuple(h.notes),
    )


def _visit(
    chain: Chain,
    verdict: str | None,
    rule: RuleRef | None,
    skipped: str | None,
    matched: list[RuleRef] | None = None,
) -> ChainVisit:
    return ChainVisit(
        backend=chain.backend,
        family=chain.family,
        table=chain.table,
        chain=chain.name,
        priority=chain.priority if chain.priority is not None else 0,
        type=chain.type or "filter",
        verdict=verdict,
        rule=rule,
        skipped=skipped,
        matched=tuple(matched or ()),
    )
