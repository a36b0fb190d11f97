"""What Docker configures, named (issue 13): every case builds the runtime's own configuration on a
real engine, checks the predicted status, the finding's code and the deciding rule (table and
chain), checks the kernel agrees, RUNS the fix cntrace prints, and checks a real connection then
works (and undoes the fix)."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from clirun import run_json, run_ok
from engines import ENGINE_NETNS, IMAGE, UPSTREAM_NETNS, DockerEngine, ensure_upstream
from safety import GUARD, probe

from cntrace.lab import build
from cntrace.model import Finding, Path, Snapshot
from cntrace.path import predict
from cntrace.sources.live import read_snapshot
from cntrace.sources.runtimes.docker import DockerSource

P = "cntrace-ix-"
INT, NOICC = f"{P}int", f"{P}noicc"
A, B, C, D, E, L, S = (f"{P}{x}" for x in ("a", "b", "c", "d", "e", "l", "s"))
NAMES = (A, B, C, D, E, L, S)
PUB, LOOPBACK_PORT = 18310, 18311
SERVE = ("nc", "-ll", "-p", "80", "-e", "echo", "hi")
UPLINK = "198.51.100.1"
UPSTREAM = f"/run/netns/{UPSTREAM_NETNS}"


@dataclass
class World:
    engine: DockerEngine
    upstream_ip: str

    def ns(self, name: str) -> str:
        path = f"/proc/{self.engine.pid(name)}/ns/net"
        GUARD.own(path)  # a restarted or recreated container has a new process
        return path

    def ip(self, name: str, network: str) -> str:
        return str(self.engine.inspect(name)["NetworkSettings"]["Networks"][network]["IPAddress"])

    def snapshot(self) -> Snapshot:
        return read_snapshot(sources=[DockerSource(env=self.env)])

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": f"unix://{self.engine.socket}"}


def _loopback_published(d: DockerEngine, spec: str) -> None:
    d.remove(L)
    d.docker("run", "-d", "--name", L, "-p", spec, IMAGE, *SERVE)


@pytest.fixture(scope="module")
def world(docker_engine: DockerEngine) -> Iterator[World]:
    d = docker_engine.docker
    docker_engine.remove(*NAMES)
    docker_engine.remove_networks(INT, NOICC)
    upstream_ip = ensure_upstream()
    GUARD.own(UPSTREAM)
    server = build.start_server(
        "none", UPSTREAM_NETNS, "upstream", bind="0.0.0.0", tcp=80, udp=9000
    )
    try:
        build.wait_listening(server, 80)
        d("network", "create", "--internal", INT)
        d("network", "create", "-o", "com.docker.network.bridge.enable_icc=false", NOICC)
        d("run", "-d", "--name", A, "--network", INT, IMAGE, *SERVE)
        d("run", "-d", "--name", B, "--network", NOICC, IMAGE, *SERVE)
        d("run", "-d", "--name", C, "--network", NOICC, IMAGE, "sleep", "3600")
        d("run", "-d", "--name", D, "-p", f"{PUB}:80", IMAGE, *SERVE)
        d("run", "-d", "--name", E, IMAGE, "sleep", "3600")
        d("run", "-d", "--name", S, IMAGE, *SERVE)
        d("stop", "-t", "0", S)
        _loopback_published(docker_engine, f"127.0.0.1:{LOOPBACK_PORT}:80")
        yield World(docker_engine, upstream_ip)
    finally:
        build.kill_all([server])
        docker_engine.remove(*NAMES)
        docker_engine.remove_networks(INT, NOICC)


@pytest.fixture(scope="module")
def snap(world: World) -> Snapshot:
    return world.snapshot()


def errors(p: Path) -> list[str]:
    return [f.code for f in p.findings if f.severity == "error"]


def the(p: Path, code: str) -> Finding:
    found = [f for f in p.findings if f.code == code]
    assert found, [(f.code, f.summary) for f in p.findings]
    return found[0]


def command(f: Finding) -> list[str]:
    """The first command the fix quotes, as argv."""
    quoted = re.findall(r"`([^`]+)`", f.fix)
    assert quoted, f.fix
    return shlex.split(quoted[0])


def docker_fix(world: World, f: Finding, runtime: str = "docker") -> list[str]:
    argv = command(f)
    assert argv[0] == runtime, f.fix
    world.engine.docker(*argv[1:])
    return argv


def iptables_fix(f: Finding) -> list[str]:
    argv = command(f)
    assert argv[:4] == ["ip", "netns", "exec", ENGINE_NETNS] and argv[4] == "iptables", f.fix
    subprocess.run(argv, check=True)
    return argv


def undo_iptables(argv: list[str]) -> None:
    subprocess.run([("-D" if a == "-I" else a) for a in argv], check=True)


def test_internal_network_outbound(world: World, snap: Snapshot) -> None:
    p = predict(snap, A, f"{world.upstream_ip}:80")
    assert p.verdict.status == "dropped", p.verdict.summary
    assert errors(p) == ["network-internal"]
    rule = p.verdict.rule
    assert rule is not None and (rule.table, rule.chain) == ("filter", "DOCKER-ISOLATION-STAGE-1")
    assert probe(world.ns(A), world.upstream_ip, 80) == "timeout"
    f = the(p, "network-internal")
    assert INT in f.summary and "internal" in f.summary
    argv = docker_fix(world, f)
    assert argv == ["docker", "network", "connect", "bridge", A]
    try:
        assert probe(world.ns(A), world.upstream_ip, 80) == "ok"
    finally:
        world.engine.docker("network", "disconnect", "bridge", A)


def test_internal_network_inbound(world: World, snap: Snapshot) -> None:
    ip = world.ip(A, INT)
    world.ns(A)
    p = predict(snap, E, f"{ip}:80")
    assert p.verdict.status == "dropped", p.verdict.summary
    assert errors(p) == ["network-internal"]
    rule = p.verdict.rule
    assert rule is not None and (rule.table, rule.chain) == ("filter", "DOCKER-ISOLATION-STAGE-1")
    assert probe(world.ns(E), ip, 80) == "timeout"
    argv = docker_fix(world, the(p, "network-internal"))
    assert argv == ["docker", "network", "connect", INT, E]
    try:
        assert probe(world.ns(E), ip, 80) == "ok"
    finally:
        world.engine.docker("network", "disconnect", INT, E)


def test_icc_disabled(world: World, snap: Snapshot) -> None:
    ip = world.ip(B, NOICC)
    world.ns(B)  # the destination's namespace is this run's
    p = predict(snap, C, f"{ip}:80")
    assert p.verdict.status == "dropped", p.verdict.summary
    assert errors(p) == ["icc-disabled"]
    rule = p.verdict.rule
    assert rule is not None and (rule.table, rule.chain) == ("filter", "FORWARD")
    assert "-j DROP" in rule.text
    assert probe(world.ns(C), ip, 80) == "timeout"
    argv = iptables_fix(the(p, "icc-disabled"))
    try:
        assert probe(world.ns(C), ip, 80) == "ok"
        after = predict(world.snapshot(), C, f"{ip}:80")
        assert after.verdict.status == "delivered", after.verdict.summary
    finally:
        undo_iptables(argv)


def test_port_published_on_another_address(world: World, snap: Snapshot) -> None:
    p = predict(snap, f"netns:{UPSTREAM_NETNS}", f"{UPLINK}:{LOOPBACK_PORT}")
    assert p.verdict.status == "refused", p.verdict.summary
    assert errors(p) == ["port-published-elsewhere"]
    assert probe(UPSTREAM, UPLINK, LOOPBACK_PORT) == "refused"
    f = the(p, "port-published-elsewhere")
    assert "127.0.0.1" in f.summary and L in f.summary
    spec = re.search(r"-p (\S+)`", f.fix)
    assert spec is not None and spec.group(1) == f"{UPLINK}:{LOOPBACK_PORT}:80", f.fix
    _loopback_published(world.engine, spec.group(1))
    try:
        assert probe(UPSTREAM, UPLINK, LOOPBACK_PORT) == "ok"
    finally:
        _loopback_published(world.engine, f"127.0.0.1:{LOOPBACK_PORT}:80")


def test_hairpin_through_docker_proxy(world: World, snap: Snapshot) -> None:
    p = predict(snap, E, f"{UPLINK}:{PUB}")
    assert p.verdict.status == "delivered", p.verdict.summary
    f = the(p, "docker-proxy-hairpin")
    assert f.severity == "info" and D in f.summary and world.ip(D, "bridge") in f.summary
    assert any("docker-proxy[" in e for e in f.evidence)
    assert probe(world.ns(E), UPLINK, PUB) == "ok"


def test_stopped_container(world: World) -> None:
    doc = run_json("path", "--json", E, f"{S}:80", rc=1, env=world.env)
    assert doc["verdict"]["status"] == "unreachable"
    assert doc["verdict"]["reason"] == "container-not-running"
    (f,) = doc["findings"]
    assert f["code"] == "container-not-running" and "exited" in f["summary"]
    assert f["fix"].startswith(f"`docker start {S}`")
    doc = run_json("path", "--json", S, f"{E}:80", rc=1, env=world.env)
    assert [f["code"] for f in doc["findings"]] == ["container-not-running"]
    unknown = run_ok("path", "--json", f"{P}nosuch", f"{E}:80", rc=2, env=world.env)
    assert "unknown container" in unknown.stderr  # exists-but-stopped is not bad input
    start = shlex.split(f["fix"].split("`")[1])
    assert start == ["docker", "start", S]
    world.engine.docker(*start[1:])
    try:
        world.ns(S)
        assert probe(world.ns(E), world.ip(S, "bridge"), 80) == "ok"
    finally:
        world.engine.docker("stop", "-t", "0", S)
