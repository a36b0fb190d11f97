"""Property tests of the parsers: what must parse does, and what cannot raises RulesetError naming
a line within the input, never another exception (a traceback for the user).

Three kinds of input: rulesets generated from a grammar of valid rules (they must parse, compile
and evaluate, with the rules, texts and counters written); the real fixtures mutated, where a
mutation that keeps the text valid (a rule dropped or repeated) must still parse; and arbitrary
or damaged text and JSON, which may be rejected but only with a RulesetError. A parser that
rejected everything would fail the first two.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from harness import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cntrace import netfilter
from cntrace.model import Packet, Ruleset
from cntrace.netfilter import NetnsFacts, iptables_save, nft_json
from cntrace.netfilter.steps import Match

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
PACKET = Packet("tcp", "10.0.0.5", "10.0.0.1", 1234, 80)


def _walk_all(nf: netfilter.Netfilter) -> None:
    """What parses must also evaluate without crashing."""
    for kind in ("input", "forward", "output"):
        netfilter.walk(
            nf,
            PACKET,
            FACTS,
            kind=kind,
            iif="eth0" if kind != "output" else None,
            oif="eth0" if kind != "input" else None,
            route=lambda p: "eth0",
        )


def _check_save(text: str, must_parse: bool = False) -> netfilter.Netfilter | None:
    """Parse, compile every rule, and walk packets: only RulesetError (with a line) may come out,
    and none at all when the text is valid."""
    try:
        parsed = iptables_save.parse(text, source="t")
        nf = netfilter.Netfilter(tables=tuple(parsed.tables))
        nf.check()
    except netfilter.RulesetError as exc:
        assert not must_parse, f"a valid text was rejected: {exc}"
        assert exc.line is not None
        assert 1 <= exc.line <= text.count("\n") + 1
        assert f"line {exc.line}" in str(exc)
        return None
    _walk_all(nf)
    return nf


def _is_rule(line: str) -> bool:
    return line.startswith(("-A ", "["))


@st.composite
def mutated_save(draw: st.DrawFn) -> tuple[str, bool]:
    """A fixture with 1-4 mutations, and whether it is still valid: dropping or repeating a rule
    line keeps it so; cutting, swapping and token changes may not."""
    lines = draw(st.sampled_from(SAVES)).splitlines()
    valid = True
    for _ in range(draw(st.integers(1, 4))):
        op = draw(
            st.sampled_from(
                ["drop-rule", "dup-rule", "drop", "dup", "cut", "swap", "token", "insert"]
            )
        )
        if op.endswith("-rule"):
            rules = [k for k, line in enumerate(lines) if _is_rule(line)]
            if not rules:
                continue
            i = draw(st.sampled_from(rules))
            if op == "drop-rule":
                del lines[i]
            else:
                lines.insert(i, lines[i])
            continue
        if not lines:
            break
        valid = False
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
    return "\n".join(lines) + "\n", valid


def test_fixtures_parse() -> None:
    """The unmutated inputs all parse (the mutations below start from valid text)."""
    for text in SAVES:
        _check_save(text, must_parse=True)
    for doc in JSONS:
        _check_json(json.dumps(doc), must_parse=True)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_save())
def test_iptables_save_mutations(case: tuple[str, bool]) -> None:
    _check_save(*case)


# --------------------------------------------------------------------------- valid by grammar

IFACES = st.sampled_from(["eth0", "veth1a2b", "docker0", "br-934555f6df94", "lo"])
ADDR4 = st.ip_addresses(v=4).map(str)
PORT = st.integers(0, 65535)
WORDS = st.lists(st.sampled_from(["web", "ns/svc", "allow", "x:1", "a-b"]), min_size=1, max_size=3)


def _neg(flag: bool) -> str:
    return "! " if flag else ""


def _port_range(lo: int, hi: int) -> str:
    return f"{min(lo, hi)}:{max(lo, hi)}"


# Option groups of one rule, each valid on its own; ``uncertain`` ones evaluate as unsupported.
MATCHES = st.one_of(
    st.builds(lambda n, a, p: f"{_neg(n)}-s {a}/{p}", st.booleans(), ADDR4, st.integers(0, 32)),
    st.builds(lambda n, a: f"{_neg(n)}-d {a}", st.booleans(), ADDR4),
    st.builds(lambda n, i: f"{_neg(n)}-i {i}", st.booleans(), IFACES),
    st.builds(lambda i: f"-o {i[:3]}+", IFACES),
    st.builds(lambda p: f"-p tcp -m tcp --dport {p}", PORT),
    st.builds(lambda a, b: f"-p udp -m udp --sport {_port_range(a, b)}", PORT, PORT),
    st.builds(lambda a, b: f"-p tcp -m multiport --dports {a},{b}", PORT, PORT),
    st.builds(
        lambda s: f"-m conntrack --ctstate {','.join(s)}",
        st.sets(st.sampled_from(["NEW", "ESTABLISHED", "RELATED", "INVALID", "DNAT"]), min_size=1),
    ),
    st.builds(lambda n: f"-m state {_neg(n)}--state NEW,ESTABLISHED", st.booleans()),
    st.builds(lambda v, m: f"-m mark --mark 0x{v & m:x}/0x{m:x}", PORT, st.integers(1, 2**32 - 1)),
    st.builds(lambda w: f'-m comment --comment "{" ".join(w)}"', WORDS),
    st.builds(lambda t: f"-m addrtype --dst-type {t}", st.sampled_from(["LOCAL", "BROADCAST"])),
    st.builds(
        lambda a, b: f"-m iprange --src-range 10.0.{min(a, b)}.1-10.0.{max(a, b)}.9",
        st.integers(0, 255),
        st.integers(0, 255),
    ),
    st.builds(lambda i: f"-m physdev --physdev-in {i}", IFACES),
    st.builds(lambda t: f"-m pkttype --pkt-type {t}", st.sampled_from(["unicast", "broadcast"])),
    st.just("-p icmp -m icmp --icmp-type echo-request"),
    st.just("-m statistic --mode random --probability 0.50000000000"),
)
UNCERTAIN = st.sampled_from(
    ["-m limit --limit 5/sec", "-m statistic --mode nth --every 2 --packet 0"]
)
FILTER_TARGETS = st.sampled_from(
    [
        "-j ACCEPT", "-j DROP", "-j RETURN", "-j REJECT --reject-with icmp-port-unreachable",
        '-j LOG --log-prefix "cntrace: "', "-j MARK --set-xmark 0x4000/0x4000",
        "-j CONNMARK --save-mark", "-j NFQUEUE --queue-num 3", "-j USER", "-g USER", "",
    ]
)  # fmt: skip
NAT_TARGETS = st.one_of(
    st.builds(lambda a, p: f"-j DNAT --to-destination {a}:{p}", ADDR4, st.integers(1, 65535)),
    st.builds(lambda a: f"-j SNAT --to-source {a}", ADDR4),
    st.just("-j MASQUERADE --random-fully"),
    st.builds(lambda p: f"-j REDIRECT --to-ports {p}", st.integers(1, 65535)),
    st.just("-j RETURN"),
)
CHAINS = {"filter": ["INPUT", "FORWARD", "OUTPUT", "USER"], "nat": ["PREROUTING", "POSTROUTING"]}


@st.composite
def valid_rule(draw: st.DrawFn, table: str) -> tuple[str, str, tuple[int, int] | None, bool]:
    """(chain, the rule as iptables-save prints it after -A, counters, has an uncertain match)."""
    chain = draw(st.sampled_from(CHAINS[table]))
    parts = draw(st.lists(MATCHES, max_size=4, unique_by=lambda m: tuple(m.split()[:2])))
    if sum("-p " in p for p in parts) > 1:  # iptables takes one -p per rule
        parts = [p for p in parts if "-p " not in p]
    uncertain = draw(st.booleans()) and draw(st.booleans())
    if uncertain:
        parts.append(draw(UNCERTAIN))
    target = draw(FILTER_TARGETS if table == "filter" else NAT_TARGETS)
    if chain == "USER" and target.endswith("USER"):  # the kernel refuses loops
        target = "-j RETURN"
    parts.append(target)
    counters = draw(st.none() | st.tuples(st.integers(0, 10**9), st.integers(0, 10**12)))
    return chain, " ".join(p for p in parts if p), counters, uncertain


@st.composite
def valid_save(
    draw: st.DrawFn,
) -> tuple[str, list[tuple[str, str, str, tuple[int, int] | None, bool]]]:
    """An iptables-save text made of valid rules, and the rules it holds (table first)."""
    header = draw(st.sampled_from(["# Generated by iptables-save v1.8.9 (nf_tables)", ""]))
    lines = [header] if header else []
    rules: list[tuple[str, str, str, tuple[int, int] | None, bool]] = []
    for table in ("filter", "nat"):
        lines.append(f"*{table}")
        for name in CHAINS[table]:
            lines.append(f":{name} {'-' if name == 'USER' else 'ACCEPT'} [0:0]")
        for chain, body, counters, uncertain in draw(st.lists(valid_rule(table), max_size=12)):
            rule = f"-A {chain} {body}".rstrip()
            lines.append(f"[{counters[0]}:{counters[1]}] {rule}" if counters else rule)
            rules.append((table, chain, rule, counters, uncertain))
        lines.append("COMMIT")
    return "\n".join(lines) + "\n", rules


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_save())
def test_iptables_save_valid_rules_parse(case: tuple[str, list[Any]]) -> None:
    """Every valid rule parses and compiles, with its chain, position, text and counters, and
    only the matches the evaluator cannot model are uncertain."""
    text, expected = case
    nf = _check_save(text, must_parse=True)
    assert nf is not None
    got = [
        (
            t.name,
            c.name,
            r.text,
            r.counters,
            any(isinstance(s, Match) and s.unsupported for s in r.steps),
        )
        for t in nf.tables
        for c in t.chains.values()
        for r in c.rules
    ]
    assert sorted(got, key=repr) == sorted(expected, key=repr)
    for t in nf.tables:
        for c in t.chains.values():
            assert [r.position for r in c.rules] == list(range(1, len(c.rules) + 1))


@settings(max_examples=200, deadline=None)
@given(ADDR4, st.integers(0, 32), ADDR4, st.booleans())
def test_source_prefix_decides(net: str, plen: int, src: str, negate: bool) -> None:
    """``[!] -s NET/LEN -j DROP`` drops exactly the sources (not) in the prefix."""
    text = f"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT {_neg(negate)}-s {net}/{plen} -j DROP\nCOMMIT\n"
    nf = netfilter.Netfilter(tables=tuple(iptables_save.parse(text).tables))
    w = netfilter.walk(nf, Packet("udp", src, "10.0.0.1", 5, 53), FACTS, kind="input", iif="eth0")
    inside = ipaddress.ip_address(src) in ipaddress.ip_network(f"{net}/{plen}", strict=False)
    assert w.verdict == ("drop" if inside != negate else "accept")


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


def _rule_expr(item: Any) -> list[dict[str, Any]] | None:
    """The statements of a rule item still shaped as nft prints it, else None."""
    rule = item.get("rule") if isinstance(item, dict) else None
    expr = rule.get("expr") if isinstance(rule, dict) else None
    if isinstance(expr, list) and all(isinstance(e, dict) for e in expr):
        return expr
    return None


@st.composite
def mutated_json(draw: st.DrawFn) -> tuple[str, bool]:
    """A fixture with 1-3 mutations, and whether it is still valid: dropping or repeating a rule
    or dropping a counter keeps it so; replacing or deleting any other value may not."""
    doc = json.loads(json.dumps(draw(st.sampled_from(JSONS))))
    items = doc["nftables"]
    valid = True
    for _ in range(draw(st.integers(1, 3))):
        op = draw(
            st.sampled_from(["drop-rule", "dup-rule", "drop-counter", "replace", "delete", "weird"])
        )
        if op.endswith(("-rule", "-counter")):
            rules = [k for k, item in enumerate(items) if _rule_expr(item) is not None]
            if op == "drop-counter":
                rules = [
                    k for k in rules if any("counter" in e for e in _rule_expr(items[k]) or ())
                ]
            if not rules:
                continue
            k = draw(st.sampled_from(rules))
            if op == "drop-rule":
                del items[k]
            elif op == "dup-rule":
                items.insert(k, json.loads(json.dumps(items[k])))
            else:
                expr = _rule_expr(items[k]) or []
                expr.remove(next(e for e in expr if "counter" in e))
            continue
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        valid = False
        path = draw(st.sampled_from(paths))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if op == "delete":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = draw(ANY_JSON)
        else:  # a copy: a later mutation must not change the shared sample
            parent[path[-1]] = json.loads(json.dumps(draw(INTERESTING)))
        items = doc.get("nftables") if isinstance(doc.get("nftables"), list) else []
    indent = draw(st.sampled_from([None, 1]))
    return json.dumps(doc, indent=indent), valid


def _check_json(text: str, must_parse: bool = False) -> netfilter.Netfilter | None:
    try:
        parsed = nft_json.parse(text, source="nft")
        nf = netfilter.Netfilter(tables=tuple(parsed.tables))
        nf.check()
    except netfilter.RulesetError as exc:
        assert not must_parse, f"a valid document was rejected: {exc}"
        assert exc.line is not None
        assert 1 <= exc.line <= text.count("\n") + 1
        return None
    _walk_all(nf)
    netfilter.rules_touching(nf, addresses=["10.0.0.5"], interfaces=["eth0"], ports=[80])
    return nf


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_json())
def test_nft_json_mutations(case: tuple[str, bool]) -> None:
    _check_json(*case)


def _payload(proto: str, fld: str) -> dict[str, Any]:
    return {"payload": {"protocol": proto, "field": fld}}


def _m(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


# Statements of one rule, each valid on its own, as ``nft -j`` prints them.
NFT_MATCHES = st.one_of(
    st.builds(
        lambda a, n, op: _m(_payload("ip", "saddr"), {"prefix": {"addr": a, "len": n}}, op),
        ADDR4,
        st.integers(0, 32),
        st.sampled_from(["==", "!="]),
    ),
    st.builds(lambda a: _m(_payload("ip", "daddr"), a), ADDR4),
    st.builds(
        lambda p, a, b: _m(
            _payload("tcp", "dport"), {"set": [p, {"range": [min(a, b), max(a, b)]}]}
        ),
        PORT,
        PORT,
        PORT,
    ),
    st.builds(lambda i: _m({"meta": {"key": "iifname"}}, i), IFACES),
    st.builds(lambda i: _m({"meta": {"key": "oifname"}}, f"{i[:3]}*", "!="), IFACES),
    st.builds(
        lambda s: _m({"ct": {"key": "state"}}, sorted(s), "in"),
        st.sets(st.sampled_from(["new", "established", "related", "invalid"]), min_size=1),
    ),
    st.builds(
        lambda v, m: _m({"&": [{"meta": {"key": "mark"}}, m]}, v & m),
        PORT,
        st.integers(1, 2**32 - 1),
    ),
    st.just(_m({"meta": {"key": "l4proto"}}, "udp")),
    st.builds(lambda p, b: {"counter": {"packets": p, "bytes": b}}, PORT, PORT),
    st.just({"log": {"prefix": "cntrace: "}}),
)
NFT_UNCERTAIN = st.just({"limit": {"rate": 5, "per": "second"}})
NFT_TARGETS = st.sampled_from(
    [
        {"accept": None}, {"drop": None}, {"return": None}, {"jump": {"target": "user"}},
        {"goto": {"target": "user"}}, {"reject": None}, {"masquerade": None},
        {"dnat": {"addr": "172.17.0.2", "port": 8080}},
        {"mangle": {"key": {"meta": {"key": "mark"}}, "value": 16384}}, {"counter": None},
    ]
)  # fmt: skip


@st.composite
def valid_nft(draw: st.DrawFn) -> tuple[str, list[tuple[str, int, bool]]]:
    """An nft JSON document made of valid rules, and (chain, statements, uncertain) for each."""
    family = draw(st.sampled_from(["ip", "inet"]))
    items: list[dict[str, Any]] = [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": family, "name": "t", "handle": 1}},
    ]
    for n, (name, hook) in enumerate([("input", "input"), ("fwd", "forward"), ("user", None)], 1):
        chain: dict[str, Any] = {"family": family, "table": "t", "name": name, "handle": n}
        if hook:
            chain.update(type="filter", hook=hook, prio=0, policy="accept")
        items.append({"chain": chain})
    rules: list[tuple[str, int, bool]] = []
    for _ in range(draw(st.integers(0, 12))):
        name = draw(st.sampled_from(["input", "fwd", "user"]))
        expr = draw(st.lists(NFT_MATCHES, max_size=4))
        uncertain = draw(st.booleans()) and draw(st.booleans())
        if uncertain:
            expr.append(draw(NFT_UNCERTAIN))
        target = draw(NFT_TARGETS)
        if name == "user" and ("jump" in target or "goto" in target):  # the kernel refuses loops
            target = {"return": None}
        expr.append(target)
        rule = {"family": family, "table": "t", "chain": name, "handle": 10 + len(rules)}
        items.append({"rule": {**rule, "expr": expr}})
        rules.append((name, len(expr), uncertain))
    return json.dumps({"nftables": items}, indent=draw(st.sampled_from([None, 1]))), rules


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_nft())
def test_nft_json_valid_rules_parse(case: tuple[str, list[tuple[str, int, bool]]]) -> None:
    """Every valid rule parses, one step per statement, with a text, and only the statements
    the evaluator cannot model are uncertain."""
    text, expected = case
    nf = _check_json(text, must_parse=True)
    assert nf is not None
    (table,) = nf.tables
    got = [
        (c.name, len(r.steps), any(isinstance(s, Match) and s.unsupported for s in r.steps))
        for c in table.chains.values()
        for r in c.rules
    ]
    assert sorted(got) == sorted(expected)
    assert all(r.text for c in table.chains.values() for r in c.rules)


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
def test_load_raises_only_ruleset_error(save: tuple[str, bool], doc: tuple[str, bool]) -> None:
    """Both back ends at once; valid texts load."""
    try:
        netfilter.load(Ruleset(iptables_nft=save[0], nft_json=doc[0])).check()
    except netfilter.RulesetError as exc:
        assert not (save[1] and doc[1]), f"valid texts were rejected: {exc}"
        assert exc.line is not None
