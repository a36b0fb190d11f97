"""The corpus test (issue 20): our own rule lines, loaded by the real tools, dumped, parsed, and
where the probe decides, compared with the kernel's rule counters for real packets.

fixtures/netfilter/corpus.txt holds one rule per line (iptables-nft matches without a target,
nft matches with a counter, nft maps, and nat rules in a prerouting chain whose rewrite the input
rules observe); the nft input chain is predicted in order, so a mark a rule sets from a map is
what the rules after it read. Two namespaces joined by a veth pair: the receiver holds every rule
in its input chains, the sender sends a few probes (UDP with chosen TOS, TTL and size; a TCP SYN;
an ICMP echo request). After each probe the receiver's ruleset is dumped; for every rule the
kernel's counter (did it match) must equal what the evaluator says of that probe, with the probe's
length, DSCP, TTL, flags and clock given. One namespace pair for the whole module.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import require_root

from cntrace import netfilter
from cntrace.model import Packet, Ruleset
from cntrace.netfilter.chains import apply_mangle
from cntrace.netfilter.matching import match_holds
from cntrace.netfilter.model import Netfilter, Rule, Table
from cntrace.netfilter.probe import SYN_OPTIONS, Probe
from cntrace.netfilter.results import NetnsFacts
from cntrace.netfilter.state import State
from cntrace.netfilter.steps import Mangle, Match

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "netfilter" / "corpus.txt"
SRC, DST = "10.203.0.1", "10.203.0.2"


@dataclass(frozen=True)
class Send:
    """One probe: what the sender's socket is told, and the packet as the receiver sees it."""

    proto: str
    sport: int | None
    dport: int | None
    tos: int
    ttl: int
    payload: int

    def packet(self) -> Packet:
        return Packet(self.proto, SRC, DST, self.sport, self.dport, 4,
                      8 if self.proto == "icmp" else None)  # fmt: skip

    def probe(self, when: float) -> Probe:
        l4 = {"udp": 8, "icmp": 8, "tcp": 40}[self.proto]  # a Linux SYN: 20 bytes of options
        tcp = self.proto == "tcp"
        return Probe(
            length=20 + l4 + self.payload,
            dscp=self.tos >> 2,
            ecn=self.tos & 3,
            ttl=self.ttl,
            tcp_flags=0x02 if tcp else None,
            tcp_options=SYN_OPTIONS if tcp else None,
            time=when,
        )


SENDS = (
    Send("udp", 40001, 5000, 0x20, 64, 10),
    Send("udp", 40002, 5001, 0x00, 5, 200),
    Send("tcp", 40003, 80, 0x28, 64, 0),
    Send("tcp", 40004, 443, 0xB8, 200, 0),
    Send("icmp", None, None, 0x00, 64, 56),
)

_SENDER = r"""
import socket, struct, sys
proto, dst, sport, dport, tos, ttl, n = sys.argv[1:]
sport, dport, tos, ttl, n = int(sport), int(dport), int(tos), int(ttl), int(n)
if proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    s.bind(("0.0.0.0", sport))
    s.sendto(b"x" * n, (dst, dport))
elif proto == "tcp":
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    s.bind(("0.0.0.0", sport))
    s.settimeout(2)
    try:
        s.connect((dst, dport))
    except OSError:
        pass
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    body = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + b"x" * n
    c = sum(struct.unpack("!%dH" % (len(body) // 2), body))
    c = (c >> 16) + (c & 0xFFFF)
    c = ~(c + (c >> 16)) & 0xFFFF
    s.sendto(body[:2] + struct.pack("!H", c) + body[4:], (dst, 0))
"""


def corpus() -> list[tuple[str, str]]:
    out = []
    for line in CORPUS.read_text().splitlines():
        if line and not line.startswith("#"):
            kind, _, rule = line.partition("|")
            out.append((kind, rule))
    return out


def sh(*cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)


class Pair:
    def __init__(self) -> None:
        tag = random.Random().randrange(1000, 9999)
        self.a, self.b = f"cntrace-nfc{tag}-a", f"cntrace-nfc{tag}-b"

    def up(self) -> None:
        for ns in (self.a, self.b):
            assert sh("ip", "netns", "add", ns).returncode == 0
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.a, "link", "add", "nfc0", "type", "veth", "peer", "name", "nfc1",
           "netns", self.b)  # fmt: skip
        for ns, dev, addr in ((self.a, "nfc0", SRC), (self.b, "nfc1", DST)):
            assert sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev).returncode == 0
            assert sh("ip", "-n", ns, "link", "set", dev, "up").returncode == 0

    def down(self) -> None:
        for ns in (self.a, self.b):
            sh("ip", "netns", "del", ns)

    def in_b(self, *cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.b, *cmd, stdin=stdin)

    def dump(self) -> Ruleset:
        save = self.in_b("iptables-nft-save", "-c").stdout
        nft = self.in_b("nft", "-j", "list", "ruleset").stdout
        return Ruleset(iptables_nft=save, nft_json=nft)

    def send(self, s: Send) -> None:
        args = (s.proto, DST, s.sport or 0, s.dport or 0, s.tos, s.ttl, s.payload)
        sh("ip", "netns", "exec", self.a, sys.executable, "-c", _SENDER, *map(str, args))


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    require_root()
    p = Pair()
    try:
        p.up()
        yield p
    finally:
        p.down()


def _rules(nf: Netfilter) -> list[tuple[Rule, Table]]:
    """The corpus rules in load order: iptables' INPUT, then the nft chain."""
    out = []
    for t in nf.tables:
        for c in t.chains.values():
            if (t.backend, c.name) in (("iptables-nft", "INPUT"), ("nftables", "input")):
                out.extend((r, t) for r in c.rules)
    return out


FACTS = NetnsFacts(frozenset({DST}), {"nfc1": (DST,), "lo": ("127.0.0.1",)})


def _arrived(nf: Netfilter, s: Send, when: float) -> Packet:
    """The probe as the input chains see it: after the prerouting nat chain ("nat|" lines)."""
    w = netfilter.walk(nf, s.packet(), FACTS, kind="input", iif="nfc1", probe=s.probe(when))
    assert w.certain, w.uncertain
    return w.packet_after.rewritten(mark=0)


def _state(nf: Netfilter, packet: Packet, s: Send, when: float) -> State:
    st = State(nf, packet, FACTS, "new", 0, None, None, None)
    st.iif, st.ct_attached, st.probe = "nfc1", True, s.probe(when)
    return st


def _predict(st: State, rule: Rule, table: Table) -> bool | str:
    """Whether the rule's counter counts the packet; its mark statements (``meta mark set ...
    map``) change ``st`` for the rules after it, as in the kernel's chain."""
    for step in rule.steps:
        if isinstance(step, Match):
            r = match_holds(st, step, table)
            if r is not True:
                return r
        elif isinstance(step, Mangle):
            done = apply_mangle(st, step, table)
            if done is not True:
                return done
    return True


def _packets(rule: Rule) -> int:
    return rule.counters[0] if rule.counters else 0


def _nft_packets(nft_json: str) -> list[int]:
    counts = []
    for item in json.loads(nft_json)["nftables"]:
        rule = item.get("rule")
        if rule and rule.get("table") == "corpus" and rule.get("chain") == "input":
            counts.append(next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e))
    return counts


def test_corpus_parses_and_agrees_with_the_kernel(pair: Pair) -> None:
    lines = corpus()
    refused = []
    pair.in_b("nft", "add table ip corpus")
    pair.in_b("nft", "add chain ip corpus input { type filter hook input priority 0; }")
    pair.in_b("nft", "add chain ip corpus pre { type nat hook prerouting priority -100; }")
    for kind, rule in lines:
        if kind == "ipt":
            r = pair.in_b("iptables-nft", "-w", "-A", "INPUT", *rule.split())
        elif kind == "map":
            r = pair.in_b("nft", f"add map ip corpus {rule}")
        elif kind == "nat":
            r = pair.in_b("nft", f"add rule ip corpus pre {rule}")
        else:
            r = pair.in_b("nft", f"add rule ip corpus input {rule} counter")
        if r.returncode != 0:
            refused.append(f"{kind}|{rule}: {r.stderr.strip()}")
    assert not refused, "the kernel refused corpus lines:\n" + "\n".join(refused)
    nf = netfilter.load(pair.dump())
    nf.check()  # every rule compiles
    rules = _rules(nf)
    lines = [(k, r) for k, r in lines if k in ("ipt", "nft")]  # the rest has no counter
    assert len(rules) == len(lines)
    disagreements: list[str] = []
    compared = 0
    before = [_packets(r) for r, _ in rules]
    for s in SENDS:
        when = time.time()
        pair.send(s)
        time.sleep(0.05)
        dump = pair.dump()
        after_nf = netfilter.load(dump)
        after = [_packets(r) for r, _ in _rules(after_nf)]
        after[-len(_nft_packets(dump.nft_json or "")) :] = _nft_packets(dump.nft_json or "")
        arrived = _arrived(nf, s, when)
        chain = _state(nf, arrived, s, when)  # one state through the nft chain
        for (rule, table), b, a, (kind, text) in zip(rules, before, after, lines, strict=True):
            want = a > b
            st = chain if kind == "nft" else _state(nf, arrived, s, when)
            got = _predict(st, rule, table)
            compared += 1
            if got is not want:
                disagreements.append(f"{s}: {kind}|{text}: kernel {want}, cntrace {got!r}")
        before = after
    assert compared >= 50 * len(SENDS)
    assert not disagreements, "\n".join(disagreements)
