"""The lab's blueprint, without root: names, addresses and the Docker-style ruleset."""

from __future__ import annotations

import ipaddress

import pytest

from cntrace.errors import BadInput
from cntrace.lab import spec


def test_default_plan_is_the_documented_lab() -> None:
    p = spec.plan()
    assert [c.name for c in p.containers] == ["web", "client", "api", "db"]
    assert p.host_ns == "cntrace-lab.host"
    assert p.container("web").published == (("tcp", 8080, 80),)
    assert p.container("web").mac == "02:42:0a:d2:00:02"
    assert set(p.namespaces) == {
        f"cntrace-lab.{r}" for r in ("host", "upstream", "web", "client", "api", "db")
    }


def test_scaled_containers_have_unique_addresses_inside_their_subnet() -> None:
    p = spec.plan("bench", 1000)
    assert len(p.containers) == 1004
    ips = [c.ip for c in p.containers]
    assert len(set(ips)) == len(ips)
    for c in p.containers:
        assert ipaddress.ip_address(c.ip) in ipaddress.ip_network(p.network(c.network).subnet)
        assert len(c.host_veth) <= 15
    per_bridge = {n.name: sum(c.network == n.name for c in p.containers) for n in p.networks}
    assert max(per_bridge.values()) < 1024  # a Linux bridge holds at most 1,024 ports


@pytest.mark.parametrize("name", ["", "Lab", "a.b", "1lab", "x" * 25, "lab_1"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(BadInput):
        spec.plan(name)


def test_ruleset_is_docker_shaped() -> None:
    rules = spec.iptables_ruleset(spec.plan())
    assert ":FORWARD DROP [0:0]" in rules
    assert "-A POSTROUTING -s 10.210.0.0/16 ! -o lab0 -j MASQUERADE" in rules
    assert (
        "-A DOCKER ! -i lab0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.210.0.2:80"
        in rules
    )
    assert "-A DOCKER-ISOLATION-STAGE-2 -o lab1 -j DROP" in rules
    no_masq = spec.iptables_ruleset(spec.plan(), masquerade=False)
    assert "! -o lab0 -j MASQUERADE" not in no_masq


def test_scripts_never_name_the_root_namespace() -> None:
    p = spec.plan("t", 2)
    host = spec.script_host(p)
    # Every veth peer is created directly inside a lab namespace.
    for line in host.splitlines():
        if "type veth" in line:
            assert " netns t." in line
