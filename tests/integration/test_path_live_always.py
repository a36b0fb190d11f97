"""`cntrace path --live` always answers (issue 17), on the lab with both back ends: what the
source's kernel refuses to send, UDP that needs no reply, refusals per protocol, neighbour
failures seen at L2 (and the wait bound), a learned path MTU, an engine that cannot run. Each
case checks the document, the status, the observed hop and the exit code."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from clirun import run_ok
from labkit import Lab

from cntrace.sources import nsenter

BACKENDS = ("ebpf", "capture")


def live(
    lab: Lab, src: str, dst: str, *extra: str, backend: str = "ebpf"
) -> tuple[int, dict[str, Any]]:
    argv = ("path", "--live", "--json", "--backend", backend, f"{lab.name}.{src}", dst, *extra)
    res = run_ok(*argv, rc=(0, 1))  # a document, delivered or not, and no crash
    doc: dict[str, Any] = json.loads(res.stdout)
    assert doc["mode"] == "live"
    return res.returncode, doc


def at(doc: dict[str, Any]) -> dict[str, Any]:
    hop: dict[str, Any] = doc["hops"][doc["verdict"]["at_hop"] - 1]
    return hop


def agrees(doc: dict[str, Any]) -> bool:
    return not [n for n in doc["notes"] if "disagrees" in n]


def ns_run(lab: Lab, role: str, *argv: str) -> None:
    subprocess.run(["nsenter", f"--net={lab.nspath(role)}", *argv], check=True)


@contextmanager
def changed(lab: Lab, role: str, do: list[str], undo: list[str]) -> Iterator[None]:
    ns_run(lab, role, *do)
    try:
        yield
    finally:
        ns_run(lab, role, *undo)


@pytest.mark.parametrize("backend", BACKENDS)
def test_output_drop_at_the_source_is_its_eperm(lab: Lab, backend: str) -> None:
    rule = ["OUTPUT", "-p", "tcp", "--dport", "80", "-j", "DROP"]
    with changed(lab, "client", ["iptables", "-A", *rule], ["iptables", "-D", *rule]):
        rc, doc = live(lab, "client", f"{lab.name}.web:80", backend=backend)
    v, hop = doc["verdict"], at(doc)
    assert rc == 1 and v["status"] == "dropped", v
    assert hop["kind"] == "netfilter" and hop["netns_label"] == f"{lab.name}.client"
    assert v["rule"]["chain"] == "OUTPUT" and v["rule"]["text"].endswith("-j DROP")
    assert v["reason"] == ("NETFILTER_DROP" if backend == "ebpf" else "EPERM")
    assert agrees(doc)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_way_udp_delivered_at_the_bound_socket(lab: Lab, backend: str) -> None:
    with nsenter.socket_in(lab.nspath("web"), socket.AF_INET, socket.SOCK_DGRAM) as quiet:
        quiet.bind(("0.0.0.0", 9100))  # bound, never answers
        rc, doc = live(lab, "client", f"{lab.name}.web:9100", "--proto", "udp", backend=backend)
    v, hop = doc["verdict"], at(doc)
    assert rc == 0 and v["status"] == "delivered" and hop["kind"] == "socket", v
    web_in = [
        h
        for h in doc["hops"]
        if h["interface"] == "eth0"
        and h["netns"] == hop["netns"]
        and h["tap"] == "ingress"
        and h["direction"] == "request"
    ]
    assert web_in and web_in[0]["observed"] is True
    assert any(n.startswith("no reply: UDP needs none") for n in doc["notes"])
    assert agrees(doc)


@pytest.mark.parametrize("backend", BACKENDS)
def test_udp_port_unreachable_is_refused(lab: Lab, backend: str) -> None:
    rc, doc = live(lab, "client", f"{lab.name}.web:9001", "--proto", "udp", backend=backend)
    v, hop = doc["verdict"], at(doc)
    assert rc == 1 and v["status"] == "refused" and hop["kind"] == "socket", v
    assert "port unreachable" in v["summary"] and agrees(doc)


@pytest.mark.parametrize(("backend", "last"), [("ebpf", 250), ("capture", 251)])
def test_neighbour_failure_is_seen_at_l2(lab: Lab, backend: str, last: int) -> None:
    nobody = f"10.210.0.{last}"
    try:
        rc, doc = live(lab, "client", f"{nobody}:80", backend=backend)
    finally:
        ns_run(lab, "client", "ip", "neigh", "flush", "dev", "eth0")
    v, hop = doc["verdict"], at(doc)
    assert rc == 1 and v["status"] == "unreachable" and hop["kind"] == "bridge", v
    sent = [
        e for h in doc["hops"] if h["netns_label"] == f"{lab.name}.client" for e in h["evidence"]
    ]
    assert any(f"ARP who-has {nobody} sent" in e and "unanswered" in e for e in sent), sent
    assert any("flooded to 1 port: veth-web" in e for e in hop["evidence"]), hop["evidence"]
    if backend == "ebpf":
        assert v["reason"] == "NEIGH_FAILED" and hop["reason"] == "NEIGH_FAILED"
    assert any(f"neighbour entry {nobody} dev eth0" in n and "failed" in n for n in doc["notes"])
    assert any(n.startswith("waited ") for n in doc["notes"]) and agrees(doc)


@pytest.mark.parametrize(("backend", "last"), [("ebpf", 252), ("capture", 253)])
def test_a_neighbour_retry_longer_than_the_bound_is_read_from_the_entry(
    lab: Lab, backend: str, last: int
) -> None:
    nobody = f"10.210.0.{last}"
    knob = "net.ipv4.neigh.eth0.retrans_time_ms"
    with changed(
        lab, "client", ["sysctl", "-qw", f"{knob}=20000"], ["sysctl", "-qw", f"{knob}=1000"]
    ):
        try:
            rc, doc = live(lab, "client", f"{nobody}:80", backend=backend)
        finally:
            ns_run(lab, "client", "ip", "neigh", "flush", "dev", "eth0")
    v = doc["verdict"]
    assert rc == 1 and v["status"] == "unreachable" and at(doc)["kind"] == "bridge", v
    assert "incomplete" in v["summary"]
    waited = [n for n in doc["notes"] if n.startswith("waited ")]
    assert waited and "longer than the trace's bound of 5.0s" in waited[0], doc["notes"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_route_is_seen_as_enetunreach(lab: Lab, backend: str) -> None:
    gw = "10.210.0.1"
    with changed(
        lab,
        "client",
        ["ip", "route", "del", "default"],
        ["ip", "route", "add", "default", "via", gw],
    ):
        rc, doc = live(lab, "client", f"{lab.state.internet_ip}:80", backend=backend)
    v, hop = doc["verdict"], at(doc)
    assert rc == 1 and v["status"] == "no-route" and hop["kind"] == "route", v
    assert v["reason"] == "ENETUNREACH" and agrees(doc)


@pytest.mark.parametrize("backend", BACKENDS)
def test_emsgsize_names_a_learned_path_mtu(lab: Lab, backend: str) -> None:
    dst = f"{lab.state.internet_ip}:80"
    with changed(
        lab,
        "host",
        ["ip", "link", "set", "eth0", "mtu", "1280"],
        ["ip", "link", "set", "eth0", "mtu", "1500"],
    ):
        try:
            # the host answers the first with an ICMP fragmentation-needed; the client's kernel
            # learns the path MTU and refuses the second itself
            _rc, first = live(
                lab, "client", dst, "--proto", "udp", "--size", "1400", backend=backend
            )
            rc, doc = live(lab, "client", dst, "--proto", "udp", "--size", "1400", backend=backend)
        finally:
            ns_run(lab, "client", "ip", "route", "flush", "cache")
    assert (
        first["verdict"]["status"] == "unreachable"
        and "fragmentation needed" in first["verdict"]["summary"]
    )
    v, hop = doc["verdict"], at(doc)
    assert rc == 1 and v["status"] == "dropped" and v["reason"] == "EMSGSIZE", v
    assert hop["kind"] == "interface" and hop["netns_label"] == f"{lab.name}.client"
    assert any("path MTU 1280" in n and "learnt from an ICMP" in n for n in doc["notes"]), doc[
        "notes"
    ]


def test_too_big_for_the_interface_is_emsgsize(lab: Lab) -> None:
    rc, doc = live(lab, "client", f"{lab.name}.web:9000", "--proto", "udp", "--size", "3000")
    v = doc["verdict"]
    assert rc == 1 and v["status"] == "dropped" and v["reason"] == "EMSGSIZE"
    assert any("path MTU 1500" in n and "interface" in n for n in doc["notes"]), doc["notes"]


def test_an_engine_that_cannot_run_answers_with_the_prediction(lab: Lab, tmp_path: Path) -> None:
    argv = ("path", "--live", "--json", "--backend", "ebpf")
    res = run_ok(
        *argv,
        f"{lab.name}.client",
        f"{lab.name}.web:80",
        rc=3,
        env={"CNTRACE_PROBES_DIR": str(tmp_path)},
    )
    assert "eBPF" in res.stderr
    doc = json.loads(res.stdout)
    assert doc["verdict"]["status"] == "delivered" and doc["verdict"]["summary"].startswith(
        "predicted only"
    )
    assert all(h["watched"] is False for h in doc["hops"])
