"""Discovery against real rootful Podman, on each network back end (netavark and CNI): a container
with a published port; its host veth, bridge, IPs and published port must equal `podman inspect`
and the kernel, and the back end's own DNAT and masquerade rules must be attributed to it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import kernel
import pytest
from clirun import run_json
from discovery_schema import validate
from engines import ENGINE_NSPATH, Podman

from cntrace.model import Snapshot
from cntrace.sources.live import read_snapshot
from cntrace.sources.runtimes.podman import PodmanSource
from cntrace.topology import Topology, netfilter_for

NAME = "cntrace-dc-pod"
PUBLISHED = 18081
BRIDGE = {"netavark": "podman0", "cni": "cni-podman0"}  # each back end's default bridge


@pytest.fixture(scope="module")
def pod(podman: Podman) -> Iterator[Podman]:
    podman.rm(NAME)
    podman.run(NAME, "/bin/nc", "-ll", "-p", "80", "-e", "echo", "hi", ports=(f"{PUBLISHED}:80",))
    try:
        yield podman
    finally:
        podman.rm(NAME)


@pytest.fixture(scope="module")
def snap(pod: Podman) -> Snapshot:
    return read_snapshot(sources=[PodmanSource(env=pod.env)])


def test_podman_container_host_side_matches_inspect_and_kernel(pod: Podman, snap: Snapshot) -> None:
    info = pod.inspect(NAME)
    (c,) = [c for c in snap.containers if c.name == NAME]
    assert c.runtime == "podman" and c.state == "running"
    assert c.pid == info["State"]["Pid"]
    assert c.netns == os.stat(info["NetworkSettings"]["SandboxKey"]).st_ino
    ((net_name, ep),) = info["NetworkSettings"]["Networks"].items()
    nets = json.loads(pod.podman("network", "inspect", net_name))
    bridge = nets[0]["network_interface"]

    inside = kernel.link_by_mac(info["NetworkSettings"]["SandboxKey"], ep["MacAddress"])
    outside = kernel.link_by_index(ENGINE_NSPATH, inside["link_index"])
    (att,) = Topology(snap).attachments(c)
    assert att.peer is not None and att.bridge is not None
    assert (att.peer.link.name, att.peer.link.ifindex) == (outside["ifname"], outside["ifindex"])
    assert att.peer.netns.inode == os.stat(ENGINE_NSPATH).st_ino
    assert att.bridge.link.name == bridge == outside["master"] == BRIDGE[pod.backend]
    assert {a.cidr for a in att.interface.link.addresses if a.scope == "global"} == {
        f"{ep['IPAddress']}/{ep['IPPrefixLen']}"
    }
    expected_ports = {
        (key.split("/")[1], b["HostIp"] or "0.0.0.0", int(b["HostPort"]), int(key.split("/")[0]))
        for key, binds in info["NetworkSettings"]["Ports"].items()
        for b in binds or ()
    }
    assert {(p.proto, p.host_ip, p.host_port, p.container_port) for p in c.ports} == expected_ports
    assert ("tcp", "0.0.0.0", PUBLISHED, 80) in expected_ports


def test_backend_dnat_and_masquerade_are_attributed(pod: Podman, snap: Snapshot) -> None:
    (c,) = [c for c in snap.containers if c.name == NAME]
    ip = c.networks[0].ip
    nat = netfilter_for(snap, c)
    assert nat.status == "ok", nat.reason
    dnat = [r.text for r in nat.dnat]
    assert any(f"--to-destination {ip}:80" in t for t in dnat), dnat
    cid = pod.inspect(NAME)["Id"]
    # netavark's and CNI's per-container jumps both carry the container id in a comment
    assert any(cid in t for t in dnat), f"{pod.backend}'s per-container jump: {dnat}"
    assert any("MASQUERADE" in r.text for r in nat.egress), [r.text for r in nat.egress]
    chains = {r.chain for r in nat.dnat}
    prefix = "NETAVARK-" if pod.backend == "netavark" else "CNI-"
    assert chains and all(c.startswith(prefix) for c in chains), chains


def test_cli_show_json_for_podman(pod: Podman) -> None:
    doc = run_json("show", "--json", NAME, env=pod.env)
    validate(doc)
    assert doc["container"]["runtime"] == "podman"
    bridge = doc["container"]["interfaces"][0]["host_side"]["bridge"]["name"]
    assert bridge == BRIDGE[pod.backend]
