"""The families below and beside IP: bridge, netdev (with inet ingress) and arp base chains.

The ip/ip6/inet hooks (chains.run_hook) see routed packets. Three more families see frames:

- ``netdev`` (and ``inet`` chains on the ingress hook) chains are bound to devices: ``ingress``
  runs when a frame enters its device, before the bridge and the IP hooks; ``egress`` when it
  leaves, after them. The kernel keeps one list per device, ordered by priority.
- ``bridge`` chains (prerouting, input, forward, output, postrouting) run while a Linux bridge
  handles the frame. br_netfilter, when on, hooks the same bridge hooks to call the IP hooks for
  bridged IP traffic: at prerouting with priority NF_BR_PRI_BRNF (0), at forward at -1, and at
  postrouting last. ``BRNF_PRIORITY`` holds those; a caller splits the bridge chains around them.
- ``arp`` chains (input, output) see the ARP packets of neighbour resolution. An ARP packet is a
  Packet with proto ``arp``, ``src``/``dst`` the sender and target addresses; the operation and
  the MACs are State extras.

Every chain is of type filter (no NAT here); the decision is named like any other hook's.
"""

from __future__ import annotations

import json
import re

from cntrace.model import Packet, RuleRef
from cntrace.netfilter.chains import _Hook
from cntrace.netfilter.model import Chain, Netfilter
from cntrace.netfilter.results import ChainVisit, HookResult, NetnsFacts
from cntrace.netfilter.state import State

LAST = 2**31 - 1  # NF_BR_PRI_LAST
# Where br_netfilter calls the IP hooks from the bridge hooks (net/bridge/br_netfilter_hooks.c).
BRNF_PRIORITY = {"prerouting": 0, "forward": -1, "postrouting": LAST}
BRIDGE_HOOKS = ("prerouting", "input", "forward", "output", "postrouting")
ARP_REQUEST, ARP_REPLY = 1, 2


def family_chains(
    nf: Netfilter, family: str, hook: str, device: str | None = None
) -> tuple[Chain, ...]:
    """The base chains of ``family`` on ``hook`` (for netdev: bound to ``device``), in kernel
    order: by priority; at equal priority the chain registered last runs first (table handle,
    then chain handle, as base_chains estimates it)."""
    families = ("netdev", "inet") if family == "netdev" else (family,)
    found: list[tuple[tuple[int, int, int], Chain]] = []
    for t in nf.tables:
        if t.family not in families or t.dormant:
            continue
        for c in t.chains.values():
            if c.hook != hook:
                continue
            if family == "netdev" and device not in c.devices:
                continue
            prio = c.priority if c.priority is not None else 0
            found.append(((prio, -(t.handle or 0), -(c.handle or 0)), c))
    found.sort(key=lambda e: e[0])
    return tuple(c for _, c in found)


def has_family(nf: Netfilter, family: str) -> bool:
    """Whether any base chain of ``family`` exists (a cheap test before building a walk)."""
    for t in nf.tables:
        ours = t.family == family or (family == "netdev" and t.family == "inet")
        if (
            ours
            and not t.dormant
            and any(c.is_base and (c.devices or family != "netdev") for c in t.chains.values())
        ):
            return True
    return False


def evaluate_family(
    nf: Netfilter,
    family: str,
    hook: str,
    packet: Packet,
    facts: NetnsFacts,
    *,
    iif: str | None,
    oif: str | None,
    device: str | None = None,
    ether: tuple[str, str] | None = None,
    arp_op: int = 0,
    below: int | None = None,
    from_prio: int | None = None,
    ct_attached: bool = False,
) -> HookResult | None:
    """Run the ``family`` chains on ``hook`` for one packet (or ARP packet); None when there is
    none. ``from_prio``/``below`` keep only chains with from_prio <= priority < below (a bridge
    hook split around br_netfilter's call of the IP hooks)."""
    chains = [
        c
        for c in family_chains(nf, family, hook, device)
        if (below is None or _prio(c) < below) and (from_prio is None or _prio(c) >= from_prio)
    ]
    if packet.proto == "arp":  # inet ingress chains see only IP
        chains = [c for c in chains if c.family != "inet"]
    if not chains:
        return None
    st = State(nf, packet, facts, "new", 0, None, None, None)
    st.iif, st.oif = iif, oif
    st.ether, st.arp_op = ether, arp_op
    st.ct_attached = ct_attached
    h = _Hook(st, hook)
    visits: list[ChainVisit] = []
    verdict = "accept"
    deciding: RuleRef | None = None
    last_rule: RuleRef | None = None
    last_policy: RuleRef | None = None
    for chain in chains:
        first = len(h.matched)
        v, ref = h.run_chain(chain)
        visits.append(_visit(chain, v, ref, h.matched[first:]))
        if v != "accept":
            verdict, deciding = v, ref
            break
        if ref.policy:
            last_policy = ref
        else:
            last_rule = ref
    if verdict == "accept":
        deciding = last_rule or last_policy
    return HookResult(
        hook=hook,
        verdict=verdict,
        packet=st.packet,
        matched=tuple(h.matched),
        deciding=deciding,
        policy=deciding.name if deciding is not None and deciding.policy else None,
        uncertain=tuple(h.uncertain),
        chains=tuple(visits),
        iif=iif,
        oif=oif,
    )


def deciding_chain(res: HookResult) -> ChainVisit:
    """The chain whose verdict ended the hook (the last one run)."""
    return res.chains[-1]


def _prio(c: Chain) -> int:
    return c.priority if c.priority is not None else 0


def _visit(chain: Chain, verdict: str, rule: RuleRef, matched: list[RuleRef]) -> ChainVisit:
    return ChainVisit(
        backend=chain.backend,
        family=chain.family,
        table=chain.table,
        chain=chain.name,
        priority=_prio(chain),
        type=chain.type or "filter",
        verdict=verdict,
        rule=rule,
        skipped=None,
        matched=tuple(matched),
    )


# --------------------------------------------------------------------------- chain devices

_TABLE = re.compile(r'^\s*table\s+(\S+)\s+"?([^"\s{]+)"?\s*\{')
_CHAIN = re.compile(r'^\s*chain\s+"?([^"\s{]+)"?\s*\{')
_DEVICE = re.compile(r'\bhook\s+(?:ingress|egress)\s+device\s+"?([^"\s;]+)"?')
_DEVICES = re.compile(r"\bhook\s+(?:ingress|egress)\s+devices\s*=\s*\{([^}]*)\}")


def chain_devices(text: str) -> dict[tuple[str, str, str], tuple[str, ...]]:
    """The devices of ingress/egress base chains in ``nft list chains`` text.

    nft 1.0.6 leaves them out of its JSON; its text says ``device "eth0"`` or
    ``devices = { lo, eth0 }``. Keyed by (family, table, chain).
    """
    out: dict[tuple[str, str, str], tuple[str, ...]] = {}
    family = table = chain = ""
    for line in text.splitlines():
        if m := _TABLE.match(line):
            family, table, chain = m.group(1), m.group(2), ""
        elif m := _CHAIN.match(line):
            chain = m.group(1)
        elif chain and (m := _DEVICE.search(line)):
            out[(family, table, chain)] = (m.group(1),)
        elif chain and (m := _DEVICES.search(line)):
            names = (d.strip().strip('"') for d in m.group(1).split(","))
            out[(family, table, chain)] = tuple(d for d in names if d)
    return out


def with_devices(nft_json: str, text: str) -> str:
    """``nft_json`` with the ``dev`` of each ingress/egress chain that lacks it, from ``text``
    (as newer nft versions print it: a name, or a list of names)."""
    devices = chain_devices(text)
    if not devices:
        return nft_json
    doc = json.loads(nft_json)
    for item in doc.get("nftables", []):
        body = item.get("chain") if isinstance(item, dict) else None
        if not isinstance(body, dict) or "dev" in body:
            continue
        key = (str(body.get("family")), str(body.get("table")), str(body.get("name")))
        if key in devices:
            devs = devices[key]
            body["dev"] = devs[0] if len(devs) == 1 else list(devs)
    return json.dumps(doc)
