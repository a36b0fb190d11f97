#!/usr/bin/env python3
"""The upstream differential (issue 20): upstream rules against real packets in real namespaces.

Random rules of iptables' ``extensions/*.t`` (iptables-nft and iptables-legacy) and nftables'
``tests/py`` (ip, ip6, inet), seeded, are loaded one at a time with the real tool into a private
namespace pair (``cntrace-nfd<tag>-a`` sends, ``-b`` receives): input-side chains (prerouting,
input) in the receiver, output-side ones (output, postrouting) in the sender. An nft rule is cut
to its matches and a counter (its statements decide nothing the counter sees). For each rule,
packets are crafted from its matches (a base TCP SYN, UDP datagram and ICMP echo of the family,
and one packet built to satisfy every match) and sent from a raw socket inside the sender to an
address of the receiver; the kernel's rule counter says whether the rule matched, and
``cntrace.netfilter.walk`` with the probe the packet was sent with (its length, TOS, TTL, flags,
options and header values) says what cntrace predicts. A packet the walk is uncertain about is
not compared (the rule counts as evaluable only when every packet decides).

    flock /run/cntrace-dev.lock .venv/bin/python scripts/netfilter_differential.py \\
        --iptables /tmp/nfcorp/ipt --nftables /tmp/nfcorp/nft --differential 60 --seed 20

``--fixture FILE`` runs the rules recorded in FILE instead (tests/integration uses it);
``--record FILE`` writes the chosen rules there.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import ipaddress
import json
import os
import random
import re
import shlex
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6Unknown, IPv6
from scapy.layers.sctp import SCTP
from scapy.packet import Raw
from scapy.utils import checksum

from cntrace.model import Packet, Ruleset
from cntrace.netfilter import load, walk
from cntrace.netfilter.model import PROTO_NUMBERS, Netfilter, Rule
from cntrace.netfilter.probe import Probe
from cntrace.netfilter.results import NetnsFacts
from cntrace.netfilter.steps import Atom, Match
from cntrace.netfilter.values import RulesetError
from cntrace.sources import nsenter
from cntrace.sources.rulesets import read_ruleset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netfilter_corpus import nft_set_commands, read_nft_t  # the sibling script

INPUT_SIDE = {"PREROUTING": "prerouting", "INPUT": "input"}
OUTPUT_SIDE = {"OUTPUT": "output", "POSTROUTING": "postrouting"}
# The constructs most in need of the check (docs/netfilter.md): a few of each are picked first.
RISKY = {
    "icmp dependency": r"icmp(v6)? (id|sequence|mtu|gateway|max-delay)",
    "ct bytes/packets": r"ct (bytes|packets|avgpkt)|connbytes",
    "exthdr in inet": r"^inet .*(exthdr|\b(hbh|rt|frag|dst|mh|srh) )",
    "tcp flags/options": r"tcp flags|--tcp-flags|--syn|tcp option|tcpopt|--tcp-option|tcpmss",
    "length": r"\blength\b",
}
SRC4, DST4, SRC6, DST6 = "10.213.0.1", "10.213.0.2", "fd00:213::1", "fd00:213::2"


@dataclass(frozen=True)
class Candidate:
    """One upstream rule and where it is loaded."""

    backend: str  # iptables-nft | iptables-legacy | nftables
    family: str  # ip | ip6 | inet
    table: str
    chain: str
    hook: str  # prerouting | input | output | postrouting
    rule: str  # iptables arguments, or the nft rule
    spec: str = ""  # nft chain spec
    sets: tuple[str, ...] = ()  # nft commands creating the file's sets
    source: str = ""

    @property
    def sender_side(self) -> bool:
        return self.hook in ("output", "postrouting")

    def risky(self) -> str | None:
        text = f"{self.family} {self.rule}"
        return next((k for k, rx in RISKY.items() if re.search(rx, text)), None)


# --------------------------------------------------------------------------- the corpora


def iptables_candidates(root: Path) -> list[Candidate]:
    out = []
    for path in sorted(glob.glob(str(root / "extensions" / "*.t"))):
        name = os.path.basename(path)
        if name.startswith(("libebt_", "libarpt_")) or name == "iptables.t":
            continue
        fams = ["ip6"] if name.startswith("libip6t_") else ["ip"]
        if name.startswith("libxt_"):
            fams = ["ip", "ip6"]
        table, chains = "filter", ["INPUT"]
        for n, raw in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
            line = raw.strip()
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":"):
                chains = line[1:].split(",")
            elif line and not line.startswith("#"):
                parts = line.split(";")
                chain = next((c for c in chains if c in INPUT_SIDE), None)
                chain = chain or next((c for c in chains if c in OUTPUT_SIDE), None)
                if len(parts) < 3 or parts[-1] != "OK" or chain is None:
                    continue
                hook = {**INPUT_SIDE, **OUTPUT_SIDE}[chain]
                for fam in fams:
                    for be in ("iptables-nft", "iptables-legacy"):
                        out.append(
                            Candidate(be, fam, table, chain, hook, parts[0], source=f"{name}:{n}")
                        )
    return out


def nft_candidates(root: Path) -> list[Candidate]:
    out = []
    for path in sorted(glob.glob(str(root / "tests" / "py" / "*" / "*.t"))):
        parsed = read_nft_t(Path(path))
        specs, tables, sets, rules = parsed.specs, parsed.tables, parsed.sets, parsed.rules
        where = "/".join(Path(path).parts[-2:])
        for fam, tname, chains in tables:
            if fam not in ("ip", "ip6", "inet"):
                continue
            hooks = {c: re.search(r"hook (\w+)", specs.get(c, "")) for c in chains}
            usable = [
                (c, m.group(1))
                for c, m in hooks.items()
                if m and m.group(1) in ("prerouting", "input", "output", "postrouting")
            ]
            if not usable:
                continue
            usable.sort(key=lambda ch: ch[1] not in ("input", "prerouting"))
            chain, hook = usable[0]
            cmds = nft_set_commands(fam, tname, sets)
            for n, r in rules:
                out.append(
                    Candidate(
                        "nftables", fam, tname, chain, hook, r, specs[chain], cmds, f"{where}:{n}"
                    )
                )
    return out


def choose(cands: list[Candidate], seed: int, n: int) -> Iterator[Candidate]:
    """Candidates in a seeded random order: four of each risky kind first, then the backends
    in turn."""
    rng = random.Random(seed)
    order = list(cands)
    rng.shuffle(order)
    seen: set[int] = set()
    for kind in RISKY:
        picked = 0
        for i, c in enumerate(order):
            if i not in seen and c.risky() == kind and picked < max(3, n // 10):
                seen.add(i)
                picked += 1
                yield c
    by_backend: dict[str, list[int]] = {}
    for i, c in enumerate(order):
        if i not in seen:
            by_backend.setdefault(c.backend, []).append(i)
    while any(by_backend.values()):
        for be in sorted(by_backend):
            if by_backend[be]:
                yield order[by_backend[be].pop(0)]


# --------------------------------------------------------------------------- the namespaces


def sh(*cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)


class Pair:
    """Two namespaces joined by a veth pair; every address used is added to the receiver."""

    def __init__(self, tag: str | None = None) -> None:
        tag = tag or f"{random.Random().randrange(10000, 99999)}"
        self.a, self.b = f"cntrace-nfd{tag}-a", f"cntrace-nfd{tag}-b"
        self.dev_a, self.dev_b = "nfd0", "nfd1"
        self.mac_a, self.mac_b = "02:00:0a:d5:00:01", "02:00:0a:d5:00:02"
        self.added: set[str] = set()

    def up(self) -> None:
        for ns in (self.a, self.b):
            if sh("ip", "netns", "add", ns).returncode != 0:
                raise RuntimeError(f"cannot create namespace {ns}")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh(
            "ip",
            "-n",
            self.a,
            "link",
            "add",
            self.dev_a,
            "address",
            self.mac_a,
            "type",
            "veth",
            "peer",
            "name",
            self.dev_b,
            "address",
            self.mac_b,
            "netns",
            self.b,
        )
        for ns, dev in ((self.a, self.dev_a), (self.b, self.dev_b)):
            for key, val in (
                ("accept_dad", "0"),
                ("router_solicitations", "0"),
                ("accept_ra", "0"),
                ("addr_gen_mode", "1"),
            ):
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.{key}={val}")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", self.a, "addr", "add", f"{SRC4}/24", "dev", self.dev_a)
        sh("ip", "-n", self.a, "addr", "add", f"{SRC6}/64", "dev", self.dev_a, "nodad")
        for d in (DST4, DST6):
            self.receive(d)
        time.sleep(0.5)  # let link-up chatter (MLD reports) pass

    def receive(self, addr: str) -> None:
        """Make ``addr`` an address of the receiver, reached by the sender without resolution."""
        if addr in self.added:
            return
        host = "/128" if ":" in addr else "/32"
        sh("ip", "-n", self.b, "addr", "add", addr + host, "dev", self.dev_b, "nodad")
        sh("ip", "-n", self.a, "route", "replace", addr + host, "dev", self.dev_a)
        sh(
            "ip",
            "-n",
            self.a,
            "neigh",
            "replace",
            addr,
            "lladdr",
            self.mac_b,
            "dev",
            self.dev_a,
            "nud",
            "permanent",
        )
        self.added.add(addr)

    def down(self) -> None:
        for ns in (self.a, self.b):
            sh("ip", "netns", "del", ns)

    def ns(self, c: Candidate) -> str:
        return self.a if c.sender_side else self.b

    def reset(self) -> None:
        for ns in (self.a, self.b):
            sh("ip", "netns", "exec", ns, "nft", "flush", "ruleset")
            for tool in ("iptables-legacy", "ip6tables-legacy"):
                for t in ("filter", "nat", "mangle", "raw", "security"):
                    sh("ip", "netns", "exec", ns, tool, "-w", "-t", t, "-F")
                    sh("ip", "netns", "exec", ns, tool, "-w", "-t", t, "-X")
            sh("ip", "netns", "exec", ns, "conntrack", "-F")

    def load(self, c: Candidate) -> str | None:
        """Load the rule with the real tool; an error text when the kernel refuses it."""
        ns = self.ns(c)
        if c.backend.startswith("iptables"):
            tool = ("ip6tables" if c.family == "ip6" else "iptables") + c.backend[8:]
            try:
                args = shlex.split(c.rule)
            except ValueError as exc:
                return str(exc)
            r = sh("ip", "netns", "exec", ns, tool, "-w", "-t", c.table, "-A", c.chain, *args)
            return None if r.returncode == 0 else r.stderr.strip() or "refused"
        script = "\n".join(
            [
                f"add table {c.family} {c.table}",
                f"add chain {c.family} {c.table} {c.chain} {{ {c.spec}; }}",
                *c.sets,
                f"add rule {c.family} {c.table} {c.chain} {c.rule}",
            ]
        )
        r = sh("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=script)
        if r.returncode != 0:
            return r.stderr.strip().splitlines()[0] if r.stderr.strip() else "refused"
        return self._cut_to_matches(c)

    def _cut_to_matches(self, c: Candidate) -> str | None:
        """Replace the nft rule by its leading matches and a counter."""
        ns = self.ns(c)
        doc = json.loads(sh("ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset").stdout)
        rules = [i["rule"] for i in doc["nftables"] if "rule" in i]
        if len(rules) != 1:
            return f"{len(rules)} rules after loading one"
        expr = rules[0]["expr"]
        cut = next((i for i, e in enumerate(expr) if "match" not in e), len(expr))
        if cut == 0:
            return "no match before the first statement"
        new = {
            "family": c.family,
            "table": c.table,
            "chain": c.chain,
            "expr": [*expr[:cut], {"counter": {"packets": 0, "bytes": 0}}],
        }
        cmds = {
            "nftables": [
                {"flush": {"chain": {"family": c.family, "table": c.table, "name": c.chain}}},
                {"add": {"rule": new}},
            ]
        }
        r = sh("ip", "netns", "exec", ns, "nft", "-j", "-f", "-", stdin=json.dumps(cmds))
        return None if r.returncode == 0 else f"cut rule refused: {r.stderr.strip()[:120]}"

    def facts(self, c: Candidate) -> NetnsFacts:
        ns, dev = (self.a, self.dev_a) if c.sender_side else (self.b, self.dev_b)
        addrs: dict[str, tuple[str, ...]] = {}
        for link in json.loads(sh("ip", "-n", ns, "-j", "addr", "show").stdout):
            addrs[link["ifname"]] = tuple(a["local"] for a in link.get("addr_info", []))
        local = frozenset(a for v in addrs.values() for a in v)
        return NetnsFacts(
            local,
            addrs,
            iface_kinds={dev: "veth", "lo": "loopback"},
            groups=dict.fromkeys(addrs, 0),
        )

    def send(self, data: bytes, dst: str) -> None:
        v6 = ":" in dst
        fam = socket.AF_INET6 if v6 else socket.AF_INET
        s = nsenter.socket_in(nsenter.netns_path(self.a), fam, socket.SOCK_RAW, socket.IPPROTO_RAW)
        with contextlib.closing(s):
            if v6:
                s.setsockopt(socket.IPPROTO_IPV6, 36, 1)  # IPV6_HDRINCL
                s.sendto(data, (dst, 0, 0, 0))
            else:
                s.sendto(data, (dst, 0))


# --------------------------------------------------------------------------- crafting


@dataclass(frozen=True)
class Spec:
    """A packet to craft: every field the sender chooses."""

    ver: int
    proto: int
    src: str
    dst: str
    sport: int = 40000
    dport: int = 80
    icmp_type: int = 8
    icmp_code: int = 0
    dscp: int = 0
    ecn: int = 0
    ttl: int = 64
    payload: int = 0
    tcp_flags: int = 0x02
    icmp_id: int = 7  # the ICMP "rest of header": id and sequence of an echo ...
    icmp_seq: int = 1
    icmp_mtu: int = 0  # ... or the next-hop MTU (destination unreachable, packet too big)
    icmp_gateway: int = 0  # ... or the gateway of a redirect
    tcp_seq: int = 1000
    tcp_window: int = 64240
    label: str = "base"

    def icmp_rest(self) -> bytes:
        t = self.icmp_type
        if (self.ver, t) in ((4, 3), (6, 2)):
            return self.icmp_mtu.to_bytes(4, "big")
        if (self.ver, t) == (4, 5):
            return self.icmp_gateway.to_bytes(4, "big")
        return self.icmp_id.to_bytes(2, "big") + self.icmp_seq.to_bytes(2, "big")

    def icmp_known(self) -> list[tuple[str, int]]:
        """The rest-of-header fields nft reads for this type (its hidden dependency)."""
        t = self.icmp_type
        if t in ((0, 8) if self.ver == 4 else (128, 129)):
            return [("icmp.id", self.icmp_id), ("icmp.sequence", self.icmp_seq)]
        if (self.ver, t) in ((4, 3), (6, 2)):
            return [("icmp.mtu", self.icmp_mtu)]
        if (self.ver, t) == (4, 5):
            return [("icmp.gateway", self.icmp_gateway)]
        return []


def base_specs(ver: int) -> list[Spec]:
    s, d = (SRC4, DST4) if ver == 4 else (SRC6, DST6)
    icmp = 1 if ver == 4 else 58
    return [
        Spec(ver, 6, s, d, label="tcp syn"),
        Spec(ver, 17, s, d, dport=53, payload=20, label="udp"),
        Spec(ver, icmp, s, d, icmp_type=8 if ver == 4 else 128, payload=16, label="icmp echo"),
    ]


def _pick(op: str, atoms: tuple[Atom, ...], current: int) -> int | None:
    ints = [a for a in atoms if isinstance(a.lo, int)]
    if not ints:
        return None
    a = ints[0]
    lo = int(a.lo)
    hi = a.hi if a.hi is not None else lo
    if op == "==":
        return lo
    if op == "!=":
        bad = any(isinstance(b.lo, int) and b.lo <= current <= (b.hi or b.lo) for b in ints)
        return (max(int(b.hi or b.lo) for b in ints) + 1) if bad else current
    if op == "bits":
        return current | lo
    if op == "!bits":
        return current & ~lo
    return {"<": lo - 1, "<=": lo, ">": hi + 1, ">=": hi}.get(op)


_KEYS = {
    "sport": "sport",
    "dport": "dport",
    "icmp.type": "icmp_type",
    "icmp.code": "icmp_code",
    "dscp": "dscp",
    "ecn": "ecn",
    "ttl": "ttl",
    "tcpflags": "tcp_flags",
    "h:icmp.id": "icmp_id",
    "h:icmp.sequence": "icmp_seq",
    "h:icmp.mtu": "icmp_mtu",
    "h:icmp.gateway": "icmp_gateway",
    "h:tcp.sequence": "tcp_seq",
    "h:tcp.window": "tcp_window",
}
_BITS = {
    "sport": 16,
    "dport": 16,
    "icmp_id": 16,
    "icmp_seq": 16,
    "icmp_mtu": 16,
    "icmp_gateway": 32,
    "tcp_seq": 32,
    "tcp_window": 16,
}
# A field that is read only for some ICMP types: the type that gives it (nft's dependency).
_ICMP_TYPE_FOR = {
    ("icmp_mtu", 4): 3,
    ("icmp_mtu", 6): 2,
    ("icmp_gateway", 4): 5,
    ("icmp_id", 4): 8,
    ("icmp_seq", 4): 8,
    ("icmp_id", 6): 128,
    ("icmp_seq", 6): 128,
}


def satisfying(rule: Rule, ver: int) -> Spec:
    """A packet built so that each single-field match of the rule holds (where a field is one
    the sender sets)."""
    spec = base_specs(ver)[0]
    for step in rule.steps:
        if not isinstance(step, Match) or step.set_name or not step.values:
            continue
        for i, f in enumerate(step.fields):
            if f.proto is not None and f.proto != spec.proto and f.proto in (6, 17, 1, 58, 132):
                spec = dataclasses.replace(spec, proto=f.proto)
            atoms = tuple(v[i] for v in step.values if len(v) > i)
            key = f.key
            if key in ("saddr", "daddr"):
                a = next((x for x in atoms if isinstance(x.lo, int)), None)
                if a is None or step.op not in ("==", "!="):
                    continue
                addr = str(ipaddress.ip_address(int(a.lo))) if step.op == "==" else None
                if addr and (":" in addr) == (ver == 6):
                    spec = dataclasses.replace(spec, **{key[0] + "rc": addr})  # src, dst
                continue
            if key == "l4proto":
                v = _pick(step.op, atoms, spec.proto)
                if v is not None and 0 < v < 256:
                    spec = dataclasses.replace(spec, proto=v)
                continue
            if key == "length":
                v = _pick(step.op, atoms, _length(spec))
                if v is not None and v - _length(spec) + spec.payload >= 0:
                    spec = dataclasses.replace(
                        spec, payload=min(1200, v - _length(spec) + spec.payload)
                    )
                continue
            attr = _KEYS.get(key)
            if attr is None:
                continue
            cur = int(getattr(spec, attr))
            if f.mask is not None and not f.ops:
                v = _pick(step.op, atoms, cur & f.mask)
                v = None if v is None else (cur & ~f.mask) | (v & f.mask)
            else:
                v = _pick(step.op, atoms, cur) if not f.ops else None
            if v is not None and 0 <= v < 1 << _BITS.get(attr, 8):
                spec = dataclasses.replace(spec, **{attr: v})
                if attr.startswith("icmp") and spec.proto not in (1, 58):
                    spec = dataclasses.replace(
                        spec, proto=1 if ver == 4 else 58, icmp_type=8 if ver == 4 else 128
                    )
                need = _ICMP_TYPE_FOR.get((attr, ver))
                if need is not None and (need, spec.icmp_type) not in ((8, 0), (128, 129)):
                    spec = dataclasses.replace(spec, icmp_type=need)
    return dataclasses.replace(spec, label="built to match")


def _length(s: Spec) -> int:
    l4 = {6: 40, 17: 8, 1: 8, 58: 8, 132: 12}.get(s.proto, 8)
    return (20 if s.ver == 4 else 40) + l4 + s.payload


def martian(addr: str) -> str | None:
    ip = ipaddress.ip_address(addr)
    if ip.is_multicast or ip.is_loopback or ip.is_unspecified or ip.is_reserved:
        return f"{addr} is not a unicast address a namespace can receive on"
    if ip.version == 4 and (addr.endswith(".255") or addr.endswith(".0")):
        return f"{addr} may be a broadcast or network address"
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return f"{addr} is an IPv4-mapped address"
    return None


def _raw_l4(s: Spec) -> bytes:
    """A well-formed header for protocols scapy is not asked to build: ports first where the
    protocol has them (DCCP: a Request with extended sequence numbers, 20 bytes)."""
    ports = s.sport.to_bytes(2, "big") + s.dport.to_bytes(2, "big")
    if s.proto == 33:
        return ports + bytes((5, 0, 0, 0, 0x01, 0)) + b"\0" * 6 + b"\0" * 4
    if s.proto == 51:  # AH: next header none, 16 bytes (length field 2), spi, sequence, ICV
        return bytes((59, 2, 0, 0)) + ports + b"\0\0\0\x01" + b"\0" * 4
    return ports + b"\0\0\0\x01" + b"\0" * 12  # ESP: spi, sequence; others: ports


def craft(s: Spec) -> tuple[bytes, Packet, Probe]:
    """The bytes to send, and the same packet as cntrace's Packet and Probe."""
    tos = (s.dscp << 2) | s.ecn
    l3 = (
        IP(src=s.src, dst=s.dst, tos=tos, ttl=s.ttl, id=1, flags="DF", proto=s.proto)
        if s.ver == 4
        else IPv6(src=s.src, dst=s.dst, tc=tos, hlim=s.ttl, nh=s.proto)
    )
    body = b"x" * s.payload
    opts = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]
    if s.proto == 6:
        l4 = TCP(
            sport=s.sport,
            dport=s.dport,
            flags=s.tcp_flags,
            seq=s.tcp_seq,
            window=s.tcp_window,
            options=opts
            if s.tcp_flags & 0x02
            else [("NOP", None), ("NOP", None), ("Timestamp", (1, 1))],
        )
    elif s.proto == 17:
        l4 = UDP(sport=s.sport, dport=s.dport)
    elif s.proto == 1:
        head = bytes((s.icmp_type, s.icmp_code)) + b"\0\0" + s.icmp_rest() + body
        l4 = Raw(head[:2] + checksum(head).to_bytes(2, "big") + head[4:])
        body = b""
    elif s.proto == 58:
        l4 = ICMPv6Unknown(type=s.icmp_type, code=s.icmp_code, msgbody=s.icmp_rest())
    elif s.proto == 132:
        l4 = SCTP(sport=s.sport, dport=s.dport)
    else:
        l4 = Raw(_raw_l4(s))
    pkt = l3 / l4 / Raw(body) if body else l3 / l4
    data = bytes(pkt)
    back = (IP if s.ver == 4 else IPv6)(data)
    header: list[tuple[str, int]] = []
    if s.ver == 4:
        header.append(("ip.checksum", int(back.chksum)))
    else:
        header.append(("flowlabel", 0))
    name = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}.get(s.proto)
    ports = s.proto not in (1, 58)
    if s.proto == 6:
        t = back[TCP]
        header += [
            ("tcp.sequence", s.tcp_seq),
            ("tcp.window", s.tcp_window),
            ("tcp.checksum", int(t.chksum)),
            ("tcpopt.maxseg.size", 1460),
            ("tcpopt.window.count", 7),
            ("tcpopt.timestamp.tsval", 1),
        ]
    elif s.proto == 17:
        header.append(("udp.checksum", int(back[UDP].chksum)))
    elif s.proto in (1, 58):
        header += s.icmp_known()
        if s.proto == 1:
            header.append(("icmp.checksum", int.from_bytes(data[22:24], "big")))
    if name is None:
        name = next((k for k, v in PROTO_NUMBERS.items() if v == s.proto), str(s.proto))
    packet = Packet(
        name,
        s.src,
        s.dst,
        s.sport if ports else None,
        s.dport if ports else None,
        s.ver,
        s.icmp_type if s.proto in (1, 58) else None,
    )
    opts_kinds = frozenset({2, 4, 8, 1, 3}) if s.tcp_flags & 0x02 else frozenset({1, 8})
    probe = Probe(
        length=len(data),
        dscp=s.dscp,
        ecn=s.ecn,
        ttl=s.ttl,
        tcp_flags=s.tcp_flags if s.proto == 6 else None,
        tcp_options=opts_kinds if s.proto == 6 else None,
        ip_id=1 if s.ver == 4 else 0,
        time=time.time(),
        icmp_code=s.icmp_code,
        header=tuple(header),
    )
    return data, packet, probe


# --------------------------------------------------------------------------- comparing


@dataclass
class Outcome:
    candidate: Candidate
    text: str = ""  # the rule as dumped
    excluded: str | None = None
    compared: int = 0
    matched: int = 0  # packets the kernel counted
    disagreements: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)


def _the_rule(nf: Netfilter, c: Candidate) -> Rule | None:
    for t in nf.tables:
        if t.backend == c.backend and t.name == c.table and c.chain in t.chains:
            rules = t.chains[c.chain].rules
            if rules:
                return rules[0]
    return None


def _dump(pair: Pair, c: Candidate) -> tuple[Netfilter, Rule | None]:
    rs: Ruleset = read_ruleset(nsenter.netns_path(pair.ns(c)))
    nf = load(rs)
    return nf, _the_rule(nf, c)


def predict(nf: Netfilter, c: Candidate, pair: Pair, packet: Packet, probe: Probe) -> bool | str:
    """Whether cntrace says the rule matched this packet; a reason when it cannot say."""
    facts = pair.facts(c)
    if c.sender_side:
        w = walk(nf, packet, facts, kind="output", oif=pair.dev_a, probe=probe)
    else:
        w = walk(nf, packet, facts, kind="input", iif=pair.dev_b, probe=probe)
    if w.uncertain:
        return "; ".join(why for _, why in w.uncertain)
    return any(
        r.table == c.table and r.chain == c.chain and r.backend == c.backend
        for h in w.hooks
        for r in h.matched
    )


def _counter_after(pair: Pair, c: Candidate, before: int) -> int:
    """The rule's packet counter once the packet has been handled: the sender's own hooks run
    in sendto; the receiver's in a softirq soon after (waited for, up to 0.4 s, on a busy
    machine)."""
    deadline = time.monotonic() + (0 if c.sender_side else 0.4)
    while True:
        _, rule = _dump(pair, c)
        after = rule.counters[0] if rule and rule.counters else 0
        if after != before or time.monotonic() >= deadline:
            return after
        time.sleep(0.04)


def run_one(pair: Pair, c: Candidate) -> Outcome:
    out = Outcome(c)
    pair.reset()
    err = pair.load(c)
    if err is not None:
        out.excluded = f"not loaded: {err}"
        return out
    try:
        nf, rule = _dump(pair, c)
    except RulesetError as exc:
        out.disagreements.append(f"cntrace cannot parse the dump: {exc}")
        return out
    if rule is None:
        out.excluded = "the rule is not in the dump"
        return out
    out.text = rule.text
    if c.backend.startswith("iptables") and c.rule.count("!") > rule.text.count("!"):
        # libxt_esp prints `! --espspi :` (matches nothing) as `-m esp`: the text lost it.
        out.excluded = "the dump does not show the rule's inversion (iptables-save drops it)"
        return out
    if not any(isinstance(s, Match) for s in rule.steps):
        out.excluded = "not evaluable: no match (a target alone)"
        return out
    vers = {"ip": (4,), "ip6": (6,), "inet": (4, 6)}[c.family]
    specs = [s for v in vers for s in (*base_specs(v), satisfying(rule, v))]
    before = rule.counters[0] if rule.counters else 0
    for s in specs:
        why = martian(s.src) or martian(s.dst)
        if why is None and not c.sender_side and s.src in pair.added:
            why = f"source {s.src} is the receiver's own address"
        if why is not None:
            out.skipped.append(f"{s.label}: {why}")
            continue
        pair.receive(s.dst)
        data, packet, probe = craft(s)
        got = predict(nf, c, pair, packet, probe)
        if isinstance(got, str):
            out.skipped.append(f"{s.label}: uncertain: {got}")
            continue
        sh("ip", "netns", "exec", pair.ns(c), "conntrack", "-F")
        pair.send(data, s.dst)
        after = _counter_after(pair, c, before)
        delta, before = after - before, after
        want = delta > 0
        if delta > 1:
            out.skipped.append(f"{s.label}: the kernel counted {delta} packets (noise)")
            continue
        out.compared += 1
        out.matched += want
        if got is not want:
            out.disagreements.append(
                f"{s.label} {packet} len {probe.length}: kernel "
                f"{'matched' if want else 'no match'}, cntrace {got}"
            )
    if not out.compared:
        why = next((k for k in out.skipped if "uncertain" in k), None)
        out.excluded = (
            f"not evaluable: {why.split(': ', 2)[-1].split(';')[0]}"
            if why
            else "no packet could be crafted: " + "; ".join(out.skipped[:2])
        )
    return out


def differential(pair: Pair, cands: Iterator[Candidate], n: int, verbose: bool) -> list[Outcome]:
    done: list[Outcome] = []
    tried = 0
    for c in cands:
        if sum(1 for o in done if o.excluded is None) >= n:
            break
        tried += 1
        o = run_one(pair, c)
        if o.excluded and o.excluded.startswith("not loaded"):
            continue  # not part of the corpus this kernel accepts
        done.append(o)
        if o.disagreements or (verbose and not (o.excluded or "").startswith("not evaluable")):
            _print(o)
    return done


def _print(o: Outcome) -> None:
    c = o.candidate
    head = f"{c.backend} {c.family} {c.table}/{c.chain} [{c.source}] {o.text or c.rule}"
    if o.excluded:
        print(f"EXCLUDED  {head}\n          {o.excluded}")
    elif o.disagreements:
        print(f"DISAGREE  {head}")
        for d in o.disagreements:
            print(f"          {d}")
    else:
        print(f"agree     {head}  ({o.compared} packets, {o.matched} matched)")


def summary(outs: list[Outcome]) -> int:
    ev = [o for o in outs if o.excluded is None]
    bad = [o for o in ev if o.disagreements]
    by = Counter(o.candidate.backend for o in ev)
    risky = Counter(o.candidate.risky() for o in ev if o.candidate.risky())
    pk = sum(o.compared for o in ev)
    hit = sum(1 for o in ev if o.matched)
    print(
        f"\n{len(ev)} rules compared ({', '.join(f'{k} {v}' for k, v in sorted(by.items()))}),"
        f" {pk} packets; {len(ev) - len(bad)} agree, {len(bad)} disagree; {hit} rules matched "
        f"at least one packet; {len(outs) - len(ev)} left out:"
    )
    print("risky constructs: " + ", ".join(f"{k} {v}" for k, v in risky.items()))
    for why, k in Counter(_why(o.excluded or "") for o in outs if o.excluded).most_common():
        print(f"  {k:3d}  {why}")
    return 1 if bad else 0


def _why(reason: str) -> str:
    return re.sub(r"\d[\d.:a-f]*|'[^']*'", "_", reason)[:80]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iptables", type=Path, help="directory holding iptables' extensions/")
    ap.add_argument("--nftables", type=Path, help="directory holding nftables' tests/")
    ap.add_argument("--differential", type=int, default=60, metavar="N", help="rules to compare")
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--fixture", type=Path, help="run the rules recorded in this file")
    ap.add_argument("--record", type=Path, help="write the compared rules to this file")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if args.fixture:
        cands: list[Candidate] = [
            Candidate(**{**d, "sets": tuple(d.get("sets", ()))})
            for d in map(json.loads, args.fixture.read_text().splitlines())
            if d
        ]
        order: Iterator[Candidate] = iter(cands)
    else:
        cands = []
        if args.iptables:
            cands += iptables_candidates(args.iptables)
        if args.nftables:
            cands += nft_candidates(args.nftables)
        order = choose(cands, args.seed, args.differential)
    pair = Pair()
    start = time.monotonic()
    try:
        pair.up()
        outs = differential(pair, order, args.differential, args.verbose)
    finally:
        pair.down()
    if args.record:
        with args.record.open("w") as f:
            for o in outs:
                if o.excluded is None:
                    f.write(json.dumps(dataclasses.asdict(o.candidate)) + "\n")
    print(f"{time.monotonic() - start:.0f} s", file=sys.stderr)
    return summary(outs)


if __name__ == "__main__":
    sys.exit(main())
