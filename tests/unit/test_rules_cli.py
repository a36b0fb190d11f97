"""`cntrace rules` on saved rulesets (no root), and the --packet syntax."""

from __future__ import annotations

import json

import clirun
import pytest
from harness import FIXTURES

from cntrace.errors import BadInput
from cntrace.model import Packet
from cntrace.netfilter.spec import parse_packet

RS = FIXTURES / "rulesets"
DOCKER = str(RS / "docker-iptables-nft.save")
IFACES = ["--iface", "nfup0=198.51.100.2/24", "--iface", "docker0=172.17.0.1/16"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    res = clirun.run(*argv, inproc=True)
    return res.returncode, res.stdout, res.stderr


def test_listing_json_groups_rules_by_hook(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "rules", "--ruleset-file", DOCKER, *IFACES, "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["schema"] == "cntrace.rules/v1"
    assert doc["backends"] == ["iptables-nft"]
    fwd = doc["hooks"]["forward"]
    assert fwd["base_chains"][0]["policy"] == "drop"
    first = fwd["rules"][0]
    assert first["text"] == "-A FORWARD -j DOCKER-USER" and first["packets"] > 0
    assert set(doc["hooks"]) == {"prerouting", "forward", "output", "postrouting", "input"}


def test_walk_json_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    spec = "tcp 203.0.113.10:40000 -> 198.51.100.2:8080 in nfup0"
    rc, out, _ = run(capsys, "rules", "--ruleset-file", DOCKER, *IFACES, "--packet", spec, "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["schema"] == "cntrace.rules.walk/v2" and doc["certain"]
    w = doc["walk"]
    assert w["verdict"] == "accept" and w["kind"] == "forward" and w["oif"] == "docker0"
    assert w["packet_after"]["dst"] == "172.17.0.2" and w["packet_after"]["dport"] == 80
    assert w["nats"][0]["rule"]["chain"] == "DOCKER"
    dropped = "tcp 203.0.113.10:40000 -> 172.17.0.2:22 in nfup0"
    rc, out, _ = run(capsys, "rules", "--ruleset-file", DOCKER, *IFACES, "--packet", dropped)
    assert rc == 1  # the answer is negative
    assert "verdict DROP by iptables-nft ip filter FORWARD policy drop" in out


def test_text_walk_names_rules_and_nat(capsys: pytest.CaptureFixture[str]) -> None:
    spec = "udp 172.17.0.2:40000 -> 203.0.113.10:53 in docker0 out nfup0"
    rc, out, _ = run(capsys, "rules", "--ruleset-file", DOCKER, *IFACES, "--packet", spec)
    assert rc == 0
    assert "MASQUERADE" in out and "=>" in out
    assert "after NAT udp 198.51.100.2:40000 -> 203.0.113.10:53" in out


def test_nft_json_and_uncertainty(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(
        capsys,
        "rules",
        "--ruleset-file",
        str(RS / "kube-proxy-nft.nft.json"),
        "--iface",
        "eth0=192.168.0.2/24",
        "--packet",
        "tcp 10.0.1.5:40000 -> 172.30.0.41:80 in eth0",
    )
    assert rc == 0 and "uncertain" in out and "numgen random mod 2" in out


def test_several_files_make_one_ruleset(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(
        capsys,
        "rules",
        "--ruleset-file",
        DOCKER,
        "--ruleset-file",
        str(RS / "docker-iptables-nft.nft.json"),
        "--json",
    )
    doc = json.loads(out)
    assert rc == 0 and len(doc["ignored"]) == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["rules", "--ruleset-file", "/nonexistent/rules"],
        ["rules", "--ruleset-file", DOCKER, "--packet", "tcp 1.2.3.4 -> 5.6.7.8:80"],
        ["rules", "--ruleset-file", DOCKER, "--iface", "eth0"],
        ["rules", "--netns", "x", "--iface", "eth0=10.0.0.1/24"],
    ],
)
def test_bad_input_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    assert err.startswith("cntrace: error: ") and err.count("\n") == 1


def test_malformed_ruleset_file_names_the_line(
    capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "bad.save"
    bad.write_text("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 999.1.1.1 -j DROP\nCOMMIT\n")
    rc, _, err = run(capsys, "rules", "--ruleset-file", str(bad))
    assert rc == 2 and "line 3" in err


# --------------------------------------------------------------------------- --packet syntax


@pytest.mark.parametrize(
    ("spec", "packet", "iif", "oif", "state"),
    [
        (
            "tcp 172.17.0.2:40000 -> 203.0.113.10:80 in docker0",
            Packet("tcp", "172.17.0.2", "203.0.113.10", 40000, 80),
            "docker0",
            None,
            "NEW",
        ),
        (
            "udp [2001:db8::5]:5353 -> [2001:db8::1]:53 in eth0 out br0 state established",
            Packet("udp", "2001:db8::5", "2001:db8::1", 5353, 53, 6),
            "eth0",
            "br0",
            "ESTABLISHED",
        ),
        (
            "icmp 10.0.0.5 -> 10.0.0.1",
            Packet("icmp", "10.0.0.5", "10.0.0.1", icmp_type=8),
            None,
            None,
            "NEW",
        ),
        (
            "tcp 10.0.0.5:1 -> 10.0.0.1:2 mark 0x4000",
            Packet("tcp", "10.0.0.5", "10.0.0.1", 1, 2, mark=0x4000),
            None,
            None,
            "NEW",
        ),
    ],
)
def test_packet_spec(
    spec: str, packet: Packet, iif: str | None, oif: str | None, state: str
) -> None:
    p = parse_packet(spec)
    assert (p.packet, p.iif, p.oif, p.ctstate) == (packet, iif, oif, state)


@pytest.mark.parametrize(
    "spec",
    [
        "tcp 10.0.0.1:1 10.0.0.2:2",
        "bogus 10.0.0.1:1 -> 10.0.0.2:2",
        "tcp 10.0.0.1:1 -> 10.0.0.2",
        "tcp 10.0.0.1:1 -> 10.0.0.2:99999",
        "tcp 10.0.0.1:1 -> [2001:db8::1]:2",
        "tcp 10.0.0.1:1 -> 10.0.0.2:2 in",
        "tcp 10.0.0.1:1 -> 10.0.0.2:2 sideways eth0",
        "tcp 10.0.0.1:1 -> 10.0.0.2:2 state sleepy",
        "icmp 10.0.0.1 -> 10.0.0.2 type nope",
        "icmp 10.0.0.1:5 -> 10.0.0.2",
        "tcp 300.0.0.1:1 -> 10.0.0.2:2",
    ],
)
def test_bad_packet_specs(spec: str) -> None:
    with pytest.raises(BadInput):
        parse_packet(spec)
