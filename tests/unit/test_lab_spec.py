"""The lab's blueprint, without root: names, addresses and the Docker-style ruleset."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from cntrace.errors import BadInput
from cntrace.lab import faults, spec, topo, topologies
from cntrace.lab.topologies import router


def test_default_plan_is_the_documented_lab() -> None:
    p = spec.plan()
    assert [c.name for c in p.containers] == ["web", "client", "api", "db"]
    assert p.host_ns == "cntrace-lab.host"
    assert p.container("web").published == (("tcp", 8080, 80),)
    assert p.container("web").mac == "02:42:0a:d2:00:02"
    assert set(p.namespaces) == {
        f"cntrace-lab.{r}" for r in ("host", "upstream", "web", "client", "api", "db")
    }


@pytest.mark.parametrize("extra", [1000, 5000, spec.MAX_EXTRA])
def test_scaled_containers_have_unique_addresses_inside_their_subnet(extra: int) -> None:
    p = spec.plan("bench", extra)
    assert len(p.containers) == extra + 4
    assert len({c.name for c in p.containers}) == len(p.containers)
    assert len({n.subnet for n in p.networks}) == len(p.networks)
    ips = [c.ip for c in p.containers]
    assert len(set(ips)) == len(ips)
    for c in p.containers:
        assert ipaddress.ip_address(c.ip) in ipaddress.ip_network(p.network(c.network).subnet)
        assert len(c.host_veth) <= 15
    per_bridge = {n.name: sum(c.network == n.name for c in p.containers) for n in p.networks}
    assert max(per_bridge.values()) < 1024  # a Linux bridge holds at most 1,024 ports


def test_the_first_1600_scaled_containers_keep_their_two_networks() -> None:
    """Past 1,600 the plan adds bridges; below, every container is where it always was; no
    bridge gets more than 800 scaled ports (a broadcast's flood must fit the CPU backlog)."""
    small, big = spec.plan("bench", 1600), spec.plan("bench", 5000)
    assert [n.bridge for n in small.networks] == ["lab0", "lab1"]
    assert big.containers[: len(small.containers)] == small.containers
    assert [n.bridge for n in big.networks] == [f"lab{k}" for k in range(7)]
    most = spec.plan("bench", spec.MAX_EXTRA)
    per = {n.name: sum(c.network == n.name for c in most.containers) for n in most.networks}
    assert max(per.values()) <= 802 and sum(per.values()) == spec.MAX_EXTRA + 4
    with pytest.raises(BadInput):
        spec.plan("bench", spec.MAX_EXTRA + 1)


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


# ----------------------------------------------------------------------------- topologies

TOPOLOGY_NAMES = ("router", "nested", "routed", "macvlan")
LAB_RANGES = [
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "192.0.2.0/24", "203.0.113.0/24", "169.254.1.1/32", "127.0.0.0/8")
]


def _plan(topology: str, backend: str = "nft") -> topo.TopologyPlan:
    kind = topologies.get(topology)
    assert kind.plan is not None
    return kind.plan("t", backend)


@pytest.mark.parametrize("topology", TOPOLOGY_NAMES)
def test_topology_plan_stays_inside_its_namespaces(topology: str) -> None:
    p = _plan(topology)
    assert p.state.topology == topology and p.state.status == "building"
    assert set(p.namespaces) == set(p.state.namespaces)
    assert all(ns.startswith("t.") for ns in p.namespaces)
    assert {p.state.host_netns, p.state.upstream_netns} <= set(p.namespaces)
    for step in p.steps:
        assert step.kind in topo.STEP_KINDS
        assert step.netns in p.namespaces, step  # never the root namespace
        for line in step.text.splitlines():
            words = line.split()
            # Every link created in another namespace names a lab namespace.
            for i, w in enumerate(words[:-1]):
                if w == "netns":
                    assert words[i + 1] in p.namespaces, line
    for c in p.state.containers:
        assert c.netns in p.namespaces and c.pid is None
        assert c.attached_to in ("", *p.namespaces)
        assert any(ipaddress.ip_address(c.ip) in net for net in LAB_RANGES)


@pytest.mark.parametrize("topology", TOPOLOGY_NAMES)
def test_topology_addresses_are_private_or_test_net(topology: str) -> None:
    text = topo.render(_plan(topology))
    for m in re.finditer(r"\b(\d+\.\d+\.\d+\.\d+)(/\d+)?\b", text):
        addr = ipaddress.ip_address(m.group(1))
        assert any(addr in net for net in LAB_RANGES), m.group(0)


def test_router_veths_are_born_in_two_lab_namespaces() -> None:
    p = _plan("router")
    router = next(s for s in p.steps if s.netns == "t.router" and s.kind == "ip")
    assert "link add wan0 netns t.router type veth peer name eth0 netns t.upstream" in router.text
    assert "link add lan0 netns t.router type veth peer name eth0 netns t.client" in router.text
    assert topo.Step("sysctl", "t.router", "net.ipv4.ip_forward=1") in p.steps


def test_router_ruleset_uses_the_constructs_it_promises() -> None:
    rules = router.iptables_ruleset()
    for needed in (
        ":FORWARD DROP",
        ":LAN-OUT - [0:0]",
        "-A FORWARD -i lan0 -j LAN-OUT",
        "-A LAN-OUT -j RETURN",
        "-m multiport --dports 80,443",
        "-A LAN-OUT ! -s 10.220.1.0/24 -j DROP",
        "-j REJECT --reject-with tcp-reset",
        "-j DNAT --to-destination 10.220.2.10:80",
    ):
        assert needed in rules, needed
    nft = router.nft_ruleset()
    for needed in (
        "table inet router {",
        "policy drop;",
        'iifname "lan0" jump lan_out',
        "tcp dport { 80, 443 } accept",
        "ip saddr != 10.220.1.0/24 drop",
        "meta l4proto tcp reject with tcp reset",
        "dnat ip to 10.220.2.10:80",
    ):
        assert needed in nft, needed


def test_router_back_end_picks_the_ruleset_step() -> None:
    kinds = {b: [s.kind for s in _plan("router", b).steps] for b in ("nft", "legacy", "nftables")}
    assert "nft" in kinds["nftables"] and "iptables" not in kinds["nftables"]
    assert kinds["nft"] == kinds["legacy"] and "nft" not in kinds["nft"]
    assert "iptables-legacy-restore" in _plan("router", "legacy").tools()
    assert "nft" in _plan("router", "nftables").tools()
    with pytest.raises(BadInput):
        topologies.get("nested").check_backend("nftables")
    with pytest.raises(BadInput):
        topologies.get("no-such-topology")


def test_nested_host_is_the_default_labs_machinery_around_a_node() -> None:
    p = _plan("nested")
    host_rules = next(s.text for s in p.steps if s.kind == "iptables" and s.netns == "t.host")
    assert "-A POSTROUTING -s 10.230.0.0/24 ! -o kind0 -j MASQUERADE" in host_rules
    assert "--dport 8080 -j DNAT --to-destination 10.230.0.2:30080" in host_rules
    node_rules = next(s.text for s in p.steps if s.kind == "iptables" and s.netns == "t.node")
    assert "--dport 30080 -j DNAT --to-destination 10.244.0.2:80" in node_rules
    pods = [c for c in p.state.containers if c.network == "pods"]
    assert {c.name for c in pods} == {"web", "client"}
    assert all(c.attached_to == "t.node" for c in pods)
    assert any("route add 10.244.0.0/24 via 10.230.0.2" in s.text for s in p.steps)


def test_routed_is_calico_shaped() -> None:
    p = _plan("routed")
    text = topo.render(p)
    assert "route add 10.240.0.10/32 dev cali-web scope link" in text
    assert "route add default via 169.254.1.1 dev eth0 onlink" in text
    assert "link set cali-web address ee:ee:ee:ee:ee:ee" in text
    assert topo.Step("sysctl", "t.host", "net.ipv4.conf.cali-web.proxy_arp=1") in p.steps
    assert "type bridge" not in text
    assert all(c.prefixlen == 32 for c in p.state.containers)


def test_macvlan_children_and_shim() -> None:
    text = topo.render(_plan("macvlan"))
    assert "link add link eth0 name eth0 netns t.web type macvlan mode bridge" in text
    assert "link add link eth0 name eth0 netns t.private type macvlan mode private" in text
    assert "link add shim link eth0 type macvlan mode bridge" in text
    assert "route add 10.250.0.8/29 dev shim" in text
    assert "ipvlan" not in text


def test_every_topology_has_faults_with_distinct_names() -> None:
    for name, kind in topologies.TOPOLOGIES.items():
        assert kind.faults, name
        assert all(f.name == k and f.summary and f.breaks for k, f in kind.faults.items())
    assert topologies.get("docker").faults is faults.FAULTS
    assert topologies.get("docker").plan is None  # the default lab keeps spec.plan/build.up


@pytest.mark.parametrize("topology", TOPOLOGY_NAMES)
def test_every_topology_state_is_recorded(topology: str) -> None:
    """fixtures/snapshots/<topology>/: healthy and one per fault, each the lab's namespaces."""
    from cntrace.sources import recorded

    base = Path(__file__).resolve().parents[2] / "fixtures" / "snapshots" / topology
    dirs = [base] + ([base / "legacy", base / "nftables"] if topology == "router" else [])
    states = ["healthy", *topologies.get(topology).faults]
    roles = {ns.split(".", 1)[1] for ns in _plan(topology).namespaces}
    for d in dirs:
        assert sorted(p.stem for p in d.glob("*.json")) == sorted(states), d
        snap = recorded.load(str(d / "healthy.json"))
        assert {(ns.name or "").split(".", 1)[1] for ns in snap.netns} == roles
