"""Walk a packet through every netfilter back end of one namespace, as the kernel would.

At each hook every base chain of every table (iptables-legacy, iptables-nft, native nftables) runs
in priority order; ``accept`` ends only that base chain, ``drop``/``reject``/``queue`` end the
packet. nat-type chains share one slot per hook (the kernel's nat core sits at -100 for
prerouting/output and 100 for postrouting/input and calls them in their own priority order), run
only for the first packet of a connection, and stop as soon as one of them sets up a binding.
Later packets get the connection's NAT from conntrack instead (``Conntrack``).

A match the evaluator cannot decide (a rate limit, a random choice, a match module it does not
model) is *assumed to hold* and the rule is listed in ``uncertain`` with the reason: the answer is
then one possible outcome, clearly labelled, never a silent guess.
"""

from __future__ import annotations

from collections.abc import Callable

from cntrace.errors import BadInput
from cntrace.model import Packet, RuleRef
from cntrace.netfilter.chains import run_hook
from cntrace.netfilter.model import Netfilter
from cntrace.netfilter.probe import Probe
from cntrace.netfilter.results import Conntrack, HookResult, NetnsFacts, Walk
from cntrace.netfilter.state import State, addr_type, attach_conntrack

_KINDS = ("input", "forward", "output", "local-output")


def evaluate_hook(
    nf: Netfilter,
    hook: str,
    packet: Packet,
    facts: NetnsFacts,
    *,
    iif: str | None,
    oif: str | None,
    ctstate: str = "NEW",
    physdev_in: str | None = None,
    physdev_out: str | None = None,
    ctmark: int = 0,
    conntrack: Conntrack | None = None,
    original: Packet | None = None,
    probe: Probe | None = None,
) -> HookResult:
    """Run one hook for one packet.

    Without ``original`` the connection is fresh (nothing NATed yet). Callers that run the hooks
    of one namespace one by one pass the packet as it was at the first hook: NAT already done
    on the way then shows in conntrack matches (``--ctstate DNAT``, ``ct status dnat``), and a
    hook whose NAT binding is already set up skips its nat chains.
    """
    st = State(nf, packet, facts, ctstate, ctmark, conntrack, physdev_in, physdev_out)
    st.iif, st.oif = iif, oif
    if probe is not None:
        st.probe = probe
    if hook not in ("prerouting", "output") and nf.conntrack_enabled(packet.family):
        attach_conntrack(st)  # conntrack ran at an earlier hook
    if original is not None and conntrack is None:
        st.original = original
        if (original.dst, original.dport) != (packet.dst, packet.dport):
            st.dnat = True
            st.nat_done.add("dst")
        if (original.src, original.sport) != (packet.src, packet.sport):
            st.snat = True
            st.nat_done.add("src")
        if hook in ("postrouting", "input", "forward") and st.ctstate in ("new", "related"):
            st.nat_done.add("dst")  # the destination binding was made at prerouting/output
    return run_hook(st, hook)


def walk(
    nf: Netfilter,
    packet: Packet,
    facts: NetnsFacts,
    *,
    kind: str,
    iif: str | None = None,
    oif: str | None = None,
    route: Callable[[Packet], str | None] | None = None,
    ctstate: str = "NEW",
    ctmark: int = 0,
    conntrack: Conntrack | None = None,
    physdev_in: str | None = None,
    physdev_out: str | None = None,
    probe: Probe | None = None,
) -> Walk:
    """The hooks a packet of this ``kind`` meets, in order, re-routing after DNAT.

    kinds: ``input`` (arrives on ``iif`` for this namespace), ``forward`` (``iif`` -> ``oif``),
    ``output`` (sent from here out of ``oif``), ``local-output`` (sent from here to an address of
    this namespace, over lo). ``route(packet)`` names the output interface for a packet whose
    destination DNAT changed (None: no route). ``conntrack`` (from ``Walk.conntrack()`` of the
    first packet) lets later and reply packets get the connection's NAT.

    Devices are what the kernel passes each hook: prerouting and input see only the input
    device, output only the output device, forward both, postrouting the output device and, for
    forwarded packets, the input device.
    """
    if kind not in _KINDS:
        raise BadInput(f"unknown walk kind {kind!r} (one of {', '.join(_KINDS)})")
    st = State(nf, packet, facts, ctstate, ctmark, conntrack, physdev_in, physdev_out)
    if probe is not None:  # header, socket and clock facts (default: probe.PREDICTED)
        st.probe = probe
    results: list[HookResult] = []
    notes: list[str] = []
    plan = _plan(kind)
    cur = kind
    in_dev = iif if kind in ("input", "forward") else None
    out_dev = oif if kind in ("forward", "output") else ("lo" if kind == "local-output" else None)
    looped = False  # local-output: after postrouting the packet comes back in over lo
    i = 0
    while i < len(plan):
        hook = plan[i]
        if hook == "prerouting" and cur == "local-output":
            in_dev, looped = "lo", True
        if hook in ("prerouting", "input"):
            st.iif, st.oif = in_dev, None
        elif hook == "forward":
            st.iif, st.oif = in_dev, out_dev
        elif hook == "output":
            st.iif, st.oif = None, out_dev
        else:  # postrouting
            st.iif, st.oif = (in_dev if cur == "forward" else None), out_dev
        before = st.packet
        res = run_hook(st, hook)
        results.append(res)
        if res.verdict != "accept":
            break
        moved = (st.packet.dst, st.packet.dport) != (before.dst, before.dport)
        if moved and (hook == "output" or (hook == "prerouting" and not looped)):
            cur, plan, out_dev, note = _reroute(st, route, hook, cur, plan[: i + 1], out_dev)
            notes.append(note)
        i += 1
    last = results[-1]
    deciding = last.deciding
    policy = last.policy
    if last.verdict == "accept":
        deciding, policy = _accepting_rule(results)
    nats = tuple(r.nat for r in results if r.nat is not None)
    uncertain = tuple(u for r in results for u in r.uncertain)
    return Walk(
        kind=cur,
        hooks=tuple(results),
        verdict=last.verdict,
        deciding=deciding,
        packet_before=packet,
        packet_after=st.packet,
        nats=nats,
        uncertain=uncertain,
        iif=iif if kind in ("input", "forward") else None,
        oif=out_dev if cur in ("forward", "output") else None,
        policy=policy,
        notes=tuple(n for n in notes if n),
    )


def _accepting_rule(results: list[HookResult]) -> tuple[RuleRef | None, str | None]:
    """What let an accepted packet through: the last filter-type chain decided by a rule (a NAT
    rule only when no filter rule spoke), else the last hook's policy that applied."""
    fallback: RuleRef | None = None
    for r in reversed(results):
        for v in reversed(r.chains):
            if v.rule is None or v.rule.policy:
                continue
            if v.type != "nat":
                return v.rule, None
            fallback = fallback or v.rule
    if fallback is not None:
        return fallback, None
    for r in reversed(results):
        if r.policy:
            return r.deciding, r.policy
    return None, None


def _plan(kind: str) -> list[str]:
    return {
        "input": ["prerouting", "input"],
        "forward": ["prerouting", "forward", "postrouting"],
        "output": ["output", "postrouting"],
        "local-output": ["output", "postrouting", "prerouting", "input"],
    }[kind]


def is_local(st: State, addr: str) -> bool:
    return addr_type(st, addr, None) == "local"


def _reroute(
    st: State,
    route: Callable[[Packet], str | None] | None,
    hook: str,
    kind: str,
    done: list[str],
    out_dev: str | None,
) -> tuple[str, list[str], str | None, str]:
    """After DNAT at prerouting or output the kernel routes again (at output:
    ip_route_me_harder): the new kind, the plan (``done`` are the hooks run so far), the output
    device and a note."""
    p = st.packet
    local = st.facts.known and is_local(st, p.dst)
    if hook == "prerouting":
        if local:
            return "input", [*done, "input"], None, f"DNAT to {p.dst}: delivered locally"
        plan = [*done, "forward", "postrouting"]
        if route is not None:
            oif = route(p)
            where = f"routed out of {oif}" if oif else "no route known; output interface unknown"
            return "forward", plan, oif, f"DNAT to {p.dst}: {where}"
        if kind == "forward" and out_dev is not None:
            note = f"DNAT to {p.dst}: assumed to leave through {out_dev} (no route lookup given)"
            return "forward", plan, out_dev, note
        return "forward", plan, None, f"DNAT to {p.dst}: no route known; output interface unknown"
    if local:
        plan = [*done, "postrouting", "prerouting", "input"]
        return "local-output", plan, "lo", f"DNAT to {p.dst}: delivered locally over lo"
    oif = route(p) if route is not None else (out_dev if kind == "output" else None)
    where = f"routed out of {oif}" if oif else "output interface unknown"
    return "output", [*done, "postrouting"], oif, f"DNAT to {p.dst}: {where}"
