"""Runtime intent, pure parts: what the Docker/Podman answers and docker-proxy's command line
become in the Snapshot, that a Snapshot carrying them round-trips and passes the untrusted-input
check, and the stopped-container path. The findings themselves are asserted against real engines
in tests/runtimes/test_intent_docker.py and test_intent_podman.py."""

from __future__ import annotations

import pytest
from schemas import validate

from cntrace import codec
from cntrace.errors import BadInput
from cntrace.model import Container, Netns, PortProxy, RuntimeNetwork, Snapshot
from cntrace.path import predict
from cntrace.sources import untrusted
from cntrace.sources.runtimes import intent

NOICC = {
    "Name": "back",
    "Driver": "bridge",
    "Internal": True,
    "IPAM": {"Config": [{"Subnet": "172.19.0.0/16", "Gateway": "172.19.0.1"}]},
    "Options": {
        "com.docker.network.bridge.enable_icc": "false",
        "com.docker.network.bridge.enable_ip_masquerade": "false",
        "com.docker.network.bridge.host_binding_ipv4": "127.0.0.1",
    },
}


def test_docker_network_options() -> None:
    n = intent.docker_network(NOICC, "br-0123")
    assert (n.runtime, n.name, n.bridge, n.subnets) == (
        "docker",
        "back",
        "br-0123",
        ("172.19.0.0/16",),
    )
    assert n.internal and not n.icc and not n.masquerade
    assert n.host_binding_ipv4 == "127.0.0.1" and n.gateway_mode is None
    plain = intent.docker_network(
        {"Name": "bridge", "Driver": "bridge", "Options": None}, "docker0"
    )
    assert plain.icc and plain.masquerade and not plain.internal


def test_podman_network() -> None:
    n = intent.podman_network(
        {"name": "podman", "driver": "bridge", "network_interface": "podman0",
         "subnets": [{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}], "internal": False},
        "netavark",
    )  # fmt: skip
    assert (n.runtime, n.bridge, n.subnets, n.backend) == (
        "podman",
        "podman0",
        ("10.88.0.0/16",),
        "netavark",
    )


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("Exited (3) 2 minutes ago", 3),
        ("Exited (137) Less than a second ago", 137),
        ("Created", None),
    ],
)
def test_exit_code_from_the_list_status(status: str, code: int | None) -> None:
    assert intent.exit_code({"Status": status}) == code


def test_docker_proxy_command_line() -> None:
    args = (
        "/usr/bin/docker-proxy -proto tcp -host-ip 127.0.0.1 -host-port 18300"
        " -container-ip 172.17.0.2 -container-port 80"
    )
    assert intent.parse_proxy(args.split(), 42) == PortProxy(
        "tcp", "127.0.0.1", 18300, "172.17.0.2", 80, 42
    )
    assert intent.parse_proxy(["/usr/bin/docker-proxy", "-proto", "tcp"]) is None


def _snap() -> Snapshot:
    ns = Netns(inode=4026531840, is_root=True)
    return Snapshot(
        netns=(ns,),
        runtime_networks=(intent.docker_network(NOICC, "br-0123"),),
        port_proxies=(PortProxy("tcp", "0.0.0.0", 8080, "172.17.0.2", 80, 7),),
        stopped=(
            Container(id="ab" * 32, name="web", runtime="docker", state="exited", exit_code=3),
        ),
    )


def test_snapshot_with_intent_round_trips_and_is_checked() -> None:
    snap = _snap()
    back = codec.from_plain(Snapshot, codec.to_plain(snap, compact=True))
    assert back.runtime_networks == snap.runtime_networks and back.stopped == snap.stopped
    untrusted.check(back, text_limit=1 << 20)
    bad = Snapshot(
        netns=snap.netns, runtime_networks=(RuntimeNetwork("docker", "x", subnets=("nope",)),)
    )
    with pytest.raises(BadInput, match="runtime_networks"):
        untrusted.check(bad, text_limit=1 << 20)


def test_a_stopped_source_is_not_running_not_unknown() -> None:
    p = predict(_snap(), "web", "10.0.0.1:80")
    assert p.verdict.status == "unreachable" and p.verdict.reason == "container-not-running"
    (f,) = p.findings
    assert f.code == "container-not-running" and "exit code 3" in f.summary
    assert f.fix.startswith("`docker start web`")
    assert p.destination.kind == "ip" and p.destination.port == 80
    validate(codec.to_plain(p))  # a cntrace.path/v1 document like any other
    with pytest.raises(BadInput, match="unknown container"):
        predict(_snap(), "nosuch", "10.0.0.1:80")
