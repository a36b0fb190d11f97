"""Discovery against a real Docker engine: every container's host veth, bridge, IPs and published
ports must equal what `docker inspect` and the kernel (ifindex / peer ifindex via iproute2) say.

One module-wide set of containers covers the network modes Docker has: the default bridge with a
published port, a user network, host, none, ``container:<other>``, and one container on two
networks.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import kernel
import pytest
from clirun import run
from discovery_schema import validate
from engines import ENGINE_NSPATH, IMAGE, DockerEngine, ensure_upstream

from cntrace.model import Container, Snapshot
from cntrace.sources.live import read_snapshot
from cntrace.sources.runtimes.docker import DockerSource
from cntrace.topology import Topology, netfilter_for

P = "cntrace-dc-"
NET1, NET2 = f"{P}net1", f"{P}net2"
WEB, USER, HOST, NONE, SIDE, MULTI, GONE = (
    f"{P}web",
    f"{P}user",
    f"{P}host",
    f"{P}none",
    f"{P}side",
    f"{P}multi",
    f"{P}gone",
)
PUBLISHED = 18080


@pytest.fixture(scope="module")
def docker_world(docker_engine: DockerEngine) -> Iterator[DockerEngine]:
    d = docker_engine.docker
    names = [WEB, USER, HOST, NONE, SIDE, MULTI, GONE]
    docker_engine.remove(*names)
    docker_engine.remove_networks(NET1, NET2)
    try:
        d("network", "create", NET1)
        d("network", "create", NET2)
        d(
            "run",
            "-d",
            "--name",
            WEB,
            "-p",
            f"{PUBLISHED}:80",
            IMAGE,
            "nc",
            "-ll",
            "-p",
            "80",
            "-e",
            "echo",
            "hi",
        )
        d("run", "-d", "--name", USER, "--network", NET1, IMAGE, "sleep", "3600")
        d("run", "-d", "--name", HOST, "--network", "host", IMAGE, "sleep", "3600")
        d("run", "-d", "--name", NONE, "--network", "none", IMAGE, "sleep", "3600")
        d("run", "-d", "--name", SIDE, "--network", f"container:{WEB}", IMAGE, "sleep", "3600")
        d("run", "-d", "--name", MULTI, "--network", NET1, IMAGE, "sleep", "3600")
        d("network", "connect", NET2, MULTI)
        yield docker_engine
    finally:
        docker_engine.remove(*names)
        docker_engine.remove_networks(NET1, NET2)


def _source(engine: DockerEngine) -> DockerSource:
    return DockerSource(env={"DOCKER_HOST": f"unix://{engine.socket}"})


@pytest.fixture(scope="module")
def snap(docker_world: DockerEngine) -> Snapshot:
    return read_snapshot(sources=[_source(docker_world)])


def _container(snap: Snapshot, name: str) -> Container:
    found = [c for c in snap.containers if c.name == name]
    assert len(found) == 1, [c.name for c in snap.containers]
    return found[0]


def _bridge_of(engine: DockerEngine, network: str) -> str:
    net = engine.network_inspect(network)
    name = (net.get("Options") or {}).get("com.docker.network.bridge.name")
    return str(name) if name else f"br-{net['Id'][:12]}"


def _kernel_host_side(engine: DockerEngine, name: str) -> dict[str, tuple[str, int, str | None]]:
    """MAC -> (host veth name, host ifindex, bridge) for each of the container's endpoints,
    from `docker inspect` plus iproute2 in both namespaces."""
    info = engine.inspect(name)
    nspath = f"/proc/{info['State']['Pid']}/ns/net"
    out = {}
    for ep in info["NetworkSettings"]["Networks"].values():
        inside = kernel.link_by_mac(nspath, ep["MacAddress"])
        outside = kernel.link_by_index(ENGINE_NSPATH, inside["link_index"])
        out[ep["MacAddress"]] = (outside["ifname"], outside["ifindex"], outside.get("master"))
    return out


@pytest.mark.parametrize("name", [WEB, USER, MULTI])
def test_host_veth_and_bridge_match_inspect_and_kernel(
    docker_world: DockerEngine, snap: Snapshot, name: str
) -> None:
    topo = Topology(snap)
    c = _container(snap, name)
    truth = _kernel_host_side(docker_world, name)
    info = docker_world.inspect(name)
    seen = {}
    for att in topo.attachments(c):
        assert att.peer is not None, f"{att.interface.label}: no host side found"
        assert att.bridge is not None
        seen[att.interface.link.mac] = (
            att.peer.link.name,
            att.peer.link.ifindex,
            att.bridge.link.name,
        )
        assert att.peer.netns.inode == os.stat(ENGINE_NSPATH).st_ino
    assert seen == truth
    bridges = {_bridge_of(docker_world, n) for n in info["NetworkSettings"]["Networks"]}
    assert {b for _, _, b in seen.values()} == bridges
    assert c.host_netns == os.stat(ENGINE_NSPATH).st_ino


@pytest.mark.parametrize("name", [WEB, USER, MULTI])
def test_ips_match_inspect(docker_world: DockerEngine, snap: Snapshot, name: str) -> None:
    c = _container(snap, name)
    info = docker_world.inspect(name)
    expected = {
        f"{ep['IPAddress']}/{ep['IPPrefixLen']}"
        for ep in info["NetworkSettings"]["Networks"].values()
    }
    ns = snap.ns(c.netns)
    assert ns is not None
    kernel_ips = {a.cidr for lk in ns.links for a in lk.addresses if a.scope == "global"}
    assert kernel_ips == expected
    assert {f"{n.ip}/{n.prefixlen}" for n in c.networks} == expected
    assert kernel.global_cidrs(f"/proc/{info['State']['Pid']}/ns/net") == expected


def test_published_port_matches_inspect(docker_world: DockerEngine, snap: Snapshot) -> None:
    c = _container(snap, WEB)
    bindings = docker_world.inspect(WEB)["NetworkSettings"]["Ports"]
    expected = {
        (key.split("/")[1], b["HostIp"] or "0.0.0.0", int(b["HostPort"]), int(key.split("/")[0]))
        for key, binds in bindings.items()
        for b in binds or ()
    }
    assert {(p.proto, p.host_ip, p.host_port, p.container_port) for p in c.ports} == expected
    assert (("tcp", "0.0.0.0", PUBLISHED, 80)) in expected


def test_published_port_dnat_and_egress_rules_are_attributed(snap: Snapshot) -> None:
    c = _container(snap, WEB)
    ip = c.networks[0].ip
    nat = netfilter_for(snap, c)
    if nat.status == "unavailable" and "netfilter model" in (nat.reason or ""):
        pytest.fail(f"netfilter attribution unavailable: {nat.reason}")
    assert nat.status == "ok", nat.reason
    dnat = [r.text for r in nat.dnat]
    assert any(f"--dport {PUBLISHED}" in t and f"--to-destination {ip}:80" in t for t in dnat), dnat
    egress = [r.text for r in nat.egress]
    assert any("MASQUERADE" in t and "172.17.0.0/16" in t for t in egress), egress
    # Nothing of the other containers' ports leaks in.
    assert all(ip in t or str(PUBLISHED) in t for t in dnat)


def test_host_mode_lives_in_the_engine_namespace(snap: Snapshot) -> None:
    c = _container(snap, HOST)
    assert c.network_mode == "host"
    assert c.netns == os.stat(ENGINE_NSPATH).st_ino
    assert c.host_netns == c.netns


def test_none_mode_has_only_loopback(snap: Snapshot) -> None:
    c = _container(snap, NONE)
    assert c.network_mode == "none"
    ns = snap.ns(c.netns)
    assert ns is not None
    assert [lk.kind for lk in ns.links] == ["loopback"]
    assert Topology(snap).attachments(c) == []


def test_container_mode_shares_the_other_namespace(
    docker_world: DockerEngine, snap: Snapshot
) -> None:
    side, web = _container(snap, SIDE), _container(snap, WEB)
    assert side.network_mode == f"container:{WEB}"
    assert side.netns == web.netns
    assert os.stat(f"/proc/{docker_world.pid(SIDE)}/ns/net").st_ino == web.netns
    assert side.host_netns == web.host_netns


def test_listening_socket_and_resolver(snap: Snapshot) -> None:
    c = _container(snap, WEB)
    ns = snap.ns(c.netns)
    assert ns is not None
    assert any(s.proto == "tcp" and s.local_port == 80 and s.wildcard for s in ns.sockets)
    assert c.resolver is not None


def _cli(engine: DockerEngine, *args: str) -> subprocess.CompletedProcess[str]:
    return run(*args, env={"DOCKER_HOST": f"unix://{engine.socket}"})


def test_cli_ls_json_matches_inspect(docker_world: DockerEngine) -> None:
    res = _cli(docker_world, "ls", "--json", "--runtime", "docker", P)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    validate(doc)
    rows = {r["name"]: r for r in doc["containers"]}
    assert set(rows) == {WEB, USER, HOST, NONE, SIDE, MULTI}
    for name in (WEB, USER, MULTI):
        truth = _kernel_host_side(docker_world, name)
        assert {v["name"] for v in rows[name]["host_veths"]} == {t[0] for t in truth.values()}
        assert set(rows[name]["bridges"]) == {t[2] for t in truth.values()}
    bindings = docker_world.inspect(WEB)["NetworkSettings"]["Ports"]["80/tcp"]
    assert sorted(rows[WEB]["ports"], key=lambda p: p["host_ip"]) == sorted(
        (
            {
                "proto": "tcp",
                "host_ip": b["HostIp"],
                "host_port": int(b["HostPort"]),
                "container_port": 80,
            }
            for b in bindings
        ),
        key=lambda p: p["host_ip"],
    )
    assert rows[HOST]["host_veths"] == [] and rows[HOST]["network_mode"] == "host"
    assert rows[NONE]["ips"] == [] and rows[NONE]["network_mode"] == "none"
    assert rows[SIDE]["network_mode"] == f"container:{WEB}"
    assert rows[SIDE]["netns"] == rows[WEB]["netns"]


def test_cli_show_json(docker_world: DockerEngine) -> None:
    res = _cli(docker_world, "show", "--json", WEB)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    validate(doc)
    c = doc["container"]
    truth = _kernel_host_side(docker_world, WEB)
    ((veth, ifindex, bridge),) = truth.values()
    (iface,) = c["interfaces"]
    assert iface["host_side"]["peer"]["name"] == veth
    assert iface["host_side"]["peer"]["ifindex"] == ifindex
    assert iface["host_side"]["bridge"]["name"] == bridge
    assert iface["host_side"]["port"]["state"] == "forwarding"
    assert c["netns"]["shared_with"] == [SIDE]


def test_cli_show_by_id_prefix_and_pid(docker_world: DockerEngine) -> None:
    cid = docker_world.inspect(USER)["Id"]
    for ref in (cid[:10], f"pid:{docker_world.pid(USER)}"):
        res = _cli(docker_world, "show", "--json", ref)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["container"]["name"] == USER


def test_topo_shows_engine_bridges_and_uplink(docker_world: DockerEngine) -> None:
    ensure_upstream()
    res = _cli(docker_world, "topo", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    validate(doc)
    engine = [h for h in doc["hosts"] if h["netns"]["inode"] == os.stat(ENGINE_NSPATH).st_ino]
    assert engine, "the engine namespace is not shown as a host"
    bridges = {b["name"]: b for b in engine[0]["bridges"]}
    assert "docker0" in bridges
    web_ports = [p for p in bridges["docker0"]["ports"] if WEB in p["containers"]]
    assert web_ports and f"0.0.0.0:{PUBLISHED}->80/tcp" in web_ports[0]["ports"]
    assert [u["name"] for u in engine[0]["uplinks"]] == ["ceng-up"]


def test_container_exiting_during_discovery_is_reported_gone(docker_world: DockerEngine) -> None:
    docker_world.docker("run", "-d", "--name", GONE, IMAGE, "sleep", "3600")

    class Racing:
        """Docker's own listing, then the container dies before the kernel is read."""

        name = "docker"

        def __init__(self) -> None:
            self.inner = _source(docker_world)

        def available(self) -> tuple[bool, str]:
            return self.inner.available()

        def containers(self) -> list[Container]:
            listed = self.inner.containers()
            docker_world.docker("kill", GONE)
            docker_world.docker("wait", GONE)
            return listed

    try:
        snap = read_snapshot(sources=[Racing()])
    finally:
        docker_world.remove(GONE)
    gone = _container(snap, GONE)
    assert gone.state == "gone"
    assert _container(snap, WEB).state == "running"
