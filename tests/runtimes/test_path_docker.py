"""`cntrace path` against a real Docker engine (in its own namespace, with a TEST-NET upstream):
each prediction is checked against a real connection attempt made from the same container."""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from clirun import run, run_json, run_ok
from engines import IMAGE, UPSTREAM_NETNS, DockerEngine, ensure_upstream, restart_upstream_link
from safety import GUARD, probe

from cntrace.lab import build
from cntrace.model import Path, Snapshot
from cntrace.path import predict
from cntrace.sources.live import read_snapshot
from cntrace.sources.runtimes.docker import DockerSource

P = "cntrace-pt-"
NET1, NET2 = f"{P}net1", f"{P}net2"
A, B, C, D, E, H, N, M = (f"{P}{x}" for x in ("a", "b", "c", "d", "e", "h", "n", "m"))
FRESH = f"{P}fresh"
PUBLISHED = 18181
SERVE = ("nc", "-ll", "-p", "80", "-e", "echo", "hi")
SLEEP = ("sleep", "3600")


@dataclass
class World:
    engine: DockerEngine
    upstream_ip: str
    uplink_ip: str
    upstream_server: int

    def ns(self, name: str) -> str:
        return f"/proc/{self.engine.pid(name)}/ns/net"

    def ip(self, name: str, network: str) -> str:
        return str(self.engine.inspect(name)["NetworkSettings"]["Networks"][network]["IPAddress"])

    def snapshot(self) -> Snapshot:
        return read_snapshot(
            sources=[DockerSource(env={"DOCKER_HOST": f"unix://{self.engine.socket}"})]
        )


@pytest.fixture(scope="module")
def world(docker_engine: DockerEngine) -> Iterator[World]:
    d = docker_engine.docker
    names = [A, B, C, D, E, H, N, M]
    docker_engine.remove(*names)
    docker_engine.remove_networks(NET1, NET2)
    upstream_ip = ensure_upstream()
    server = build.start_server(
        "none", UPSTREAM_NETNS, "upstream", bind="0.0.0.0", tcp=80, udp=9000
    )
    try:
        build.wait_listening(server, 80)
        d("network", "create", NET1)
        d("network", "create", NET2)
        d("run", "-d", "--name", A, "--network", NET1, IMAGE, *SERVE)
        d("run", "-d", "--name", B, "--network", NET1, IMAGE, *SLEEP)
        d("run", "-d", "--name", C, "--network", NET2, IMAGE, *SERVE)
        d("run", "-d", "--name", D, "-p", f"{PUBLISHED}:80", IMAGE, *SERVE)
        d("run", "-d", "--name", E, IMAGE, *SLEEP)
        d("run", "-d", "--name", H, "--network", "host", IMAGE, *SLEEP)
        d("run", "-d", "--name", N, "--network", "none", IMAGE, *SLEEP)
        d("run", "-d", "--name", M, "--network", NET1, IMAGE, *SLEEP)
        d("network", "connect", NET2, M)
        w = World(docker_engine, upstream_ip, "198.51.100.1", server)
        GUARD.own(f"/run/netns/{UPSTREAM_NETNS}", *(w.ns(n) for n in names))
        yield w
    finally:
        build.kill_all([server])
        docker_engine.remove(*names)
        docker_engine.remove_networks(NET1, NET2)


@pytest.fixture(scope="module")
def snap(world: World) -> Snapshot:
    return world.snapshot()


def errors(p: Path) -> list[str]:
    return [f.code for f in p.findings if f.severity == "error"]


def test_live_first_trace_from_a_fresh_container_on_a_fresh_link(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """First in this module: a container created here, that has sent nothing, traced at once
    after the upstream link came up (carrier on, the kernel's operational state still DOWN for up
    to a second): delivered, every hop of both ways seen, and no disagreement with the
    prediction (which used to read that link as down: issue 17)."""
    world.engine.remove(FRESH)
    try:
        world.engine.docker("run", "-d", "--name", FRESH, IMAGE, *SLEEP)
        GUARD.own(world.ns(FRESH))
        monkeypatch.setenv("DOCKER_HOST", f"unix://{world.engine.socket}")
        restart_upstream_link()
        res = run_ok("path", "--live", "--json", FRESH, f"{world.upstream_ip}:80", inproc=True)
        doc = json.loads(res.stdout)
        v = doc["verdict"]
        assert v["status"] == "delivered" and doc["hops"][v["at_hop"] - 1]["kind"] == "socket", v
        unseen = [(h["index"], h["kind"]) for h in doc["hops"] if h["observed"] is not True]
        assert not unseen, (unseen, doc["notes"])
        assert not [n for n in doc["notes"] if "disagrees" in n], doc["notes"]
    finally:
        world.engine.remove(FRESH)


def test_same_network_by_name(world: World, snap: Snapshot) -> None:
    p = predict(snap, B, f"{A}:80")
    assert p.verdict.status == "delivered", p.verdict.summary
    assert p.destination.kind == "container" and p.destination.ip == world.ip(A, NET1)
    assert errors(p) == []
    assert probe(world.ns(B), world.ip(A, NET1), 80) == "ok"


def test_different_networks_are_isolated(world: World, snap: Snapshot) -> None:
    ip = world.ip(C, NET2)
    p = predict(snap, B, f"{ip}:80")
    assert p.verdict.status == "dropped"
    assert errors(p) == ["isolated-networks"]
    assert p.verdict.rule is not None and "ISOLATION" in p.verdict.rule.chain
    assert probe(world.ns(B), ip, 80) == "timeout"


def test_published_port_from_upstream(world: World, snap: Snapshot) -> None:
    p = predict(snap, f"netns:{UPSTREAM_NETNS}", f"host:{PUBLISHED}")
    assert p.verdict.status == "delivered", p.verdict.summary
    nat = [h for h in p.hops if h.kind == "nat" and h.direction == "request"]
    assert nat and nat[0].packet.dst == world.ip(D, "bridge") and nat[0].packet.dport == 80
    assert "DNAT" in nat[0].summary
    assert p.destination.ip == world.uplink_ip
    assert probe(f"/run/netns/{UPSTREAM_NETNS}", world.uplink_ip, PUBLISHED) == "ok"


def test_egress_masquerades_to_the_upstream(world: World, snap: Snapshot) -> None:
    p = predict(snap, E, f"{world.upstream_ip}:80")
    assert p.verdict.status == "delivered", p.verdict.summary
    nat = [h for h in p.hops if h.kind == "nat" and h.direction == "request"]
    assert nat and "MASQUERADE" in nat[0].summary and nat[0].packet.src == world.uplink_ip
    assert p.hops[-1].direction == "reply" and p.hops[-1].packet.dst == world.ip(E, "bridge")
    assert probe(world.ns(E), world.upstream_ip, 80) == "ok"


def test_host_mode_goes_out_without_nat(world: World, snap: Snapshot) -> None:
    p = predict(snap, H, f"{world.upstream_ip}:80")
    assert p.verdict.status == "delivered", p.verdict.summary
    assert not [h for h in p.hops if h.kind == "nat"]
    assert p.hops[0].packet.src == world.uplink_ip
    assert probe(world.ns(H), world.upstream_ip, 80) == "ok"


def test_none_mode_has_no_route(world: World, snap: Snapshot) -> None:
    p = predict(snap, N, f"{world.upstream_ip}:80")
    assert p.verdict.status == "no-route"
    assert errors(p) == ["no-route"]
    assert probe(world.ns(N), world.upstream_ip, 80) == "enetunreach"


def test_two_networks_reach_the_second_one(world: World, snap: Snapshot) -> None:
    ip = world.ip(C, NET2)
    p = predict(snap, M, f"{ip}:80")
    assert p.verdict.status == "delivered", p.verdict.summary
    m_if = p.hops[0].interface
    assert m_if is not None and m_if != "eth0"  # the second network's interface
    assert probe(world.ns(M), ip, 80) == "ok"


def test_default_bridge_has_no_dns_for_container_names(world: World, snap: Snapshot) -> None:
    p = predict(snap, E, f"{D}:80")
    assert p.verdict.status == "unreachable"
    assert errors(p) == ["dns-no-embedded-resolver"]
    # By address the same container is reachable: it is the name that fails.
    ok = predict(snap, E, f"{world.ip(D, 'bridge')}:80")
    assert ok.verdict.status == "delivered"
    assert probe(world.ns(E), world.ip(D, "bridge"), 80) == "ok"


def test_a_name_no_resolver_answers_is_unresolved_and_the_address_works(world: World) -> None:
    env = {"DOCKER_HOST": f"unix://{world.engine.socket}"}
    name = f"{P}nosuch"  # no container, alias or /etc/hosts line has it
    doc = run_json("path", "--json", B, f"{name}:80", rc=1, env=env)
    v = doc["verdict"]
    assert v["status"] == "unreachable", v
    assert doc["destination"]["kind"] == "hostname" and doc["destination"]["name"] == name
    assert [f["code"] for f in doc["findings"] if f["severity"] == "error"] == ["dns-unresolved"]
    (f,) = [f for f in doc["findings"] if f["code"] == "dns-unresolved"]
    assert f["summary"].startswith(f"{name!r} is not a container cntrace can see; {B} would ask ")
    assert "127.0.0.11" in f["evidence"][0] and f["evidence"][0].startswith(f"{B} resolv.conf")
    assert f["fix"] == f"give the address instead (`cntrace path {B} IP`)"
    # The fix, with A's address: the path and a real connection work.
    ok = run_json("path", "--json", B, f"{world.ip(A, NET1)}:80", env=env)
    assert ok["verdict"]["status"] == "delivered" and ok["destination"]["name"] == A
    assert probe(world.ns(B), world.ip(A, NET1), 80) == "ok"


def test_cli_json_against_docker(world: World) -> None:
    env = {"DOCKER_HOST": f"unix://{world.engine.socket}"}
    doc = run_json("path", "--json", B, f"{A}:80", env=env)
    assert doc["source"]["runtime"] == "docker" and doc["destination"]["name"] == A
    assert doc["verdict"]["status"] == "delivered"


def _live(world: World, src: str, dst: str, backend: str = "ebpf") -> dict[str, object]:
    """The live document of a path that is answered (delivered or not: exit 0 or 1)."""
    rc, doc, err = _live_run(world, src, dst, backend=backend)
    assert rc in (0, 1), err
    return doc


def _hops(doc: dict[str, object]) -> list[dict[str, object]]:
    return doc["hops"]  # type: ignore[return-value]


def _verdict(doc: dict[str, object]) -> dict[str, object]:
    return doc["verdict"]  # type: ignore[return-value]


@pytest.mark.parametrize("backend", ["ebpf", "capture"])
def test_live_same_network(world: World, backend: str) -> None:
    doc = _live(world, B, f"{A}:80", backend)
    assert _verdict(doc)["status"] == "delivered"
    seen = [h for h in _hops(doc) if h["tap"] and h["direction"] == "request"]
    assert seen and all(h["observed"] for h in seen)


def test_live_cross_network_drop(world: World) -> None:
    doc = _live(world, B, f"{world.ip(C, NET2)}:80")
    v = _verdict(doc)
    assert v["status"] == "dropped" and v["reason"] == "NETFILTER_DROP"
    assert v["rule"] and "ISOLATION" in v["rule"]["chain"]  # type: ignore[index]


@pytest.mark.parametrize("backend", ["ebpf", "capture"])
def test_live_egress_masquerade(world: World, backend: str) -> None:
    doc = _live(world, E, f"{world.upstream_ip}:80", backend)
    assert _verdict(doc)["status"] == "delivered"
    out = [
        h
        for h in _hops(doc)
        if h["tap"] == "egress"
        and h["direction"] == "request"
        and h["observed"]
        and h["interface"] == "ceng-up"
    ]
    assert out and out[0]["observed_packet"]["src"] == world.uplink_ip  # type: ignore[index]


@pytest.mark.parametrize("backend", ["ebpf", "capture"])
def test_live_published_port(world: World, backend: str) -> None:
    doc = _live(world, f"netns:{UPSTREAM_NETNS}", f"host:{PUBLISHED}", backend)
    assert _verdict(doc)["status"] == "delivered"
    into = [
        h
        for h in _hops(doc)
        if h["kind"] == "veth" and h["direction"] == "request" and h["observed"]
    ]
    last = into[-1]["observed_packet"]
    assert (last["dst"], last["dport"]) == (world.ip(D, "bridge"), 80)  # type: ignore[index]


# --------------------------------------------------------------------------- issue 17: --live
# always answers. Each case checks the document, the status, the observed hop and the exit code.


def _live_run(
    world: World,
    src: str,
    dst: str,
    *extra: str,
    backend: str = "ebpf",
    env: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], str]:
    res = run(
        "path",
        "--live",
        "--json",
        "--backend",
        backend,
        src,
        dst,
        *extra,
        env={"DOCKER_HOST": f"unix://{world.engine.socket}", **(env or {})},
    )
    assert res.stdout, res.stderr  # a document whatever happened
    doc: dict[str, Any] = json.loads(res.stdout)
    assert doc["mode"] == "live" and doc["schema"] == "cntrace.path/v2"
    return res.returncode, doc, res.stderr


def _at(doc: dict[str, Any]) -> dict[str, Any]:
    hop: dict[str, Any] = doc["hops"][doc["verdict"]["at_hop"] - 1]
    return hop


def _live_lines(doc: dict[str, Any]) -> list[str]:
    return [e for h in doc["hops"] for e in h["evidence"] if e.startswith("live: ")]


def test_live_unresolvable_name_is_a_negative_answer_not_bad_input(world: World) -> None:
    rc, doc, _ = _live_run(world, B, f"{C}:80")  # C is on another network: B's DNS has no C
    assert rc == 1
    v = doc["verdict"]
    assert v["status"] == "unreachable" and v["summary"].startswith("predicted only")
    assert [f["code"] for f in doc["findings"] if f["severity"] == "error"]
    assert any("predicted only" in n for n in doc["notes"])


@pytest.mark.parametrize("backend", ["ebpf", "capture"])
def test_live_output_drop_in_the_source_is_seen_as_its_eperm(world: World, backend: str) -> None:
    ns, ip = world.ns(B), world.ip(A, NET1)
    rule = ["OUTPUT", "-d", f"{ip}/32", "-p", "tcp", "--dport", "80", "-j", "DROP"]
    subprocess.run(["nsenter", f"--net={ns}", "iptables", "-A", *rule], check=True)
    try:
        rc, doc, _ = _live_run(world, B, f"{A}:80", backend=backend)
    finally:
        subprocess.run(["nsenter", f"--net={ns}", "iptables", "-D", *rule], check=True)
    assert rc == 1
    v, hop = doc["verdict"], _at(doc)
    assert (
        v["status"] == "dropped"
        and hop["kind"] == "netfilter"
        and hop["netns"] == doc["source"]["netns"]
    )
    assert v["rule"] is not None and v["rule"]["chain"] == "OUTPUT"  # nftrace names the rule
    assert v["reason"] == ("NETFILTER_DROP" if backend == "ebpf" else "EPERM")
    assert any("EPERM" in n for n in doc["notes"])
    assert not [n for n in doc["notes"] if "disagrees" in n]


@pytest.mark.parametrize("backend", ["ebpf", "capture"])
def test_live_one_way_udp_is_delivered_at_the_socket_with_a_note(
    world: World, backend: str
) -> None:
    from cntrace.sources import nsenter

    with nsenter.socket_in(world.ns(A), socket.AF_INET, socket.SOCK_DGRAM) as quiet:
        quiet.bind(("0.0.0.0", 9999))  # bound, never reads, never answers
        rc, doc, _ = _live_run(world, B, f"{A}:9999", "--proto", "udp", backend=backend)
    assert rc == 0
    v, hop = doc["verdict"], _at(doc)
    assert v["status"] == "delivered" and hop["kind"] == "socket"
    into = [
        h
        for h in doc["hops"]
        if h["tap"] == "ingress" and h["netns"] == hop["netns"] and h["direction"] == "request"
    ]
    assert into and all(h["observed"] for h in into)
    assert any(n.startswith("no reply: UDP needs none") for n in doc["notes"])


@pytest.mark.parametrize("backend", ["ebpf", "capture"])
def test_live_udp_port_unreachable_is_refused(world: World, backend: str) -> None:
    rc, doc, _ = _live_run(world, B, f"{A}:9998", "--proto", "udp", backend=backend)
    assert rc == 1
    v, hop = doc["verdict"], _at(doc)
    assert (
        v["status"] == "refused" and hop["kind"] == "socket" and "port unreachable" in v["summary"]
    )
    assert any("ECONNREFUSED" in n for n in doc["notes"])  # the source's socket heard it too


@pytest.mark.parametrize("backend", ["ebpf", "capture"])
def test_live_tcp_rst_is_refused_and_icmp_echo_delivered(world: World, backend: str) -> None:
    rc, doc, _ = _live_run(world, B, f"{A}:81", backend=backend)
    assert rc == 1 and doc["verdict"]["status"] == "refused" and "RST" in doc["verdict"]["summary"]
    assert _at(doc)["kind"] == "socket"
    rc, doc, _ = _live_run(world, B, A, "--proto", "icmp", backend=backend)
    assert rc == 0 and doc["verdict"]["status"] == "delivered"
    assert [h for h in doc["hops"] if h["direction"] == "reply" and h["observed"] and h["tap"]]


@pytest.mark.parametrize("backend", ["ebpf", "capture"])
def test_live_neighbour_failure_is_seen_at_l2(world: World, backend: str) -> None:
    # An on-link address of NET1 nobody holds: the probe waits in B's neighbour queue; the ARP
    # request is flooded on NET1's bridge inside the engine's namespace and goes no further.
    nobody = world.ip(A, NET1).rsplit(".", 1)[0] + ".250"
    rc, doc, _ = _live_run(world, B, f"{nobody}:80", backend=backend)
    assert rc == 1
    v, hop = doc["verdict"], _at(doc)
    assert v["status"] == "unreachable" and hop["kind"] == "bridge", v
    lines = _live_lines(doc)
    assert any(f"ARP who-has {nobody} sent" in e and "unanswered" in e for e in lines), lines
    flood = [e for e in hop["evidence"] if "flooded to" in e]
    ports = len(world.engine.network_inspect(NET1)["Containers"]) - 1  # all but B's own
    assert flood and f"flooded to {ports} port" in flood[0], hop["evidence"]
    if backend == "ebpf":
        assert v["reason"] in ("NEIGH_FAILED", "NEIGH_QUEUEFULL"), v  # the kernel gave up
    assert any("neighbour queue" in n for n in doc["notes"])


def test_live_none_network_has_no_route_seen_as_enetunreach(world: World) -> None:
    rc, doc, _ = _live_run(world, N, f"{world.upstream_ip}:80")
    assert rc == 1
    v, hop = doc["verdict"], _at(doc)
    assert v["status"] == "no-route" and hop["kind"] == "route" and v["reason"] == "ENETUNREACH"
    assert not [n for n in doc["notes"] if "disagrees" in n]


@pytest.mark.parametrize("backend", ["ebpf", "capture"])
def test_live_too_big_is_emsgsize_with_the_path_mtu(world: World, backend: str) -> None:
    rc, doc, _ = _live_run(
        world, B, f"{A}:9000", "--proto", "udp", "--size", "3000", backend=backend
    )
    assert rc == 1
    v, hop = doc["verdict"], _at(doc)
    assert v["status"] == "dropped" and v["reason"] == "EMSGSIZE" and hop["kind"] == "interface"
    assert any("path MTU 1500" in n for n in doc["notes"]), doc["notes"]


def test_live_engine_that_cannot_run_still_answers_with_the_prediction(
    world: World, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "cntrace.bpf.c").write_text("this is not C\n")
    rc, doc, err = _live_run(world, B, f"{A}:80", env={"CNTRACE_PROBES_DIR": str(tmp_path)})
    assert rc == 3 and "eBPF" in err
    v = doc["verdict"]
    assert v["status"] == "delivered" and v["summary"].startswith("predicted only")
    assert all(h["watched"] is False for h in doc["hops"])
    assert all(any(e.startswith("live: not watched") for e in h["evidence"]) for h in doc["hops"])
