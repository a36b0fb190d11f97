"""What-if on recorded lab snapshots: each kind of change, the namespace prefixes, every lab
fault's fix checked, and bad changes as one-line errors. The live tier
(tests/integration/test_whatif_lab.py) checks the same changes against the kernel."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import jsonschema
import pytest
from clirun import run_json, run_ok
from labcases import CASES, LabCase

from cntrace import whatif
from cntrace.errors import BadInput
from cntrace.model import Path as PathResult
from cntrace.model import Snapshot
from cntrace.path import predict
from cntrace.sources import recorded
from cntrace.whatif import fixes, nft_rule
from cntrace.whatif.compare import compare
from cntrace.whatif.iptables import canonical

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "fixtures" / "snapshots" / "lab"
RULESETS = REPO / "fixtures" / "rulesets"
INTERNET = "203.0.113.10:80"


@cache
def snap(state: str) -> Snapshot:
    return recorded.load(str(LAB / f"{state}.json"))


def what_if(state: str, src: str, dst: str, *changes: str, **kw: object) -> PathResult:
    s = snap(state)
    before = predict(s, src, dst, **kw)  # type: ignore[arg-type]
    after, _ = whatif.apply_all(
        s, [whatif.parse(c) for c in changes], whatif.host_of_path(s, before)
    )
    return predict(after, src, dst, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", [c for c in CASES if c.code], ids=[c.id for c in CASES if c.code])
def test_every_lab_fault_fix_delivers_as_a_what_if(case: LabCase) -> None:
    s = snap(case.state)
    path = predict(s, case.src, case.recorded_dst, **case.options)  # type: ignore[arg-type]
    checks = fixes.check_all(
        s,
        path,
        lambda x: predict(x, case.src, case.recorded_dst, **case.options),  # type: ignore[arg-type]
    )
    mine = [c for c in checks if c.code == case.code]
    assert mine and mine[0].status == "delivers", mine[0].note if mine else checks
    assert mine[0].after is not None and mine[0].after.verdict.status == "delivered"
    # Nothing was changed on the snapshot itself.
    assert predict(s, case.src, case.recorded_dst, **case.options).verdict == path.verdict  # type: ignore[arg-type]


NFT_DROP = [
    "nft add table inet t",
    "nft add chain inet t fwd { type filter hook forward priority 0; policy accept; }",
    "nft add rule inet t fwd ip daddr 203.0.113.0/24 counter drop",
]
KINDS = [
    ("healthy", "client", "web:80", ["iptables -I DOCKER-USER -d 10.210.0.2 -j DROP"], "dropped"),
    (
        "healthy",
        "client",
        INTERNET,
        ["iptables -t nat -D POSTROUTING -s 10.210.0.0/16 ! -o lab0 -j MASQUERADE"],
        "timeout",
    ),
    ("healthy", "client", "web:80", ["*filter\n:FORWARD DROP [0:0]\nCOMMIT\n"], "dropped"),
    ("healthy", "client", INTERNET, NFT_DROP, "dropped"),
    ("healthy", "client", INTERNET, ["ip route del default"], "unreachable"),
    ("healthy", "client", INTERNET, ["ip rule add to 203.0.113.0/24 prohibit"], "unreachable"),
    ("healthy", "client", INTERNET, ["sysctl -w net.ipv4.ip_forward=0"], "dropped"),
    ("healthy", "client", "web:80", ["ip link set veth-web down"], "dropped"),
    ("healthy", "client", "web:9000", ["ip link set veth-web mtu 1280"], "dropped"),
    ("healthy", "upstream", "host:8081", ["docker run -d --name web -p 8081:80 img"], "delivered"),
    ("isolated-networks", "api", "db:80", ["docker network connect bridge api"], "delivered"),
    ("no-listener", "client", "web:80", ["docker exec web nc -lk -p 80"], "delivered"),
]


@pytest.mark.parametrize("state,src,dst,changes,status", KINDS)
def test_each_kind_of_change(
    state: str, src: str, dst: str, changes: list[str], status: str
) -> None:
    kw: dict[str, object] = {"proto": "udp", "size": 1400} if dst.endswith(":9000") else {}
    assert what_if(state, src, dst, *changes, **kw).verdict.status == status


def test_iptables_restore_noflush_file_appends() -> None:
    frag = "*filter\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -p tcp --dport 80 -j REJECT\nCOMMIT\n"
    c = whatif.parse("iptables-restore --noflush < frag.rules", read=lambda p: frag)
    s = snap("healthy")
    after, _ = whatif.apply_all(s, [c], s.netns[0])
    result = predict(after, "client", "web:80")
    assert result.verdict.status == "refused"
    assert result.verdict.rule is not None
    assert result.verdict.rule.text == (
        "-A DOCKER-USER -p tcp -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable"
    )


def test_nft_file_and_block_syntax() -> None:
    text = (
        "#!/usr/sbin/nft -f\ntable inet t {\n\tchain fwd {\n\t\ttype filter hook forward "
        "priority filter; policy accept;\n\t\tip daddr 203.0.113.0/24 tcp dport { 80, 443 } "
        'counter drop comment "no web"\n\t}\n}\n'
    )
    c = whatif.parse("nft -f rules.nft", read=lambda p: text)
    s = snap("healthy")
    after, _ = whatif.apply_all(s, [c], whatif.host_of_path(s, None) or s.netns[0])
    result = predict(after, "client", INTERNET)
    assert result.verdict.status == "dropped"
    assert result.verdict.rule is not None and "no web" in result.verdict.rule.text


@pytest.mark.parametrize(
    "prefix",
    ["ip netns exec cntrace-fx.web ", "netns:cntrace-fx.web ", "web: ", "docker exec -it web ",
     "nsenter -t PID -n ", "sudo ip netns exec cntrace-fx.web "],
)  # fmt: skip
def test_namespace_prefixes_name_the_same_namespace(prefix: str) -> None:
    s = snap("no-listener")
    pid = next(c.pid for c in s.containers if c.name == "web")
    c = whatif.parse(prefix.replace("PID", str(pid)) + "nc -l -p 80")
    after, done = whatif.apply_all(s, [c], None)
    assert done[0].netns == "web" and not done[0].default
    assert predict(after, "client", "web:80").verdict.status == "delivered"


def test_default_namespace_is_the_paths_host_and_is_said() -> None:
    s = snap("ip-forward-disabled")
    before = predict(s, "client", INTERNET)
    _, done = whatif.apply_all(
        s, [whatif.parse("sysctl -w net.ipv4.ip_forward=1")], whatif.host_of_path(s, before)
    )
    assert done[0].netns == "cntrace-fx.host" and done[0].default


def test_iptables_rule_specs_are_written_as_iptables_save_prints_them() -> None:
    words = ["-p", "tcp", "--dport", "80", "-d", "10.0.0.1", "!", "-i", "lab0", "-j", "REJECT"]
    assert " ".join(canonical(words, v6=False)) == (
        "-d 10.0.0.1/32 ! -i lab0 -p tcp -m tcp --dport 80 -j REJECT --reject-with "
        "icmp-port-unreachable"
    )


@pytest.mark.parametrize("name", ["docker-nftables", "firewalld-nft"])
def test_nft_rule_text_lowers_to_what_nft_lists(name: str) -> None:
    """Each rule of a recorded `nft list ruleset` becomes the JSON `nft -j` listed for it."""
    text = (RULESETS / f"{name}.nft.txt").read_text()
    items = json.loads((RULESETS / f"{name}.nft.json").read_text())["nftables"]
    listed: dict[tuple[str, str, str], list[dict[str, object]]] = {}
    for it in items:
        if "rule" in it:
            r = it["rule"]
            listed.setdefault((r["family"], r["table"], r["chain"]), []).append(r)
    family = table = chain = ""
    seen = 0
    for line in text.split("\n"):
        if m := re.match(r"table (\S+) (\S+) \{", line.strip()):
            family, table = m.groups()
        elif m := re.match(r"\tchain (\S+) \{", line):
            chain, k = m.group(1), 0
        elif chain and line.startswith("\t\t") and not line.startswith("\t\t\t"):
            body = line.strip()
            if body.startswith(("type ", "policy ")):
                continue
            rule = listed[(family, table, chain)][k]
            k += 1
            lowered = nft_rule.Rule(nft_rule.tokens(body), family)
            assert lowered.parse() == rule["expr"], body
            assert lowered.comment == rule.get("comment")
            seen += 1
        elif line == "\t}":
            chain = ""
    assert seen > 20


BAD = [
    "",
    "rm -rf /",
    "iptables -L",
    "iptables -A",
    "iptables -D DOCKER-USER -j ACCEPT -s 1.2.3.4",
    "ip route add 10.9.0.0/16",
    "ip link set nosuch up",
    "ip link set eth0 mtu 12",
    "sysctl -w kernel.panic=1",
    "nft add rule ip nosuch c drop",
    "nft add rule ip filter FORWARD drop",
    "docker network connect nosuchnet web",
    "nc -p 80",
    "nft add table inet t; add chain inet t c; add rule inet t c meta mark & 1 == 1 drop",
    "ip netns exec nosuch sysctl -w net.ipv4.ip_forward=1",
    "nft -f /nonexistent",
]


@pytest.mark.parametrize("text", BAD)
def test_bad_changes_are_one_line_bad_input(text: str) -> None:
    s = snap("healthy")
    with pytest.raises(BadInput) as exc:
        whatif.apply_all(s, [whatif.parse(text)], s.netns[0])
    assert "\n" not in str(exc.value) and "Traceback" not in str(exc.value)


def test_comparison_names_what_differs() -> None:
    s = snap("forward-drop")
    before = predict(s, "client", INTERNET)
    after = what_if("forward-drop", "client", INTERNET, "iptables -D DOCKER-USER 1")
    c = compare(before, after)
    assert c.verdict_changed and c.rule_changed and c.findings_gone == ("forward-drop",)
    assert [r.same for r in c.rows[:5]] == [True] * 5 and not c.rows[5].same


def test_cli_what_if_json_follows_its_schema(tmp_path: Path) -> None:

    schema = json.loads((REPO / "docs" / "schemas" / "whatif.schema.json").read_text())
    fix = "ip -n cntrace-fx.host link set veth-web up"
    argv = ["path", "--json", "--snapshot", str(LAB / "interface-down.json"), "client", "web:80"]
    doc = run_json(*argv, "--what-if", fix)
    jsonschema.validate(doc, schema)
    path_schema = json.loads((REPO / "docs" / "schemas" / "path.schema.json").read_text())
    jsonschema.validate(doc["before"], path_schema)
    jsonschema.validate(doc["after"], path_schema)
    assert doc["differences"]["verdict"] == {"before": "dropped", "after": "delivered"}
    argv = ["path", "--snapshot", str(LAB / "healthy.json"), "client", "web:80"]
    bad = run_ok(*argv, "--what-if", "ip link set nosuch down", rc=2)
    assert bad.stderr.count("\n") == 1


def _twin(s: Snapshot, off: int = 10**6) -> Snapshot:
    """``s`` with a second copy of its whole lab listed first: another host holding bridges,
    networks and containers of the same names (two labs, or nested nodes, on one machine)."""
    from dataclasses import replace

    def link(lk):  # type: ignore[no-untyped-def]
        return replace(lk, peer_netns=lk.peer_netns + off) if lk.peer_netns is not None else lk

    twins = tuple(
        replace(
            ns,
            inode=ns.inode + off,
            name=f"twin-{ns.name or ns.inode}",
            paths=(),
            is_root=False,
            links=tuple(link(lk) for lk in ns.links),
        )
        for ns in s.netns
    )
    others = tuple(
        replace(c, name=f"twin-{c.name}", id=f"twin-{c.id}", netns=c.netns + off)
        for c in s.containers
        if c.netns is not None
    )
    return replace(s, netns=(*twins, *s.netns), containers=(*others, *s.containers))


def test_network_connect_uses_the_containers_own_host_when_two_have_that_bridge() -> None:
    s = _twin(snap("isolated-networks"))
    before = predict(s, "api", "db:80")
    assert before.verdict.status == "dropped", before.verdict
    after, _ = whatif.apply_all(
        s, [whatif.parse("docker network connect bridge api")], whatif.host_of_path(s, before)
    )
    assert predict(after, "api", "db:80").verdict.status == "delivered"
    twin_host = next(
        ns for ns in s.netns if ns.inode >= 10**6 and any(lk.kind == "bridge" for lk in ns.links)
    )
    assert after.ns(twin_host.inode) == twin_host  # the other host's bridge is left alone
