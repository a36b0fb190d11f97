"""What Podman configures, named (issue 13), on both network back ends (netavark and CNI), next to
a real Docker engine in the same namespace as on a host that runs both: Docker's FORWARD policy DROP
breaks Podman's published ports from outside (runtime-policy-clash), and a stopped Podman container
is "not running", not unknown. Each case checks the prediction and the kernel, RUNS the fix cntrace
prints, and checks that a real connection then works (and undoes the fix)."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator

import pytest
from clirun import run_json
from engines import ENGINE_NETNS, UPSTREAM_NETNS, DockerEngine, Podman, ensure_upstream
from safety import GUARD, probe

from cntrace.lab import build
from cntrace.model import Snapshot
from cntrace.path import predict
from cntrace.sources.live import read_snapshot
from cntrace.sources.runtimes.docker import DockerSource
from cntrace.sources.runtimes.podman import PodmanSource

POD, STOPPED, INTERNAL = "cntrace-ix-pod", "cntrace-ix-pstop", "cntrace-ix-pint"
PNET = "cntrace-ix-pnet"  # an internal Podman network
LOOPED, LOOPED_PORT = "cntrace-ix-plo", 18321  # published on 127.0.0.1 only
PORT = 18320
UPLINK = "198.51.100.1"
UPSTREAM = f"/run/netns/{UPSTREAM_NETNS}"
SERVE = ("/bin/nc", "-ll", "-p", "80", "-e", "/bin/cat")


@pytest.fixture(scope="module")
def pods(docker_engine: DockerEngine, podman: Podman) -> Iterator[Podman]:
    """A published Podman server and a stopped one, with Docker's rules in the same namespace."""
    ensure_upstream()
    GUARD.own(UPSTREAM)
    for name in (POD, STOPPED, INTERNAL, LOOPED):
        podman.rm(name)
    podman.podman("network", "rm", "-f", PNET)
    server = build.start_server(
        "none", UPSTREAM_NETNS, "upstream", bind="0.0.0.0", tcp=80, udp=9000
    )
    try:
        build.wait_listening(server, 80)
        podman.run(POD, *SERVE, ports=(f"{PORT}:80",))
        podman.run(STOPPED, *SERVE)
        podman.podman("stop", "-t", "0", STOPPED)
        podman.podman("network", "create", "--internal", PNET)
        podman.run(INTERNAL, "/bin/sleep", "3600", extra=("--network", PNET))
        podman.run(LOOPED, *SERVE, ports=(f"127.0.0.1:{LOOPED_PORT}:80",))
        yield podman
    finally:
        build.kill_all([server])
        for name in (POD, STOPPED, INTERNAL, LOOPED):
            podman.rm(name)
        podman.podman("network", "rm", "-f", PNET)


def env(engine: DockerEngine, podman: Podman) -> dict[str, str]:
    return {"DOCKER_HOST": f"unix://{engine.socket}", **podman.env}


def snapshot(engine: DockerEngine, podman: Podman) -> Snapshot:
    return read_snapshot(
        sources=[
            DockerSource(env={"DOCKER_HOST": f"unix://{engine.socket}"}),
            PodmanSource(env=podman.env),
        ]
    )


def test_docker_policy_breaks_podman_published_port(
    pods: Podman, docker_engine: DockerEngine
) -> None:
    snap = snapshot(docker_engine, pods)
    p = predict(snap, f"netns:{UPSTREAM_NETNS}", f"{UPLINK}:{PORT}")
    assert p.verdict.status == "dropped", p.verdict.summary
    assert [f.code for f in p.findings if f.severity == "error"] == ["runtime-policy-clash"]
    hop = p.hops[(p.verdict.at_hop or 0) - 1]
    # The policy decided: its reference (decide2) or, until then, the hop's words.
    assert hop.kind == "netfilter" and hop.summary.startswith("FORWARD: DROP")
    rule = p.verdict.rule
    assert (
        "FORWARD policy" in hop.summary
        if rule is None
        else (rule.table, rule.chain) == ("filter", "FORWARD")
    )
    assert probe(UPSTREAM, UPLINK, PORT) == "timeout"
    (f,) = [f for f in p.findings if f.code == "runtime-policy-clash"]
    nets = snap.runtime_networks
    subnet = next(n.subnets[0] for n in nets if (n.runtime, n.name) == ("podman", "podman"))
    argv = shlex.split(f.fix.split("`")[1])
    assert argv[:5] == ["ip", "netns", "exec", ENGINE_NETNS, "iptables"], f.fix
    assert argv[5:9] == ["-I", "DOCKER-USER", "-d", subnet], f.fix
    assert argv[-6:] == ["-p", "tcp", "--dport", "80", "-j", "ACCEPT"], f.fix
    subprocess.run(argv, check=True)
    try:
        assert probe(UPSTREAM, UPLINK, PORT) == "ok"
        after = predict(
            snapshot(docker_engine, pods), f"netns:{UPSTREAM_NETNS}", f"{UPLINK}:{PORT}"
        )
        assert after.verdict.status == "delivered", after.verdict.summary
    finally:
        subprocess.run([("-D" if a == "-I" else a) for a in argv], check=True)


def test_stopped_podman_container(pods: Podman, docker_engine: DockerEngine) -> None:
    doc = run_json("path", "--json", POD, f"{STOPPED}:80", rc=1, env=env(docker_engine, pods))
    assert doc["verdict"]["reason"] == "container-not-running"
    (f,) = doc["findings"]
    assert f["code"] == "container-not-running" and "exited" in f["summary"]
    start = shlex.split(f["fix"].split("`")[1])
    assert start == ["podman", "start", STOPPED]
    pods.podman(*start[1:])
    try:
        GUARD.own(f"/proc/{pods.pid(POD)}/ns/net", f"/proc/{pods.pid(STOPPED)}/ns/net")
        assert probe(f"/proc/{pods.pid(POD)}/ns/net", pods.ip(STOPPED), 80) == "ok"
    finally:
        pods.podman("stop", "-t", "0", STOPPED)


def test_internal_podman_network(pods: Podman, docker_engine: DockerEngine) -> None:
    upstream_ip = "198.51.100.2"
    p = predict(snapshot(docker_engine, pods), INTERNAL, f"{upstream_ip}:80")
    assert p.verdict.status == "no-route", p.verdict.summary
    assert [f.code for f in p.findings if f.severity == "error"] == ["network-internal"]
    hop = p.hops[(p.verdict.at_hop or 0) - 1]
    assert hop.kind == "route" and hop.netns == p.source.netns  # no gateway: nothing to decide
    ns = f"/proc/{pods.pid(INTERNAL)}/ns/net"
    GUARD.own(ns)
    assert probe(ns, upstream_ip, 80) == "enetunreach"
    (f,) = [f for f in p.findings if f.code == "network-internal"]
    argv = shlex.split(f.fix.split("`")[1])
    assert argv == ["podman", "network", "connect", "podman", INTERNAL], f.fix
    pods.podman(*argv[1:])
    try:
        assert probe(ns, upstream_ip, 80) == "ok"
    finally:
        pods.podman("network", "disconnect", "podman", INTERNAL)


def test_podman_port_published_on_another_address(
    pods: Podman, docker_engine: DockerEngine
) -> None:
    asked = f"{UPLINK}:{LOOPED_PORT}"
    p = predict(snapshot(docker_engine, pods), f"netns:{UPSTREAM_NETNS}", asked)
    assert p.verdict.status == "refused", p.verdict.summary
    assert [f.code for f in p.findings if f.severity == "error"] == ["port-published-elsewhere"]
    assert probe(UPSTREAM, UPLINK, LOOPED_PORT) == "refused"
    (f,) = [f for f in p.findings if f.code == "port-published-elsewhere"]
    spec = f"{UPLINK}:{LOOPED_PORT}:80"
    assert f"`-p {spec}`" in f.fix and "podman cannot change" in f.fix, f.fix
    pods.rm(LOOPED)
    pods.run(LOOPED, *SERVE, ports=(spec,))
    # Republished, the port meets Docker's FORWARD policy like any other Podman port: the walk
    # now names that, and its fix opens the way.
    again = predict(snapshot(docker_engine, pods), f"netns:{UPSTREAM_NETNS}", asked)
    assert [f.code for f in again.findings if f.severity == "error"] == ["runtime-policy-clash"]
    (clash,) = [f for f in again.findings if f.code == "runtime-policy-clash"]
    argv = shlex.split(clash.fix.split("`")[1])
    subprocess.run(argv, check=True)
    try:
        assert probe(UPSTREAM, UPLINK, LOOPED_PORT) == "ok"
    finally:
        subprocess.run([("-D" if a == "-I" else a) for a in argv], check=True)
