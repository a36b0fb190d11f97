"""A netfilter decision in words, for findings: the policy that dropped, the chains that accepted
before it on the same hook, and a fix with the tool of the deciding chain's back end.

Several firewalls can share a hook (a native ``table inet filter`` next to Docker's iptables-nft
rules); an accept ends only its own base chain, so the blame and the fix name the back end, family,
table and chain that decided, never another one on the hook.
"""

from __future__ import annotations

from cntrace.model import Packet, RuleRef
from cntrace.path.walk import End, Walk


def policy_text(rule: RuleRef) -> str:
    """``nftables inet filter forward (hook forward, priority 0): policy drop``."""
    return f"{rule.where} (hook {rule.hook}, priority {rule.priority}): {rule.text}"


def passed(w: Walk, end: End) -> list[str]:
    """What the failing netfilter hop says beyond the decision: the chains that accepted first."""
    if end.hop is None or not 0 < end.hop <= len(w.hops):
        return []
    return list(w.hops[end.hop - 1].evidence[1:])


def policy_fix(
    rule: RuleRef, packet: Packet | None, iif: str | None, oif: str | None, *, request: bool = True
) -> str:
    """Accept rules appended to the chain whose policy dropped (they are reached: no rule there
    decided), with the tool of that chain's back end; or the policy changed.

    A forward chain sees both directions, so its fix also accepts replies (conntrack); a reply
    dropped at input or output needs only that, never a rule for its ephemeral port.
    """
    hook = rule.hook or ""
    iif = iif if hook in ("prerouting", "input", "forward") else None
    oif = oif if hook in ("forward", "output", "postrouting") else None
    port = packet is not None and packet.proto in ("tcp", "udp") and packet.dport is not None
    replies = hook == "forward" or not request
    if rule.backend == "nftables":
        where = f"{rule.family} {rule.table} {rule.chain}"
        cmds = [f"nft add rule {where} ct state established,related accept"] if replies else []
        if request:
            parts = [f"iifname {iif}"] if iif else []
            if oif:
                parts.append(f"oifname {oif}")
            if packet is not None:
                parts.append(f"{'ip6' if packet.family == 6 else 'ip'} daddr {packet.dst}")
                if port:
                    parts.append(f"{packet.proto} dport {packet.dport}")
            cmds.append(f"nft add rule {where} {' '.join([*parts, 'accept'])}")
        return (
            f"accept this traffic in nftables {where} (its policy drops): {' && '.join(cmds)}; "
            f"or change its policy: nft chain {where} '{{ policy accept; }}'"
        )
    v6 = rule.family == "ip6" or (packet is not None and packet.family == 6)
    tool = ("ip6tables" if v6 else "iptables") + (
        "-legacy" if rule.backend == "iptables-legacy" else "-nft"
    )
    head = [tool, *([] if rule.table == "filter" else ["-t", rule.table]), "-A", rule.chain]
    ct = "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    cmds = [" ".join([*head, ct])] if replies else []
    if request:
        args = list(head)
        if iif:
            args += ["-i", iif]
        if oif:
            args += ["-o", oif]
        if packet is not None:
            args += ["-d", packet.dst]
            if port:
                args += ["-p", packet.proto, "--dport", str(packet.dport)]
        cmds.append(" ".join([*args, "-j", "ACCEPT"]))
    return f"accept this traffic in {rule.where} (its policy drops): {' && '.join(cmds)}"


def policy_blame(rule: RuleRef) -> str:
    return (
        f"the policy of {rule.where} (hook {rule.hook}, priority {rule.priority}) is "
        f"{rule.verdict} and none of its rules accepts it"
    )


def devices(w: Walk, end: End) -> tuple[str | None, str | None]:
    """The failing hop's devices: a netfilter hop names one (input or output)."""
    if end.hop is None or not 0 < end.hop <= len(w.hops):
        return None, None
    dev = w.hops[end.hop - 1].interface
    hook = end.rule.hook if end.rule is not None else None
    return (dev, None) if hook in ("prerouting", "input") else (None, dev)
