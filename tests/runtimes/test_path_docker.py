"""`cntrace path` against a real Docker engine (in its own namespace, with a TEST-NET upstream):
each prediction is checked against a real connection attempt made from the same container."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from engines import IMAGE, UPSTREAM_NETNS, DockerEngine, ensure_upstream
from safety import GUARD, probe

from cntrace.lab import build
from cntrace.model import Path, Snapshot
from cntrace.path import predict
from cntrace.sources.live import read_snapshot
from cntrace.sources.runtimes.docker import DockerSource

P = "cntrace-pt-"
NET1, NET2 = f"{P}net1", f"{P}net2"
A, B, C, D, E, H, N, M = (f"{P}{x}" for x in ("a", "b", "c", "d", "e", "h", "n", "m"))
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


def test_cli_json_against_docker(world: World) -> None:
    env = {"DOCKER_HOST": f"unix://{world.engine.socket}"}
    res = subprocess.run(
        [sys.executable, "-m", "cntrace", "path", "--json", B, f"{A}:80"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["source"]["runtime"] == "docker" and doc["destination"]["name"] == A
    assert doc["verdict"]["status"] == "delivered"


def _live(world: World, src: str, dst: str, backend: str = "ebpf") -> dict[str, object]:
    env = {**os.environ, "DOCKER_HOST": f"unix://{world.engine.socket}"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "cntrace",
            "path",
            "--live",
            "--json",
            "--backend",
            backend,
            src,
            dst,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert res.returncode in (0, 1), res.stderr
    doc: dict[str, object] = json.loads(res.stdout)
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
