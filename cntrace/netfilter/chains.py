"""One hook for one packet: its base chains in kernel order, each run rule by rule.

``run_hook`` is where every base chain on a hook, across tables and back ends, runs in priority
order; ``_Hook.run_chain`` follows jumps, gotos and returns; ``_Hook.run_rule`` runs one rule's
steps. A new kind of step gets its case in ``run_rule``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from cntrace.errors import BadInput
from cntrace.model import RuleRef
from cntrace.netfilter.matching import match_holds, vmap_verdict
from cntrace.netfilter.model import HOOKS, Chain, Rule, Table
from cntrace.netfilter.nat import DST_HOOKS, apply_nat, conntrack_nat
from cntrace.netfilter.nft_maps import lookup
from cntrace.netfilter.results import ChainVisit, HookResult, Nat
from cntrace.netfilter.state import State, attach_conntrack
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
_MAX_DEPTH = 64  # nested jumps; generous (nf_tables refuses more than 16 at load time)
_MAX_STEPS = 100_000  # rule evaluations in one base chain: far beyond any real ruleset's walk


def _priority(chain: Chain) -> int:
    return chain.priority if chain.priority is not None else 0


def policy_ref(chain: Chain, verdict: str | None = None) -> RuleRef:
    """A base chain's policy as a decision: ``policy drop`` with the policy's counters."""
    verdict = verdict or chain.policy or "accept"
    return RuleRef(
        backend=chain.backend,
        table=chain.table,
        chain=chain.name,
        position=None,
        text=f"policy {verdict}",
        family=chain.family,
        verdict=verdict,
        counters=chain.counters,
        hook=chain.hook,
        priority=_priority(chain),
        policy=True,
    )


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

    def run_chain(self, base: Chain) -> tuple[str, RuleRef]:
        """Run a base chain: its verdict and what decided it (a rule, or the chain's policy),
        named with the base chain's hook and priority.

        Chains entered by jump or goto since the base chain are kept on ``path``: a jump or goto
        back into one of them is a loop, which the kernel refuses at load time but a recorded or
        hand-written snapshot can hold. It is reported as uncertain and not taken, and a budget
        on rule evaluations bounds whatever else could run away, so a walk always ends.
        """
        table = self.tables.get((base.backend, base.family, base.table))
        stack: list[tuple[Chain, int, int]] = []  # (chain, next index, len(path)) to return to
        path: list[Chain] = [base]
        cur = base
        idx = 0
        budget = _MAX_STEPS
        while True:
            rules = cur.rules
            if idx >= len(rules):
                if not stack:
                    return self.policy(base)
                cur, idx, depth = stack.pop()
                del path[depth:]
                continue
            rule = rules[idx]
            idx += 1
            budget -= 1
            if budget < 0:
                self.uncertain.append((rule.ref(), f"evaluation stopped after {_MAX_STEPS} rules"))
                return self.policy(base)
            outcome = self.run_rule(rule, table)
            if outcome is None:
                continue
            kind = outcome.kind
            if kind in ("accept", "drop", "reject", "queue"):
                return kind, self.located(rule.ref(), base)
            if kind == "continue":
                continue
            if kind == "return":
                if not stack:
                    return self.policy(base)
                cur, idx, depth = stack.pop()
                del path[depth:]
                continue
            target = table.chains.get(outcome.target or "") if table is not None else None
            if target is None:
                self.uncertain.append((rule.ref(), f"{kind} to unknown chain {outcome.target}"))
                continue
            if any(c is target for c in path):
                loop = " -> ".join(c.name for c in path[[id(c) for c in path].index(id(target)) :])
                self.uncertain.append(
                    (
                        rule.ref(),
                        f"{kind} {target.name} loops ({loop} -> {target.name}); the kernel "
                        "refuses such a ruleset, so the walk does not take it",
                    )
                )
                continue
            if kind == "jump":
                if len(stack) >= _MAX_DEPTH:
                    self.uncertain.append((rule.ref(), "chain jumps nested too deep"))
                    return self.policy(base)
                stack.append((cur, idx, len(path)))
            path.append(target)
            cur, idx = target, 0

    def policy(self, base: Chain) -> tuple[str, RuleRef]:
        verdict = base.policy or "accept"
        return verdict, policy_ref(base, verdict)

    @staticmethod
    def located(ref: RuleRef, base: Chain) -> RuleRef:
        """``ref`` with the hook and priority of the base chain it was reached from."""
        return replace(ref, hook=base.hook, priority=_priority(base))

    def run_rule(self, rule: Rule, table: Table | None) -> Verdict | None:
        """Run one rule's steps; the verdict it gives, or None to go on with the next rule."""
        st = self.st
        st.rule = rule  # stateful matches read its counters and earlier matches
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
                done = apply_mangle(st, step, table)
                if done is False:
                    return None  # the map has no element for this packet: NFT_BREAK
                if done is not True:
                    uncertain.append(done)
            elif isinstance(step, NatSpec):
                kind, nat, why = apply_nat(st, step, rule, self.hook, table)
                if why:
                    uncertain.append(why)
                if kind == "break":
                    if why:
                        self.record(rule, uncertain)
                    return None
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


def apply_mangle(st: State, m: Mangle, table: Table | None) -> bool | str:
    """Set the mark or conntrack mark: True, False when a map lookup misses (the rule ends), or
    the reason the new value is not known (the mark is left as it was)."""
    old = st.packet.mark if m.dest == "mark" else st.ctmark
    src = 0
    if m.value is not None:
        found, why = lookup(st, m.value, table.sets if table is not None else None)
        if found is None:
            return why or False
        src = found[0].lo if isinstance(found[0].lo, int) else 0
        new = src & MASK32
    else:
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
    return True


def run_hook(st: State, hook: str) -> HookResult:
    if hook not in HOOKS:
        raise BadInput(f"unknown hook {hook!r} (one of {', '.join(HOOKS)})")
    h = _Hook(st, hook)
    st.cache.clear()
    manip = "dst" if hook in DST_HOOKS else "src"
    visits: list[ChainVisit] = []
    verdict = "accept"
    deciding: RuleRef | None = None
    last_rule: RuleRef | None = None
    last_filter_rule: RuleRef | None = None
    last_policy: RuleRef | None = None  # of a chain with rules: it had something to say
    any_policy: RuleRef | None = None
    new_conn = st.ctstate in ("new", "related")
    conntracked = False
    ct_on = st.nf.conntrack_enabled(st.packet.family)
    for chain in st.nf.base_chains(hook, st.packet.family):
        prio = _priority(chain)
        ctype = chain.type or "filter"
        if not conntracked and prio > _CONNTRACK_PRIORITY:
            conntracked = True
            if not st.untracked and ct_on:
                attach_conntrack(st)
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
        v, ref = h.run_chain(chain)
        visits.append(_visit(chain, v, ref, None, h.matched[first:]))
        if v != "accept":
            verdict = v
            deciding = ref
            break
        if ref.policy:
            any_policy = ref
            if chain.rules:
                last_policy = ref
        else:
            last_rule = ref
            if ctype != "nat":
                last_filter_rule = ref
    if not conntracked and not st.untracked and ct_on:
        attach_conntrack(st)
    if verdict == "accept":
        deciding = last_filter_rule or last_rule or last_policy or any_policy
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
        deciding=deciding,
        policy=_policy_text(deciding),
        nat=h.nat,
        uncertain=tuple(h.uncertain),
        chains=tuple(visits),
        iif=st.iif,
        oif=st.oif,
        notes=tuple(h.notes),
    )


def _policy_text(ref: RuleRef | None) -> str | None:
    """The policy that decided, as one string (``iptables-nft ip filter FORWARD policy drop``)."""
    return ref.name if ref is not None and ref.policy else None


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
