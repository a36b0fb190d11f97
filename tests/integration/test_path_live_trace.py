"""`cntrace path --live` on the lab: the probe is seen at the predicted hops, NAT rewrites show at
the hop that makes them, drops carry the kernel's reason and the rule, RST and ICMP replies are
reported; the capture back end passes the same tests without reasons and rules."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from labkit import Lab, cntrace

BACKENDS = ("ebpf", "capture")

# (fault, src, dst, extra args, ebpf status, hop kind of the verdict, kernel reason, rule chain)
CASES = [
    (None, "client", "web:80", (), "delivered", "socket", None, None),
    (None, "client", "web", ("--proto", "icmp"), "delivered", "socket", None, None),
    (None, "client", "web:9000", ("--proto", "udp"), "delivered", "socket", None, None),
    (
        None,
        "client",
        "api:80",
        (),
        "dropped",
        "netfilter",
        "NETFILTER_DROP",
        "DOCKER-ISOLATION-STAGE-2",
    ),
    ("loopback-bind", "client", "web:80", (), "refused", "socket", "NO_SOCKET", None),
    ("no-listener", "upstream", "host:8080", (), "refused", "socket", "NO_SOCKET", None),
    (
        "isolated-networks",
        "api",
        "db:80",
        (),
        "dropped",
        "netfilter",
        "NETFILTER_DROP",
        "DOCKER-ISOLATION-STAGE-2",
    ),
    (
        "ip-forward-disabled",
        "client",
        "internet:80",
        (),
        "dropped",
        "route",
        "IP_INADDRERRORS",
        None,
    ),
    (
        "forward-drop",
        "client",
        "internet:80",
        (),
        "dropped",
        "netfilter",
        "NETFILTER_DROP",
        "DOCKER-USER",
    ),
    ("no-masquerade", "client", "internet:80", (), "timeout", "route", None, None),
    ("interface-down", "client", "web:80", (), "dropped", "bridge", "NO_TX_TARGET", None),
    (
        "mtu-mismatch",
        "client",
        "web:9000",
        ("--proto", "udp", "--size", "1400"),
        "dropped",
        "bridge",
        None,
        None,
    ),
]


def _ref(lab: Lab, dst: str) -> str:
    name, _, port = dst.partition(":")
    if name == "internet":
        name = lab.state.internet_ip
    elif name != "host":
        name = f"{lab.name}.{name}"
    return f"{name}:{port}" if port else name


def live(lab: Lab, src: str, dst: str, *extra: str, backend: str = "ebpf") -> dict[str, Any]:
    res = cntrace(
        "path",
        "--live",
        "--json",
        "--backend",
        backend,
        f"{lab.name}.{src}",
        _ref(lab, dst),
        *extra,
    )
    assert res.returncode in (0, 1), res.stderr
    doc: dict[str, Any] = json.loads(res.stdout)
    assert doc["mode"] == "live"
    return doc


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("fault", "src", "dst", "extra", "status", "kind", "reason", "chain"),
    CASES,
    ids=[f"{c[0] or 'healthy'}:{c[1]}->{c[2]}" for c in CASES],
)
def test_live_verdict_at_the_right_hop(
    lab: Lab,
    backend: str,
    fault: str | None,
    src: str,
    dst: str,
    extra: tuple[str, ...],
    status: str,
    kind: str,
    reason: str | None,
    chain: str | None,
) -> None:
    if fault:
        assert lab.run("lab", "break", fault).returncode == 0
    try:
        doc = live(lab, src, dst, *extra, backend=backend)
    finally:
        if fault:
            assert lab.run("lab", "fix", fault).returncode == 0
    v = doc["verdict"]
    hop = doc["hops"][v["at_hop"] - 1]
    assert hop["kind"] == kind, (v, hop)
    assert not [n for n in doc["notes"] if "disagrees" in n], doc["notes"]
    if backend == "ebpf":
        assert v["status"] == status, v
        if reason:
            assert v["reason"] == reason and hop["reason"] == reason, v
        if chain:
            assert v["rule"] is not None and v["rule"]["chain"] == chain, v
    else:
        # Without eBPF a drop is not seen as such (no kernel reason): the trail goes cold at the
        # same hop. nftables tracing still names the rule.
        expected = "timeout" if status == "dropped" else status
        assert v["status"] == expected, v
        assert hop["reason"] is None
        if chain:
            assert v["rule"] is not None and v["rule"]["chain"] == chain, v
    # Every watched tap before the verdict saw the probe.
    for h in doc["hops"]:
        if h["tap"] and h["index"] < v["at_hop"] and h["direction"] == "request":
            assert h["observed"] is True and h["watched"] is True, h
    assert doc["stats"]["lost_events"] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_nat_rewrites_show_where_they_happen(lab: Lab, backend: str) -> None:
    doc = live(lab, "client", "internet:80", backend=backend)
    assert doc["verdict"]["status"] == "delivered"
    seen = {
        (h["netns_label"], h["interface"], h["tap"], h["direction"]): h["observed_packet"]
        for h in doc["hops"]
        if h["observed"] and h["tap"]
    }
    host = f"{lab.name}.host"
    before = seen[(host, "veth-client", "ingress", "request")]
    after = seen[(host, "eth0", "egress", "request")]
    assert before["src"] == lab.ip("client")
    assert after["src"] == lab.state.uplink_ip  # MASQUERADE, seen leaving the host
    assert after["sport"] == before["sport"]
    back = seen[(f"{lab.name}.client", "eth0", "ingress", "reply")]
    assert back["dst"] == lab.ip("client")  # conntrack undid it on the way back

    doc = live(lab, "upstream", "host:8080", backend=backend)
    assert doc["verdict"]["status"] == "delivered"
    at_web = next(
        h
        for h in doc["hops"]
        if h["interface"] == "veth-web" and h["observed"] and h["direction"] == "request"
    )
    assert (at_web["observed_packet"]["dst"], at_web["observed_packet"]["dport"]) == (
        lab.ip("web"),
        80,
    )  # DNAT, seen on the bridge port
    first = doc["hops"][1]
    assert first["observed_packet"]["dport"] == 8080


def test_refused_reports_the_rst(lab: Lab) -> None:
    assert lab.run("lab", "break", "no-listener").returncode == 0
    try:
        doc = live(lab, "client", "web:80")
    finally:
        lab.run("lab", "fix", "no-listener")
    assert doc["verdict"]["status"] == "refused"
    assert "RST" in doc["verdict"]["summary"]
    assert [f["code"] for f in doc["findings"] if f["severity"] == "error"] == ["no-listener"]


def test_pcap_opens_with_tcpdump(lab: Lab, tmp_path: Path) -> None:
    pcap = tmp_path / "probe.pcapng"
    res = cntrace("path", "--live", "--pcap", str(pcap), f"{lab.name}.client", _ref(lab, "web:80"))
    assert res.returncode == 0, res.stderr
    out = subprocess.run(["tcpdump", "-nr", str(pcap)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(f"{lab.ip('client')}.") >= 2  # the SYN seen at several hops
    assert "Flags [S]" in out.stdout and "Flags [S.]" in out.stdout


def test_live_leaves_nothing_behind(lab: Lab) -> None:
    live(lab, "client", "internet:80")
    for ns in lab.state.namespaces:
        qdiscs = subprocess.run(
            ["tc", "-n", ns, "qdisc", "show"], capture_output=True, text=True, check=False
        ).stdout
        assert "clsact" not in qdiscs, (ns, qdiscs)
    tables = subprocess.run(
        ["ip", "netns", "exec", lab.state.host_netns, "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert "cntrace" not in tables
    assert not list(Path("/run/cntrace/trace").glob("*.json"))
