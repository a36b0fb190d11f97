"""Property tests: whatever text or JSON the parsers get, they either parse it or raise
RulesetError naming a line within the input; never another exception (a traceback for the user).

Inputs are built from the real fixtures, mutated (lines dropped, duplicated, truncated, tokens
swapped, values replaced), plus arbitrary text and arbitrary JSON.
"""

from __future__ import annotations

import json
from typing import Any

from harness import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cntrace import netfilter
from cntrace.model import Packet, Ruleset
from cntrace.netfilter import NetnsFacts, iptables_save, nft_json

RS = FIXTURES / "rulesets"
SAVES = [
    (RS / n).read_text()
    for n in (
        "docker-iptables-nft.save",
        "docker-iptables-legacy.save",
        "podman-netavark.save",
        "kube-proxy-iptables.save",
    )
]
JSONS = [
    json.loads((RS / n).read_text())
    for n in (
        "kube-proxy-nft.nft.json",
        "docker-nftables.nft.json",
        "netavark-nft.nft.json",
        "firewalld-nft.nft.json",
        "podman-netavark.nft.json",
    )
]
TOKENS = [
    "-A", "-j", "-g", "!", "-s", "-d", "-i", "-o", "-p", "tcp", "udp", "-m", "tcp", "multiport",
    "--dport", "--dports", "80", "1:2", "99999", "10.0.0.0/8", "10.0.0.300", "::1/129", "ACCEPT",
    "DROP", "DNAT", "--to-destination", "1.2.3.4:5-4", "MARK", "--set-xmark", "0x1/0xzz",
    "conntrack", "--ctstate", "NEW,BOGUS", "comment", "--comment", '"x', "[1:2]", "[x:y]", "*nat",
    "COMMIT", ":FOO", "-", "MAYBE", "statistic", "--probability", "set", "--match-set", "a",
    "src,dst,src", "physdev", "--physdev-in", "addrtype", "--dst-type", "NOWHERE", "\\", "'",
]  # fmt: skip

FACTS = NetnsFacts(frozenset({"10.0.0.1"}), {"eth0": ("10.0.0.1",)}, {"eth0": ("10.0.0.1/24",)})


def _check_save(text: str) -> None:
    """Parse, compile every rule, and walk packets: only RulesetError (with a line) may come out."""
    try:
        parsed = iptables_save.parse(text, source="t")
        nf = netfilter.Netfilter(tables=tuple(parsed.tables))
        nf.check()
    except netfilter.RulesetError as exc:
        assert exc.line is not None
        assert 1 <= exc.line <= text.count("\n") + 1
        assert f"line {exc.line}" in str(exc)
        return
    # what parses must also evaluate without crashing
    for kind in ("input", "forward", "output"):
        netfilter.walk(
            nf,
            Packet("tcp", "10.0.0.5", "10.0.0.1", 1234, 80),
            FACTS,
            kind=kind,
            iif="eth0" if kind != "output" else None,
            oif="eth0" if kind != "input" else None,
            route=lambda p: "eth0",
        )


@st.composite
def mutated_save(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(SAVES)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["drop", "dup", "cut", "swap", "token", "insert"]))
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "token":
            words = lines[i].split(" ")
            k = draw(st.integers(0, len(words) - 1))
            words[k] = draw(st.sampled_from(TOKENS))
            lines[i] = " ".join(words)
        else:
            words = draw(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=8))
            lines.insert(i, " ".join(words))
    return "\n".join(lines) + "\n"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_save())
def test_iptables_save_mutations(text: str) -> None:
    _check_save(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_iptables_save_arbitrary_text(text: str) -> None:
    _check_save(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(TOKENS), max_size=10).map(" ".join), max_size=12))
def test_iptables_save_token_soup(lines: list[str]) -> None:
    _check_save("*filter\n:INPUT ACCEPT [0:0]\n:X - [0:0]\n" + "\n".join(lines) + "\nCOMMIT\n")


JSON_LEAF = st.none() | st.booleans() | st.integers(-(2**33), 2**33) | st.text(max_size=12)
ANY_JSON = st.recursive(
    JSON_LEAF,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
INTERESTING = st.sampled_from(
    [
        "@nope", "10.0.0.1", "10.0.0.0/33", "tcp", "bogus", -1, 70000, None, [], {},
        {"prefix": {"addr": "x", "len": 8}}, {"range": [5, 1]}, {"set": [1, "a", None]},
        {"concat": [1]}, {"meta": {"key": "mark"}}, {"jump": {"target": 5}},
    ]
)  # fmt: skip


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_json(draw: st.DrawFn) -> str:
    doc = json.loads(json.dumps(draw(st.sampled_from(JSONS))))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        op = draw(st.sampled_from(["replace", "delete", "weird"]))
        if op == "delete":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = draw(ANY_JSON)
        else:
            parent[path[-1]] = draw(INTERESTING)
    indent = draw(st.sampled_from([None, 1]))
    return json.dumps(doc, indent=indent)


def _check_json(text: str) -> None:
    try:
        parsed = nft_json.parse(text, source="nft")
        nf = netfilter.Netfilter(tables=tuple(parsed.tables))
        nf.check()
    except netfilter.RulesetError as exc:
        assert exc.line is not None
        assert 1 <= exc.line <= text.count("\n") + 1
        return
    for kind in ("input", "forward", "output"):
        netfilter.walk(
            nf,
            Packet("tcp", "10.0.0.5", "10.0.0.1", 1234, 80),
            FACTS,
            kind=kind,
            iif="eth0" if kind != "output" else None,
            oif="eth0" if kind != "input" else None,
            route=lambda p: "eth0",
        )
    netfilter.rules_touching(nf, addresses=["10.0.0.5"], interfaces=["eth0"], ports=[80])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_json())
def test_nft_json_mutations(text: str) -> None:
    _check_json(text)


@settings(max_examples=200, deadline=None)
@given(ANY_JSON.map(lambda d: json.dumps({"nftables": d if isinstance(d, list) else [d]})))
def test_nft_json_arbitrary_documents(text: str) -> None:
    _check_json(text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_nft_json_arbitrary_text(text: str) -> None:
    _check_json(text)


@settings(max_examples=100, deadline=None)
@given(mutated_save(), mutated_json())
def test_load_never_raises_anything_but_ruleset_error(save: str, doc: str) -> None:
    try:
        netfilter.load(Ruleset(iptables_nft=save, nft_json=doc)).check()
    except netfilter.RulesetError as exc:
        assert exc.line is not None
