"""What-if on the live lab: for each kind of change, the prediction made without touching the host
equals, hop by hop, the prediction after really making the change (which is then reverted); and
every lab fault's suggested fix delivers as a what-if and when made for real.

Run under the kernel lock: flock /run/cntrace-dev.lock pytest tests/integration/test_whatif_lab.py
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from clirun import run_ok
from labcases import CASES, LabCase
from labkit import Lab, cntrace

from cntrace.lab import spec
from cntrace.whatif.runtime import host_mac

NFT_TABLE = "cntracewi"
NFT_CHAIN = "wiforward"
INTERNET_NET = "203.0.113.0/24"


def sh(netns: str, *argv: str, stdin: str | None = None) -> None:
    res = subprocess.run(
        ["ip", "netns", "exec", netns, *argv], input=stdin, capture_output=True, text=True,
        check=False, timeout=30,
    )  # fmt: skip
    assert res.returncode == 0, f"{argv}: {res.stderr}"


def hops(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A hop as the comparison sees it: where, what, the packet, the outcome, the rule's text
    (not its nft handle or counters, which the kernel numbers and counts on its own)."""
    out = []
    for h in doc["hops"]:
        r = h["rule"]
        rule = (
            None if r is None else (r["backend"], r["table"], r["chain"], r["position"], r["text"])
        )
        where = (h["direction"], h["kind"], h["netns_label"], h["interface"])
        out.append((*where, json.dumps(h["packet"]), h["summary"], h["ok"], rule))
    return out


def answer(doc: dict[str, Any]) -> tuple[Any, ...]:
    v = doc["verdict"]
    return (v["status"], v["at_hop"], v["summary"], [f["code"] for f in doc["findings"]])


def path(*args: str) -> dict[str, Any]:
    res = cntrace("path", "--json", *args)
    assert res.returncode in (0, 1), res.stderr
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


@dataclass
class Kind:
    """One kind of change: the what-if text(s), how to make it and undo it for real."""

    id: str
    src: str
    dst: str  # as in labcases: NAME[:PORT], internet, host
    changes: Callable[[Lab], list[str]]
    apply: Callable[[Lab], None]
    revert: Callable[[Lab], None]
    opts: tuple[str, ...] = ()
    fault: str | None = None
    expect: str | None = None  # the verdict the change leads to
    files: dict[str, str] = field(default_factory=dict)


def _h(lab: Lab) -> str:
    return f"{lab.name}.host"


def _ipt(lab: Lab, *args: str) -> None:
    sh(_h(lab), "iptables-nft", *args)


BASE_CHAIN = "type filter hook forward priority 0; policy accept;"
NFT_RULE = "ip daddr 203.0.113.0/24 tcp dport 80 counter drop"
NFT_TEXT = (
    f"table inet {NFT_TABLE} {{\n\tchain {NFT_CHAIN} {{\n\t\t{BASE_CHAIN}\n\t\t{NFT_RULE}\n"
    "\t}\n}\n"
)
RESTORE = "*filter\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -p tcp --dport 80 -j REJECT\nCOMMIT\n"


def _target(lab: Lab, src: str, dst: str) -> list[str]:
    name, _, port = dst.partition(":")
    suffix = f":{port}" if port else ""
    if name == "internet":
        where = lab.state.internet_ip + suffix
    elif name == "host":
        where = "host" + suffix
    else:
        where = f"{lab.name}.{name}{suffix}"
    return [f"{lab.name}.{src}", where]


KINDS = [
    Kind("iptables", "client", "web:80",
         lambda lab: [f"iptables -I DOCKER-USER -d {lab.ip('web')} -j DROP"],
         lambda lab: _ipt(lab, "-I", "DOCKER-USER", "-d", lab.ip("web"), "-j", "DROP"),
         lambda lab: _ipt(lab, "-D", "DOCKER-USER", "-d", f"{lab.ip('web')}/32", "-j", "DROP"),
         expect="dropped"),
    Kind("iptables-restore", "client", "web:80",
         lambda lab: [f"ip netns exec {lab.name}.host iptables-restore --noflush < frag.rules"],
         lambda lab: sh(_h(lab), "iptables-nft-restore", "--noflush", stdin=RESTORE),
         lambda lab: _many(lambda: _ipt(lab, "-F", "DOCKER-USER"),
                           lambda: _ipt(lab, "-A", "DOCKER-USER", "-j", "RETURN")),
         expect="refused", files={"frag.rules": RESTORE}),
    Kind("nft", "client", "internet:80",
         lambda lab: [f"nft add table inet {NFT_TABLE}",
                      f"nft add chain inet {NFT_TABLE} {NFT_CHAIN} {{ {BASE_CHAIN} }}",
                      f"nft add rule inet {NFT_TABLE} {NFT_CHAIN} {NFT_RULE}"],
         lambda lab: sh(_h(lab), "nft", "-f", "-", stdin=NFT_TEXT),
         lambda lab: sh(_h(lab), "nft", "delete", "table", "inet", NFT_TABLE),
         expect="dropped"),
    Kind("nft -f", "client", "internet:80",
         lambda lab: ["nft -f rules.nft"],
         lambda lab: sh(_h(lab), "nft", "-f", "-", stdin=NFT_TEXT),
         lambda lab: sh(_h(lab), "nft", "delete", "table", "inet", NFT_TABLE),
         expect="dropped", files={"rules.nft": NFT_TEXT}),
    Kind("ip route", "client", "internet:80",
         lambda lab: ["ip route add blackhole 203.0.113.0/24"],
         lambda lab: sh(_h(lab), "ip", "route", "add", "blackhole", "203.0.113.0/24"),
         lambda lab: sh(_h(lab), "ip", "route", "del", "blackhole", "203.0.113.0/24")),
    Kind("ip rule", "client", "internet:80",
         lambda lab: ["ip route add unreachable 203.0.113.0/24 table 100",
                      f"ip rule add from {lab.ip('client')} lookup 100 pref 100"],
         lambda lab: _many(
             lambda: sh(_h(lab), "ip", "route", "add", "unreachable", INTERNET_NET, "table", "100"),
             lambda: sh(_h(lab), "ip", "rule", "add", "from", lab.ip("client"), "lookup", "100",
                        "pref", "100")),
         lambda lab: _many(
             lambda: sh(_h(lab), "ip", "rule", "del", "pref", "100"),
             lambda: sh(_h(lab), "ip", "route", "del", "unreachable", INTERNET_NET, "table",
                        "100"))),
    Kind("sysctl", "client", "internet:80",
         lambda lab: ["sysctl -w net.ipv4.ip_forward=0"],
         lambda lab: sh(_h(lab), "sysctl", "-qw", "net.ipv4.ip_forward=0"),
         lambda lab: sh(_h(lab), "sysctl", "-qw", "net.ipv4.ip_forward=1"),
         expect="dropped"),
    Kind("ip link down", "client", "web:80",
         lambda lab: ["ip link set veth-web down"],
         lambda lab: sh(_h(lab), "ip", "link", "set", "veth-web", "down"),
         lambda lab: sh(_h(lab), "ip", "link", "set", "veth-web", "up"),
         expect="dropped"),
    Kind("ip link up", "client", "web:80",
         lambda lab: [f"ip -n {lab.name}.host link set veth-web up"],
         lambda lab: sh(_h(lab), "ip", "link", "set", "veth-web", "up"),
         lambda lab: sh(_h(lab), "ip", "link", "set", "veth-web", "down"),
         fault="interface-down", expect="delivered"),
    Kind("ip link mtu", "client", "web:9000",
         lambda lab: ["ip link set veth-web mtu 1280"],
         lambda lab: sh(_h(lab), "ip", "link", "set", "veth-web", "mtu", "1280"),
         lambda lab: sh(_h(lab), "ip", "link", "set", "veth-web", "mtu", "1500"),
         opts=("--proto", "udp", "--size", "1400"), expect="dropped"),
    Kind("publish", "upstream", "host:8081",
         lambda lab: [f"docker run -d --name {lab.name}.web -p 8081:80 image"],
         lambda lab: _publish(lab, "-A"),
         lambda lab: _publish(lab, "-D"),
         expect="delivered"),
    Kind("listen", "client", "web:80",
         lambda lab: [f"docker exec {lab.name}.web nc -lk -p 80"],
         # For real: the lab restarts the server listening on port 80 (its own fix), and back.
         lambda lab: _ok(lab.run("lab", "fix", "no-listener")),
         lambda lab: _ok(lab.run("lab", "break", "no-listener")),
         fault="no-listener", expect="delivered"),
]  # fmt: skip


def _many(*steps: Callable[[], None]) -> None:
    for step in steps:
        step()


def _ok(res: subprocess.CompletedProcess[str]) -> None:
    assert res.returncode == 0, res.stderr


def _publish(lab: Lab, op: str) -> None:
    ip, br = lab.ip("web"), "lab0"
    m = ["-p", "tcp", "-m", "tcp"]
    _ipt(lab, "-t", "nat", op, "POSTROUTING", "-s", f"{ip}/32", "-d", f"{ip}/32", *m,
         "--dport", "80", "-j", "MASQUERADE")  # fmt: skip
    _ipt(lab, "-t", "nat", op, "DOCKER", "!", "-i", br, *m, "--dport", "8081", "-j", "DNAT",
         "--to-destination", f"{ip}:80")  # fmt: skip
    _ipt(lab, op, "DOCKER", "-d", f"{ip}/32", "!", "-i", br, "-o", br, *m, "--dport", "80",
         "-j", "ACCEPT")  # fmt: skip


@pytest.mark.parametrize("kind", KINDS, ids=[k.id for k in KINDS])
def test_what_if_equals_the_change_made(lab: Lab, kind: Kind, tmp_path: Path) -> None:
    if kind.fault:
        assert lab.run("lab", "break", kind.fault).returncode == 0
    try:
        args = [*_target(lab, kind.src, kind.dst), *kind.opts]
        changes = kind.changes(lab)
        for name, text in kind.files.items():
            (tmp_path / name).write_text(text)
            changes = [c.replace(name, str(tmp_path / name)) for c in changes]
        res = cntrace("path", "--json", *args, *(a for c in changes for a in ("--what-if", c)))
        assert res.returncode in (0, 1), res.stderr
        predicted = json.loads(res.stdout)
        before = predicted["before"]
        assert answer(before) == answer(path(*args)), "the what-if changed the host"
        kind.apply(lab)
        try:
            real = path(*args)
        finally:
            kind.revert(lab)
        after = predicted["after"]
        assert answer(after) == answer(real)
        assert hops(after) == hops(real)
        if kind.expect:
            assert after["verdict"]["status"] == kind.expect
        assert answer(path(*args)) == answer(before), "the revert did not restore the lab"
    finally:
        if kind.fault:
            assert lab.run("lab", "fix", kind.fault).returncode == 0


def test_network_connect_equals_a_real_attachment(lab: Lab) -> None:
    """`docker network connect bridge api`: a veth into lab0 and an address on its subnet."""
    args = [f"{lab.name}.api", f"{lab.name}.client:80"]
    change = f"docker network connect bridge {lab.name}.api"
    res = cntrace("path", "--json", *args, "--what-if", change)
    assert res.returncode == 0, res.stderr
    after = json.loads(res.stdout)["after"]
    assert after["verdict"]["status"] == "delivered"
    # The interface names and address the what-if chose, from its hops.
    first = after["hops"][0]
    src_ip = first["packet"]["src"]
    eth = first["interface"]
    veth = next(
        h["interface"]
        for h in after["hops"]
        if h["kind"] == "veth" and h["netns_label"].endswith("host")
    )
    api = f"{lab.name}.api"
    sh(_h(lab), "ip", "link", "add", veth, "type", "veth", "peer", "name", eth, "netns", api)
    try:
        sh(_h(lab), "ip", "link", "set", veth, "address", host_mac(src_ip))
        sh(
            api,
            "ip",
            "link",
            "set",
            eth,
            "address",
            "02:42:" + ":".join(f"{int(o):02x}" for o in src_ip.split(".")),
        )
        sh(_h(lab), "ip", "link", "set", veth, "master", "lab0", "up")
        sh(api, "ip", "addr", "add", f"{src_ip}/16", "dev", eth)
        sh(api, "ip", "link", "set", eth, "up")
        real = path(*args)
    finally:
        sh(_h(lab), "ip", "link", "del", veth)
    assert answer(after)[:1] == answer(real)[:1] == ("delivered",)
    assert hops(after) == hops(real)


FAULT_CASES = {c.fault: c for c in CASES if c.fault and c.code}


def _apply_fix_for_real(lab: Lab, case: LabCase, change: str) -> None:
    if " listen " in change or change.startswith("docker network connect"):
        assert lab.run("lab", "fix", case.fault or "").returncode == 0  # the lab's own way
        return
    words = change.split()
    if words[0].startswith("netns:"):
        netns, words = words[0][6:], words[1:]
    elif words[:2] == ["ip", "-n"]:
        netns, words = words[2], ["ip", *words[3:]]
    else:
        netns = f"{lab.name}.host"
    if words[0] == "iptables":
        words[0] = "iptables-nft"
    sh(netns, *words)


@pytest.mark.parametrize("fault", sorted(FAULT_CASES))
def test_every_fault_fix_delivers_as_a_what_if_and_for_real(lab: Lab, fault: str) -> None:
    case = FAULT_CASES[fault]
    assert lab.run("lab", "break", fault).returncode == 0
    broken = True
    try:
        args = [*_target(lab, case.src, case.dst), *case.argv]
        doc = path(*args)
        assert doc["verdict"]["status"] == case.status
        # The printed answer carries the check of each fix (the --json document does not).
        text = run_ok("path", *args, rc=(0, 1), env={"COLUMNS": "500"}).stdout
        notes = [n for n in text.splitlines() if n.startswith(f"note: fix for {case.code} ")]
        assert notes and notes[0].endswith("the path delivers"), text
        change = notes[0].split("as a what-if (", 1)[1].rsplit("): ", 1)[0]
        _apply_fix_for_real(lab, case, change)
        real = path(*args)
        assert real["verdict"]["status"] == "delivered", real["verdict"]
        if " listen " in change or change.startswith("docker network connect"):
            broken = False
    finally:
        if broken:
            # The fix was made by hand: put the fault back so the lab's own fix restores it.
            _rebreak(lab, fault)
            assert lab.run("lab", "fix", fault).returncode == 0


def _rebreak(lab: Lab, fault: str) -> None:
    h = _h(lab)
    if fault == "ip-forward-disabled":
        sh(h, "sysctl", "-qw", "net.ipv4.ip_forward=0")
    elif fault == "forward-drop":
        net = spec.INTERNET_IP.rsplit(".", 1)[0]
        _ipt(lab, "-I", "DOCKER-USER", "1", "-d", f"{net}.0/24", "-j", "DROP")
    elif fault == "no-masquerade":
        net = lab.state.networks[0]
        _ipt(
            lab,
            "-t",
            "nat",
            "-D",
            "POSTROUTING",
            "-s",
            net.subnet,
            "!",
            "-o",
            net.bridge,
            "-j",
            "MASQUERADE",
        )
    elif fault == "interface-down":
        sh(h, "ip", "link", "set", "veth-web", "down")
    elif fault == "mtu-mismatch":
        sh(h, "ip", "link", "set", "veth-web", "mtu", "1280")


def test_live_report_carries_the_trace_and_replays_redacted(lab: Lab, tmp_path: Path) -> None:
    """`cntrace report --live` on the lab: the trace's counters and the probe's pcapng are in it;
    redacted, it holds no lab address, MAC or name and replays to the prediction's answer."""
    args = [f"{lab.name}.client", f"{lab.name}.web:80"]
    plain = tmp_path / "plain.json"
    res = cntrace("report", "--live", *args, "-o", str(plain))
    assert res.returncode == 0, res.stderr
    doc = json.loads(plain.read_text())
    assert doc["path"]["mode"] == "live" and doc["prediction"]["mode"] == "predicted"
    assert {"sightings", "drops", "lost_events"} <= set(doc["path"]["stats"])
    assert doc["path"]["stats"]["sightings"] > 0
    assert doc["pcapng"]["encoding"] == "base64" and len(doc["pcapng"]["data"]) > 100
    assert doc["environment"]["features"]["live_backend"]
    red = tmp_path / "red.json"
    res = cntrace("report", "--live", *args, "--redact", "-o", str(red))
    assert res.returncode == 0, res.stderr
    rdoc = json.loads(red.read_text())
    assert "pcapng" not in rdoc and rdoc["redacted"] is True
    text = red.read_text()
    for ip in (lab.ip(c) for c in ("client", "web", "api", "db")):
        assert ip not in text
    for word in (lab.name, "client", "web", "api", "upstream"):
        assert not [s for s in json.loads(text)["replay"]["argv"] if word in s]
    for c in ("client", "web", "api", "db"):
        assert lab.state.container(c).mac.lower() not in text.lower()
    argv = rdoc["replay"]["argv"][1:]
    argv[2] = str(red)
    replay = cntrace(*argv, "--json")
    assert replay.returncode == 0, replay.stderr
    again = json.loads(replay.stdout)
    assert again["verdict"]["status"] == doc["prediction"]["verdict"]["status"] == "delivered"
    codes = [f["code"] for f in doc["prediction"]["findings"]]
    assert [f["code"] for f in again["findings"]] == codes
