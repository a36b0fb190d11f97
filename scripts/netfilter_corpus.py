#!/usr/bin/env python3
"""Measure cntrace.netfilter on the netfilter projects' own test corpora (issue 20).

Every rule of iptables' ``extensions/*.t`` (both back ends, IPv4 and IPv6) and nftables'
``tests/py/*/*.t`` that this kernel accepts is loaded with the real tools into a private network
namespace (the script re-runs itself under ``unshare --net``), dumped (``iptables-save``,
``nft -j list ruleset``) and given to the parser; every ``tests/shell`` dump is loaded with
``nft -f`` and parsed whole. Each parsed rule is then checked against probe packets (TCP, UDP,
ICMP of its family): *evaluable* when every step decides, otherwise *uncertain* with the reason.
Stateful matches (rates, quotas, counts, randomness) are counted apart: no packet decides them.

Not run by ``make test``; root, and the kernel lock:

    flock /run/cntrace-dev.lock .venv/bin/python scripts/netfilter_corpus.py \\
        --iptables /tmp/nfcorp/ipt --nftables /tmp/nfcorp/nft

where the two directories hold ``extensions/`` of iptables and ``tests/`` of nftables (e.g.
``git --git-dir MIRROR archive HEAD extensions | tar -x -C DIR``).
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cntrace.model import Packet, Ruleset
from cntrace.netfilter import iptables_save, nft_json, stateful
from cntrace.netfilter.matching import match_holds, vmap_verdict
from cntrace.netfilter.model import Netfilter, Rule, Table
from cntrace.netfilter.nft_maps import lookup
from cntrace.netfilter.probe import Probe
from cntrace.netfilter.results import NetnsFacts
from cntrace.netfilter.state import State
from cntrace.netfilter.stateful import KernelState
from cntrace.netfilter.steps import Mangle, Match, NatSpec, Unsupported, VerdictMap
from cntrace.netfilter.values import RulesetError
from cntrace.sources.libnftables import library
from cntrace.sources.rulesets import flagged_ruleset, kernel_state, kernel_tables

STATEFUL = (
    "limit", "quota", "recent", "connlimit", "hashlimit", "connbytes", "ct count",
    "ct expiration", "statistic", "numgen", "random", "nth", "rate",
)  # fmt: skip
_STATEFUL_WORD = re.compile(r"\b(?:" + "|".join(STATEFUL) + r")\b")  # not "monthdays"
L2_FAMILIES = ("bridge", "arp", "netdev")
# Reasons naming what no packet decides (probe_headers.STATE): counted apart, like stateful.
KERNEL_STATE = ("kernel state", "depends on open sockets", "the CPU is not known", "realm")
EXAMPLES = os.environ.get("CNTRACE_CORPUS_EXAMPLES") == "1"


@dataclass
class Tally:
    accepted: int = 0
    parsed: int = 0
    evaluable: int = 0
    stateful: int = 0
    other_family: int = 0  # bridge/arp/netdev rules (walked, and counted in the rest too)
    kernel_state: int = 0
    rejected_files: int = 0
    files: int = 0
    parse_fail: collections.Counter[str] = field(default_factory=collections.Counter)
    uncertain: collections.Counter[str] = field(default_factory=collections.Counter)
    stateful_why: collections.Counter[str] = field(default_factory=collections.Counter)
    state_why: collections.Counter[str] = field(default_factory=collections.Counter)
    example: dict[str, str] = field(default_factory=dict)  # a rule text per reason

    @property
    def decidable(self) -> int:
        return self.parsed - self.stateful - self.kernel_state


def _probes(ver: int) -> list[Packet]:
    if ver == 0:
        return [Packet("arp", "10.0.0.1", "10.0.0.2")]  # a request from the neighbour
    s, d = ("10.0.0.1", "10.0.0.2") if ver == 4 else ("2001:db8::1", "2001:db8::2")
    return [
        Packet("tcp", s, d, 40000, 80, ver),
        Packet("udp", s, d, 40000, 53, ver),
        Packet("icmp", s, d, None, None, ver, icmp_type=8 if ver == 4 else 128),
    ]


# A crafted probe: of known size, at a known time, every header byte chosen by the sender
# (what a live probe sent with scapy knows; probe.py).
HEADER = (
    ("tcp.sequence", 1000), ("tcp.window", 64240), ("tcp.checksum", 0x1234),
    ("udp.checksum", 0x1234), ("udplite.checksum", 0x1234), ("icmp.id", 7),
    ("icmp.sequence", 1), ("icmp.checksum", 0x1234), ("ip.checksum", 0x1234),
    ("tcpopt.maxseg.size", 1460), ("tcpopt.window.count", 7), ("tcpopt.timestamp.tsval", 1),
)  # fmt: skip
PROBE = Probe(length=60, time=1_750_000_000.0, ip_id=1, header=HEADER)
MACS = ("02:00:00:00:00:01", "02:00:00:00:00:02")
_FACTS = NetnsFacts(
    frozenset({"10.0.0.2", "2001:db8::2"}),
    {"eth0": ("10.0.0.2", "2001:db8::2"), "eth1": ("10.1.0.1",)},
    iface_kinds={"eth0": "veth", "eth1": "veth"},
    groups={"eth0": 0, "eth1": 0},
)
_VERS = {"inet": (4, 6), "ip6": (6,), "ip": (4,), "arp": (0,), "bridge": (4, 6, 0),
         "netdev": (4, 6, 0)}  # fmt: skip


def rule_reason(nf: Netfilter, rule: Rule, table: Table | None) -> str | None:
    """Why the rule cannot be decided for some probe packet (None: every step decides)."""
    for ver in _VERS.get(rule.family, (4,)):
        for p in _probes(ver):
            st = State(nf, p, _FACTS, "new", 0, None, None, None)
            st.rule = rule
            st.iif, st.oif, st.ct_attached = "eth0", "eth1", rule.family not in L2_FAMILIES
            st.probe, st.ether, st.arp_op = PROBE, MACS, 1 if ver == 0 else 0
            for step in rule.steps:
                if isinstance(step, Match):
                    r = match_holds(st, step, table)
                    if isinstance(r, str):
                        return r
                elif isinstance(step, Unsupported):
                    return step.reason
                elif isinstance(step, NatSpec) and step.unsupported:
                    return step.unsupported
                elif isinstance(step, (NatSpec, Mangle)):
                    lk = step.lookup if isinstance(step, NatSpec) else step.value
                    if lk is not None:
                        _, why = lookup(st, lk, table.sets if table is not None else None)
                        if why:
                            return why
                elif isinstance(step, VerdictMap):
                    _, why = vmap_verdict(st, step, table)
                    if why:
                        return why
    return None


def _short(reason: str) -> str:
    return re.sub(r"\d+|'[^']*'|\"[^\"]*\"|@\S+", "_", reason)[:90]


def account(t: Tally, nf: Netfilter) -> None:
    for table in nf.tables:
        for chain in table.chains.values():
            for rule in chain.rules:
                try:
                    _ = rule.steps
                except RulesetError as exc:
                    t.parse_fail[_short(str(exc).split(": ", 2)[-1])] += 1
                    t.example.setdefault(_short(str(exc).split(": ", 2)[-1]), str(exc)[:300])
                    continue
                t.parsed += 1
                if rule.family in L2_FAMILIES:
                    t.other_family += 1
                why = rule_reason(nf, rule, table)
                if why is None:
                    t.evaluable += 1
                elif any(w in why.lower() for w in KERNEL_STATE):
                    t.kernel_state += 1
                    t.state_why[_short(why)] += 1
                elif _STATEFUL_WORD.search(why.lower()):
                    t.stateful += 1
                    t.stateful_why[_short(why)] += 1
                else:
                    t.uncertain[_short(why)] += 1
                    t.example.setdefault(_short(why), rule.text)


def run(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)


# --------------------------------------------------------------------------- iptables


_IPT_TABLES = ("filter", "nat", "mangle", "raw", "security")


def iptables_corpus(root: Path, limit: int | None) -> dict[str, Tally]:
    out: dict[str, Tally] = {}
    files = sorted(glob.glob(str(root / "extensions" / "*.t")))
    for backend in ("nft", "legacy"):
        t = out.setdefault(f"iptables-{backend}", Tally())
        for path in files[:limit]:
            name = os.path.basename(path)
            if name.startswith(("libebt_", "libarpt_")) or name == "iptables.t":
                continue
            fams = ["ip6"] if name.startswith("libip6t_") else ["ip"]
            if name.startswith("libxt_"):
                fams = ["ip", "ip6"]
            for fam in fams:
                _iptables_file(t, Path(path), backend, fam)
    return out


def _iptables_file(t: Tally, path: Path, backend: str, fam: str) -> None:
    tool = f"{'ip6tables' if fam == 'ip6' else 'iptables'}-{backend}"
    table, chains = "filter", ["INPUT"]
    added = 0
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = line[1:]
            continue
        if line.startswith(":"):
            chains = line[1:].split(",")
            continue
        parts = line.split(";")
        if len(parts) < 3 or parts[-1] != "OK":
            continue
        try:
            args = shlex.split(parts[0])
        except ValueError:
            continue
        if run([tool, "-w", "-t", table, "-A", chains[0], *args]).returncode == 0:
            added += 1
    if added:
        t.accepted += added
        t.files += 1
        text = run([f"{tool.split('-', maxsplit=1)[0]}-{backend}-save", "-c"]).stdout
        try:
            parsed = iptables_save.parse(text, source=str(path))
            nf = Netfilter(tuple(parsed.tables), kernel=_kernel(iptables_nft=text))
            account(t, nf)
        except RulesetError as exc:
            t.rejected_files += 1
            t.parse_fail[_short(str(exc))] += added
    for tb in _IPT_TABLES:
        run([tool, "-w", "-t", tb, "-F"])
        run([tool, "-w", "-t", tb, "-X"])


# --------------------------------------------------------------------------- nftables


def _nft(*cmds: str) -> list[tuple[int, str, str]]:
    lib = library()
    assert lib is not None, "libnftables is needed"
    return lib.run(*cmds)


def _dump() -> str:
    """`nft -j list ruleset` as cntrace reads it: a namespace with flagged (dormant) tables
    through the nft binary with the kernel's flags (libnftables 1.0.6 prints them from freed
    memory), else in-process."""
    kernel = kernel_tables()
    if any(flags for _f, _n, flags in kernel):
        text, err = flagged_ruleset(f"/proc/{os.getpid()}/ns/net", kernel)
        if text is None:
            print(f"NOT READ: {err}", file=sys.stderr)
            return '{"nftables": []}'
        return text
    lib = library()
    assert lib is not None
    return lib.json("list ruleset")[0]


def nft_py_corpus(root: Path, limit: int | None) -> Tally:
    t = Tally()
    for path in sorted(glob.glob(str(root / "tests" / "py" / "*" / "*.t")))[:limit]:
        _nft_py_file(t, Path(path))
    return t


@dataclass
class NftTestFile:
    """One nftables tests/py ``.t`` file: chain specs, tables, set lines and the ``ok`` rules
    (with their line numbers)."""

    specs: dict[str, str]
    tables: list[tuple[str, str, list[str]]]
    sets: list[str]
    rules: list[tuple[int, str]]


def read_nft_t(path: Path) -> NftTestFile:
    """Parse a tests/py ``.t`` file (shared by the corpus and the differential scripts)."""
    f = NftTestFile({}, [], [], [])
    for n, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "-")):
            continue
        if line.startswith(":"):
            name, _, spec = line[1:].partition(";")
            f.specs[name] = spec
        elif line.startswith("*"):
            fam, tname, chains = line[1:].split(";")
            f.tables.append((fam, tname, chains.split(",")))
        elif line.startswith(("!", "?", "%")):
            f.sets.append(line)
        else:
            parts = line.split(";")
            if len(parts) >= 2 and parts[1] == "ok":
                f.rules.append((n, parts[0]))
    return f


def nft_set_commands(fam: str, table: str, lines: list[str]) -> tuple[str, ...]:
    """The nft commands that create a ``.t`` file's sets (``!``), their elements (``?``) and
    typed sets (``%``), skipping lines the file expects to fail."""
    out = []
    for s in lines:
        body, _, ok = s[1:].rpartition(";")
        if ok != "ok":
            continue
        name, _, spec = body.partition(" ")
        if s[0] == "!":
            kind = "map" if " : " in spec else "set"
            spec = spec.replace(" flags ", "; flags ").replace(" timeout ", "; timeout ")
            out.append(f"add {kind} {fam} {table} {name} {{ {spec}; }}")
        elif s[0] == "?":
            out.append(f"add element {fam} {table} {name} {{ {spec} }}")
        else:
            typ = spec.removeprefix("type ")
            out.append(f"add {typ.split()[0]} {fam} {table} {name} {{ {typ.partition(' ')[2]} }}")
    return tuple(out)


def _nft_py_file(t: Tally, path: Path) -> None:
    parsed = read_nft_t(path)
    chain_specs, tables, sets = parsed.specs, parsed.tables, parsed.sets
    rules = [r for _, r in parsed.rules]
    for fam, tname, chains in tables:
        _nft("flush ruleset")
        _nft(f"add table {fam} {tname}")
        for c in chains:
            _nft(f"add chain {fam} {tname} {c} {{ {chain_specs.get(c, '')}; }}")
        for cmd in nft_set_commands(fam, tname, sets):
            _nft(cmd)
        added = 0
        for r in rules:
            for c in chains:
                if _nft(f"add rule {fam} {tname} {c} {r}")[-1][0] == 0:
                    added += 1
        if not added:
            continue
        t.accepted += added
        t.files += 1
        _parse_nft(t, _dump(), str(path), added)
    _nft("flush ruleset")


def _kernel(**texts: str) -> KernelState:
    """The stateful matches' kernel state of this namespace, read as discovery reads it
    (quota used, xt_recent lists, the conntrack table): those matches are then decided."""
    ruleset = Ruleset(nft_json=texts.get("nft_json"), iptables_nft=texts.get("iptables_nft"))
    return stateful.parse(replace(ruleset, kernel_state=kernel_state(dict(texts))))


def _parse_nft(t: Tally, text: str, where: str, count: int) -> None:
    try:
        parsed = nft_json.parse(text, source=where)
        account(t, Netfilter(tuple(parsed.tables), kernel=_kernel(nft_json=text)))
    except RulesetError as exc:
        t.rejected_files += 1
        t.parse_fail[_short(str(exc))] += count
        print(f"REJECTED {where}: {exc}", file=sys.stderr)


def nft_shell_corpus(root: Path, limit: int | None) -> Tally:
    t = Tally()
    for path in sorted(
        glob.glob(str(root / "tests" / "shell" / "**" / "dumps" / "*.nft"), recursive=True)
    )[:limit]:
        _nft("flush ruleset")
        text = Path(path).read_text(errors="replace")
        if not text.strip():
            continue
        rc, _, _ = _nft(text)[-1]
        if rc != 0:
            continue
        dump = _dump()
        n = dump.count('{"rule": {')
        t.accepted += n
        t.files += 1
        _parse_nft(t, dump, path, n)
    _nft("flush ruleset")
    return t


# --------------------------------------------------------------------------- report


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "-"


def report(results: dict[str, Tally], top: int) -> None:
    print(
        "| corpus | files | kernel accepted | parsed | files rejected whole | stateful | "
        "kernel state | of them bridge/arp/netdev | evaluable (of packet/socket/clock-decided) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, t in results.items():
        print(
            f"| {name} | {t.files} | {t.accepted} | {t.parsed} ({_pct(t.parsed, t.accepted)}) "
            f"| {t.rejected_files} | {t.stateful} | {t.kernel_state} | {t.other_family} | "
            f"{t.evaluable}/{t.decidable} ({_pct(t.evaluable, t.decidable)}) |"
        )
    for name, t in results.items():
        for title, ctr in (
            ("parse failures", t.parse_fail),
            ("uncertain", t.uncertain),
            ("stateful", t.stateful_why),
            ("kernel state", t.state_why),
        ):
            if ctr:
                print(f"\n{name}: {title}")
                for why, n in ctr.most_common(top):
                    print(f"  {n:6d}  {why}")
                    if EXAMPLES and why in t.example:
                        print(f"          e.g. {t.example[why][:150]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iptables", type=Path, help="directory holding iptables' extensions/")
    ap.add_argument("--nftables", type=Path, help="directory holding nftables' tests/")
    ap.add_argument("--limit", type=int, help="only the first N files of each corpus")
    ap.add_argument("--top", type=int, default=25, help="reasons listed per corpus")
    args = ap.parse_args()
    if os.environ.get("CNTRACE_CORPUS_NETNS") != "1":
        env = dict(os.environ, CNTRACE_CORPUS_NETNS="1")
        return subprocess.call(["unshare", "--net", "--", sys.executable, *sys.argv], env=env)
    results: dict[str, Tally] = {}
    start = time.monotonic()
    if args.iptables:
        results.update(iptables_corpus(args.iptables, args.limit))
    if args.nftables:
        results["nftables tests/py"] = nft_py_corpus(args.nftables, args.limit)
        results["nftables tests/shell dumps"] = nft_shell_corpus(args.nftables, args.limit)
    report(results, args.top)
    print(f"\n{time.monotonic() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
