"""Differential test: the netfilter evaluator against the kernel, packet by packet.

In scratch namespaces (tests/nfkit.py: client -> router -> servers) a ruleset is loaded into the
router (Docker's recorded one, and generated ones with jumps, gotos, returns, negations,
multiport, sets, verdict maps, marks and NAT, for iptables-nft, iptables-legacy and native nft,
alone and mixed), one UDP datagram is sent, and three things are compared with what the evaluator
predicted from the same ruleset as the tools dump it:

- which rules matched (the kernel's rule counters; iptables base-chain policy counters too),
- the verdict (was the datagram received anywhere at all),
- the NAT (the namespace that received it, and the addresses and ports it saw).

Every disagreement fails the test. Seeds are fixed, so a failure reproduces.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

import nfkit
import pytest
from clirun import run_json
from harness import require_root
from nfkit import BRIDGE, CLI, CLI2, DOCKER_SAVE, FLOWS, PORTS, RTR_DK, RTR_UP, SRV, SRV2, Flow, Lab

from cntrace import netfilter
from cntrace.model import Packet

_SPORT = itertools.count(41000)


@pytest.fixture(scope="module")
def nflab() -> Iterator[Lab]:
    require_root()
    lab = Lab(tag=str(random.Random().randrange(1000, 9999)))
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


@dataclass
class Outcome:
    """One case's comparison; ``problems`` is empty when evaluator and kernel agree."""

    case: str
    problems: list[str]
    verdict: str


def run_case(lab: Lab, flow: Flow, dport: int, label: str) -> Outcome:
    """Send one datagram through the loaded ruleset and compare with the evaluator."""
    before = lab.dump()
    nf = netfilter.load(before)
    sport = next(_SPORT)
    packet = Packet("udp", flow.src, flow.dst, sport, dport)
    w = netfilter.walk(
        nf, packet, lab.facts(), kind=flow.kind, iif=flow.iif, oif=flow.oif, route=lab.router()
    )
    payload = f"{label}/{sport}".encode()
    got = lab.send(flow, sport, dport, payload)
    after = netfilter.load(lab.dump())
    problems: list[str] = []
    case = f"{label} {flow.name} :{dport}"
    if w.uncertain:
        problems.append(f"evaluator uncertain: {[(r.text, why) for r, why in w.uncertain]}")
    # 1. rule counters
    kernel = nfkit.counted(after) - nfkit.counted(nf)
    countable = nfkit.countable(after)
    predicted: set[tuple[str, ...]] = set()
    for h in w.hooks:
        for r in h.matched:
            predicted.add((r.backend, r.family, r.table, r.chain, str(r.position)))
        for v in h.chains:
            if v.verdict is not None and v.rule is not None and v.rule.policy:
                predicted.add((v.backend, v.family, v.table, v.chain, "policy"))
    predicted &= countable
    if kernel != predicted:
        problems.append(
            f"counters: kernel only {sorted(kernel - predicted)}, "
            f"evaluator only {sorted(predicted - kernel)}"
        )
    # 2. verdict and 3. NAT
    if w.verdict == "accept":
        expect_ns = (
            "rtr" if w.kind in ("input", "local-output") else lab.owner.get(w.packet_after.dst, "?")
        )
        martian = lab.owner.get(w.packet_after.src) == expect_ns and expect_ns != "rtr"
        if martian:
            # The receiver drops a packet claiming to come from its own address (not netfilter).
            if got:
                problems.append(f"expected the receiver to drop a martian, got {got}")
        elif len(got) != 1:
            problems.append(f"evaluator: accepted to {w.packet_after}; kernel delivered {got}")
        else:
            g = got[0]
            seen = (g.ns, g.src, g.sport, g.dst, g.dport)
            want = (
                expect_ns,
                w.packet_after.src,
                w.packet_after.sport,
                w.packet_after.dst,
                w.packet_after.dport,
            )
            if seen != want:
                problems.append(f"delivery: kernel {seen}, evaluator {want}")
    elif got:
        problems.append(f"evaluator: {w.verdict} by {w.deciding and w.deciding.text}; kernel {got}")
    if problems:
        problems.insert(0, _explain(w))
    return Outcome(case, problems, w.verdict)


def _explain(w: netfilter.Walk) -> str:
    lines = [f"walk {w.kind} {w.packet_before} -> {w.verdict} {w.packet_after}"]
    for h in w.hooks:
        lines.append(f"  {h.hook}: {h.verdict} iif={h.iif} oif={h.oif}")
        for r in h.matched:
            lines.append(f"    {r.backend} {r.table} {r.chain}#{r.position}: {r.text}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- generators

ADDRS = (
    CLI,
    "198.51.100.0/24",
    CLI2,
    "203.0.113.0/24",
    SRV,
    "172.17.0.0/16",
    "172.31.1.0/24",
    RTR_UP,
    "10.0.0.0/8",
)
IN_IFACES = ("nfup0", "docker0", "nfup+", "br-+", "lo", "dock+", BRIDGE)
DNAT_TO = (SRV, f"{SRV}:5003", f"{SRV2}:53", RTR_DK, f"{RTR_UP}:9000", f"{CLI2}:80")
SNAT_TO = ("198.51.100.99", "172.17.0.99", "172.31.1.99", "198.51.100.99:5000")
ALLOW_IN = {"PREROUTING", "INPUT", "FORWARD"}
ALLOW_OUT = {"FORWARD", "OUTPUT", "POSTROUTING"}


def _neg(rng: random.Random, p: float = 0.3) -> str:
    return "! " if rng.random() < p else ""


def gen_ipt_matches(rng: random.Random, chain: str, table: str) -> list[str]:
    parts: list[str] = []
    user = chain not in ALLOW_IN | ALLOW_OUT
    if rng.random() < 0.4:
        parts.append(f"{_neg(rng)}-s {rng.choice(ADDRS)}")
    if rng.random() < 0.4:
        parts.append(f"{_neg(rng)}-d {rng.choice(ADDRS)}")
    if (user or chain in ALLOW_IN) and rng.random() < 0.35:
        parts.append(f"{_neg(rng)}-i {rng.choice(IN_IFACES)}")
    if (user or chain in ALLOW_OUT) and rng.random() < 0.35:
        parts.append(f"{_neg(rng)}-o {rng.choice(IN_IFACES)}")
    if rng.random() < 0.5:
        parts.append("-p udp")
        r = rng.random()
        if r < 0.35:
            parts.append(f"-m udp {_neg(rng)}--dport {rng.choice(PORTS)}")
        elif r < 0.55:
            parts.append(f"-m udp {_neg(rng)}--dport 5000:5004")
        elif r < 0.8:
            ports = ",".join(str(p) for p in rng.sample(PORTS, 3))
            parts.append(f"-m multiport {_neg(rng)}--dports {ports},5004:5005")
        elif r < 0.9:
            parts.append(f"-m udp {_neg(rng)}--sport 41000:65535")
    if table != "raw" and rng.random() < 0.2:
        state = rng.choice(("NEW", "RELATED,ESTABLISHED", "DNAT", "SNAT", "NEW,DNAT"))
        parts.append(f"-m conntrack {_neg(rng)}--ctstate {state}")
    if rng.random() < 0.15:
        which = rng.choice(("--dst-type LOCAL", "--src-type LOCAL", "--dst-type UNICAST"))
        parts.append(f"-m addrtype {_neg(rng, 0.4)}{which}")
    if table != "raw" and rng.random() < 0.15:
        parts.append(f"-m mark {_neg(rng)}--mark 0x1/0x1")
    if rng.random() < 0.1:
        parts.append('-m comment --comment "generated rule"')
    return parts


def gen_ipt_target(rng: random.Random, table: str, chain: str) -> str:
    r = rng.random()
    if table == "filter":
        if chain in ("INPUT", "FORWARD", "OUTPUT"):
            return rng.choice(["-j ACCEPT", "-j DROP", "-j U1", "-j U1", "-g U2", "-j U3", ""])
        if chain == "U1":
            return rng.choice(["-j ACCEPT", "-j DROP", "-j RETURN", "-j U2", "-g U3", ""])
        if chain == "U2":
            return rng.choice(["-j ACCEPT", "-j DROP", "-j RETURN", "-j U3", ""])
        return rng.choice(["-j ACCEPT", "-j DROP", "-j RETURN", ""])
    if table == "nat":
        if chain in ("PREROUTING", "OUTPUT", "N1"):
            if r < 0.45:
                return f"-j DNAT --to-destination {rng.choice(DNAT_TO)}"
            if r < 0.55:
                return f"-p udp -j REDIRECT --to-ports {rng.choice(PORTS)}"
            if chain == "N1":
                return rng.choice(["-j RETURN", "-j ACCEPT", ""])
            return rng.choice(["-j N1", "-j N1", "-j ACCEPT", ""])
        if chain in ("POSTROUTING", "N2"):
            if r < 0.35:
                return f"-j SNAT --to-source {rng.choice(SNAT_TO)}"
            if r < 0.6:
                return "-j MASQUERADE"
            if chain == "N2":
                return rng.choice(["-j RETURN", "-j ACCEPT", ""])
            return rng.choice(["-j N2", "-j N2", "-j ACCEPT", ""])
        if r < 0.5:
            return f"-j SNAT --to-source {rng.choice(SNAT_TO[:3])}"
        return rng.choice(["-j ACCEPT", ""])
    if table == "mangle":
        if r < 0.5:
            return rng.choice(["-j MARK --set-xmark 0x1/0x1", "-j MARK --set-xmark 0x3/0xff"])
        if chain == "M1":
            return rng.choice(["-j RETURN", "-j MARK --set-xmark 0x0/0x1", ""])
        return rng.choice(["-j M1", "-j ACCEPT", ""])
    # raw
    return rng.choice(["-j CT --notrack", "-j ACCEPT", "", ""]) if r < 0.5 else ""


IPT_CHAINS = {
    "raw": (("PREROUTING", "OUTPUT"), ()),
    "mangle": (("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"), ("M1",)),
    "nat": (("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"), ("N1", "N2")),
    "filter": (("INPUT", "FORWARD", "OUTPUT"), ("U1", "U2", "U3")),
}


def gen_iptables(seed: int, *, tables: tuple[str, ...] = ("raw", "mangle", "nat", "filter")) -> str:
    rng = random.Random(seed)
    out: list[str] = [f"# generated ruleset, seed {seed}"]
    for table in tables:
        builtins, users = IPT_CHAINS[table]
        out.append(f"*{table}")
        for c in builtins:
            policy = "DROP" if table == "filter" and rng.random() < 0.25 else "ACCEPT"
            out.append(f":{c} {policy} [0:0]")
        for c in users:
            out.append(f":{c} - [0:0]")
        for c in (*builtins, *users):
            hook_chain = c
            if c in ("N1",):
                hook_chain = "PREROUTING"
            for _ in range(rng.randint(0, 4 if table in ("filter", "nat") else 2)):
                matches = gen_ipt_matches(rng, hook_chain if c in users else c, table)
                target = gen_ipt_target(rng, table, c)
                needs_proto = "REDIRECT" in target or re.search(r"-to-\w+ [\d.]+:\d", target)
                if "-p udp -j REDIRECT" in target:
                    target = target.replace("-p udp ", "")
                if needs_proto and "-p udp" not in matches:
                    matches.insert(0, "-p udp")
                out.append(" ".join([f"-A {c}", *matches, target]).rstrip())
        out.append("COMMIT")
    return "\n".join(out) + "\n"


NFT_ADDRS = ADDRS
NFT_IFACES = ('"nfup0"', '"docker0"', '"nfup*"', '"br-*"', '"lo"', f'"{BRIDGE}"')


def gen_nft_matches(rng: random.Random, base: str) -> list[str]:
    parts: list[str] = []
    neg = lambda p=0.3: "!= " if rng.random() < p else ""  # noqa: E731
    if rng.random() < 0.35:
        parts.append(f"ip saddr {neg()}{rng.choice(NFT_ADDRS)}")
    if rng.random() < 0.3:
        parts.append(
            rng.choice([f"ip daddr {neg()}{rng.choice(NFT_ADDRS)}", f"ip daddr {neg()}@s4"])
        )
    if rng.random() < 0.3:
        parts.append(f"iifname {neg()}{rng.choice(NFT_IFACES)}")
    if rng.random() < 0.3:
        parts.append(f"oifname {neg()}{rng.choice(NFT_IFACES)}")
    r = rng.random()
    if r < 0.2:
        parts.append(f"udp dport {neg()}{rng.choice(PORTS)}")
    elif r < 0.35:
        parts.append(
            f"udp dport {neg()}{{ {', '.join(map(str, rng.sample(PORTS, 2)))}, 5000-5004 }}"
        )
    elif r < 0.45:
        parts.append("th dport @ports")
    elif r < 0.5:
        parts.append(f"ip saddr . udp dport {{ {CLI} . 53, {SRV} . 80, {CLI2} . 5003 }}")
    elif r < 0.55:
        parts.append("meta l4proto udp")
    if rng.random() < 0.2:
        parts.append(
            rng.choice(
                [
                    "ct state new",
                    "ct state established,related",
                    "ct status dnat",
                    "ct state invalid",
                ]
            )
        )
    if base in ("c_pre", "c_natpre", "c_inp", "c_out", "c_natout", "c_fwd") and rng.random() < 0.15:
        parts.append(f"fib daddr type {neg(0.4)}local")
    if rng.random() < 0.15:
        parts.append(f"meta mark & 0x00000001 {'!=' if rng.random() < 0.3 else '=='} 0x00000001")
    return parts


def gen_nft_action(rng: random.Random, chain: str) -> tuple[str, bool]:
    """(statement, whether the rule can carry a counter before it)."""
    r = rng.random()
    if chain in ("c_natpre", "c_natout", "n1"):
        if r < 0.45:
            to = rng.choice(DNAT_TO)
            proto = "meta l4proto udp " if ":" in to else ""
            return f"{proto}dnat to {to}", True
        if r < 0.55:
            return f"meta l4proto udp redirect to :{rng.choice(PORTS)}", True
        return rng.choice([("jump n1", True), ("accept", True), ("return", True), ("", True)])
    if chain in ("c_natpost", "c_natin"):
        if r < 0.35:
            return f"snat to {rng.choice(SNAT_TO[:3])}", True
        if r < 0.6 and chain == "c_natpost":
            return "masquerade", True
        return rng.choice([("accept", True), ("", True)])
    if chain == "c_mangle":
        return rng.choice(
            [
                ("meta mark set meta mark | 0x00000001", True),
                ("meta mark set 0x00000003", True),
                ("meta mark set meta mark & 0xfffffffe", True),
                ("", True),
            ]
        )
    if chain == "c_raw":
        return rng.choice([("notrack", True), ("", True), ("", True)])
    if r < 0.12 and chain in ("c_fwd", "c_inp", "c_out", "c_pre"):
        vmaps = ["udp dport vmap @vm", 'iifname vmap { "nfup0" : jump u1, "docker0" : drop }']
        return rng.choice(vmaps), False
    targets = ["accept", "drop", "jump u1", "goto u2", "jump u3", "return", ""]
    if chain == "u1":
        targets = ["accept", "drop", "return", "jump u2", "goto u3", ""]
    elif chain in ("u2", "u3"):
        targets = ["accept", "drop", "return", "jump u3" if chain == "u2" else "return", ""]
    elif chain in ("c_fwd", "c_inp", "c_out"):
        targets = [t for t in targets if t != "return"]
    return rng.choice(targets), True


def gen_nft(seed: int) -> str:
    rng = random.Random(seed)
    pol = lambda: "drop" if rng.random() < 0.2 else "accept"  # noqa: E731
    chains = {
        "c_raw": f"type filter hook prerouting priority {rng.choice((-310, -300))}; policy accept;",
        "c_pre": f"type filter hook prerouting priority {rng.choice((-160, -140, 10))};",
        "c_mangle": "type filter hook forward priority -150; policy accept;",
        "c_natpre": f"type nat hook prerouting priority {rng.choice((-110, -90))}; policy accept;",
        "c_fwd": f"type filter hook forward priority {rng.choice((-5, 5))}; policy {pol()};",
        "c_inp": f"type filter hook input priority {rng.choice((-5, 5))}; policy {pol()};",
        "c_out": f"type filter hook output priority {rng.choice((-5, 5))}; policy {pol()};",
        "c_natout": f"type nat hook output priority {rng.choice((-110, -90))}; policy accept;",
        "c_natpost": f"type nat hook postrouting priority {rng.choice((90, 110))}; policy accept;",
        "c_natin": f"type nat hook input priority {rng.choice((90, 110))}; policy accept;",
        "u1": "",
        "u2": "",
        "u3": "",
        "n1": "",
    }
    lines = [
        f"# generated ruleset, seed {seed}",
        "table ip g {",
        "  set s4 { type ipv4_addr; flags interval; elements = { 198.51.100.0/25, 172.17.0.2 } }",
        "  set ports { type inet_service; elements = { 53, 5003, 8080 } }",
        "  map vm { type inet_service : verdict;",
        "    elements = { 53 : jump u1, 80 : drop, 5003 : accept } }",
    ]
    for name, spec in chains.items():
        lines.append(f"  chain {name} {{")
        if spec:
            lines.append(f"    {spec}")
        for _ in range(rng.randint(0, 4)):
            matches = gen_nft_matches(rng, name)
            action, can_count = gen_nft_action(rng, name)
            if name == "n1" and "jump n1" in action:
                action = "return"
            counter = ["counter"] if can_count else []
            lines.append("    " + " ".join([*matches, *counter, action]).strip())
        lines.append("  }")
    lines.append("}")
    if rng.random() < 0.5:
        lines += [
            "table inet g2 {",
            "  chain f {",
            f"    type filter hook forward priority {rng.choice((-20, 20))}; policy accept;",
            f"    ip daddr {rng.choice(ADDRS)} udp dport {rng.choice(PORTS)} counter drop",
            f"    iifname {rng.choice(NFT_IFACES)} counter",
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def _check(outcomes: list[Outcome]) -> None:
    bad = [o for o in outcomes if o.problems]
    verdicts = {v: sum(1 for o in outcomes if o.verdict == v) for v in ("accept", "drop")}
    assert not bad, (
        f"{len(bad)}/{len(outcomes)} cases disagree (verdicts {verdicts}):\n"
        + "\n\n".join(f"{o.case}:\n" + "\n".join(o.problems) for o in bad[:8])
    )


def _flows(seed: int, n: int) -> list[tuple[Flow, int]]:
    rng = random.Random(seed * 7919)
    return [(rng.choice(FLOWS), rng.choice(PORTS)) for _ in range(n)]


# --------------------------------------------------------------------------- tests


def test_docker_recorded_ruleset(nflab: Lab) -> None:
    """Docker 20.10's own rules: published port DNAT, egress MASQUERADE, isolation drop."""
    text = DOCKER_SAVE
    cases = [
        (FLOWS[0], 5003),  # cli -> rtr:5003/udp -> DNAT 172.31.1.2:53 (published port)
        (FLOWS[1], 5003),  # to the router's docker0 address: published there too
        (FLOWS[0], 53),  # nothing published there: delivered to the router
        (FLOWS[4], 53),  # cli -> srv2:53 directly: the DOCKER chain accepts the published port
        (FLOWS[2], 53),  # cli -> srv:53: not published, FORWARD policy DROP
        (FLOWS[5], 53),  # srv -> internet: MASQUERADE with nfup0's address
        (FLOWS[6], 443),  # srv -> srv2: DOCKER-ISOLATION-STAGE-2 drops
        (FLOWS[7], 53),  # rtr -> cli: OUTPUT, nothing to do
        (FLOWS[9], 5003),  # rtr -> its own docker0 address:5003: nat OUTPUT DNAT (addrtype LOCAL)
        (FLOWS[3], 80),  # cli2 -> srv:80 (TCP-only publish): dropped for UDP
    ]
    outcomes = []
    for flow, dport in cases:
        nflab.load(iptables_nft=text)
        outcomes.append(run_case(nflab, flow, dport, "docker"))
    _check(outcomes)
    assert {o.verdict for o in outcomes} == {"accept", "drop"}


@pytest.mark.parametrize("seed", range(1, 9))
def test_generated_iptables_nft(nflab: Lab, seed: int) -> None:
    text = gen_iptables(seed)
    outcomes = []
    for flow, dport in _flows(seed, 6):
        nflab.load(iptables_nft=text)
        outcomes.append(run_case(nflab, flow, dport, f"ipt-nft#{seed}"))
    _check(outcomes)


@pytest.mark.parametrize("seed", range(101, 105))
def test_generated_iptables_legacy(nflab: Lab, seed: int) -> None:
    text = gen_iptables(seed)
    outcomes = []
    for flow, dport in _flows(seed, 5):
        nflab.load(iptables_legacy=text)
        outcomes.append(run_case(nflab, flow, dport, f"ipt-legacy#{seed}"))
    _check(outcomes)


@pytest.mark.parametrize("seed", range(201, 209))
def test_generated_nft(nflab: Lab, seed: int) -> None:
    text = gen_nft(seed)
    outcomes = []
    for flow, dport in _flows(seed, 6):
        nflab.load(nft=text)
        outcomes.append(run_case(nflab, flow, dport, f"nft#{seed}"))
    _check(outcomes)


@pytest.mark.parametrize("seed", range(301, 305))
def test_generated_mixed_backends(nflab: Lab, seed: int) -> None:
    """iptables-legacy, iptables-nft and native nft at once: kernel order across back ends."""
    legacy = gen_iptables(seed, tables=("mangle", "filter"))
    ipt = gen_iptables(seed + 1000, tables=("raw", "nat", "filter"))
    nft = gen_nft(seed)
    outcomes = []
    for flow, dport in _flows(seed, 5):
        nflab.load(iptables_legacy=legacy, iptables_nft=ipt, nft=nft)
        outcomes.append(run_case(nflab, flow, dport, f"mixed#{seed}"))
    _check(outcomes)


def test_generated_cases_cover_the_vocabulary() -> None:
    """The generators really produce what the kernel comparison claims to cover."""
    ipt = "\n".join(gen_iptables(s) for s in range(1, 9))
    nft = "\n".join(gen_nft(s) for s in range(201, 209))
    for needle in ("-g U", "-j RETURN", "! -s", "! -i", "-m multiport", "+ ", "-j DNAT", "-j SNAT",
                   "-j MASQUERADE", "-j REDIRECT", "-j MARK", "-m mark", "--ctstate", "addrtype",
                   "CT --notrack", ":FORWARD DROP"):  # fmt: skip
        assert needle in ipt, needle
    for needle in ("goto u", "return", "!= ", "@s4", "vmap", "dnat to", "snat to", "masquerade",
                   "redirect to", "meta mark set", "fib daddr", "ct status dnat", " . udp dport",
                   "notrack", "policy drop"):  # fmt: skip
        assert needle in nft, needle


def test_cli_walk_on_a_live_namespace(nflab: Lab) -> None:
    """`cntrace rules --netns R --packet ...` reads the live rules and routes and predicts what the
    kernel then does with the same datagram."""
    nflab.load(iptables_nft=DOCKER_SAVE)
    spec = f"udp {CLI}:41999 -> {RTR_UP}:5003 in nfup0"
    w = run_json("rules", "--netns", nflab.ns("rtr"), "--packet", spec, "--json")["walk"]
    assert w["oif"] == BRIDGE  # found from the namespace's routes after DNAT
    got = nflab.send(FLOWS[0], 41999, 5003, b"cli-walk")
    assert [(g.ns, g.dst, g.dport) for g in got] == [
        ("srv2", w["packet_after"]["dst"], w["packet_after"]["dport"])
    ]
    doc = run_json("rules", "--netns", nflab.ns("rtr"), "--json")
    dnat = [r for r in doc["hooks"]["prerouting"]["rules"] if "--dport 5003" in r["text"]]
    assert dnat and dnat[0]["packets"] >= 1  # the counter shows the datagram just sent
