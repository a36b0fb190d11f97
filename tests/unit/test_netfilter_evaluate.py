"""The evaluator on the recorded rulesets, and on small rulesets that pin one semantic each."""

from __future__ import annotations

import json

import pytest
from harness import FIXTURES

from cntrace import netfilter
from cntrace.model import Address, Link, Netns, Packet, Route, Ruleset
from cntrace.netfilter import NetnsFacts

RS = FIXTURES / "rulesets"


def text(name: str) -> str:
    return (RS / name).read_text()


def facts(**ifaces: str) -> NetnsFacts:
    """facts(eth0="10.0.0.1/24,10.0.0.9/24") -> NetnsFacts with those addresses, in order."""
    addrs = {"lo": ("127.0.0.1",)}
    nets = {"lo": ("127.0.0.1/8",)}
    for key, cidrs in ifaces.items():
        name = key.replace("_", "-")
        parts = [c for c in cidrs.split(",") if c]
        addrs[name] = tuple(c.split("/")[0] for c in parts)
        nets[name] = tuple(parts)
    local = frozenset(a for v in addrs.values() for a in v)
    return NetnsFacts(local, addrs, nets)


def save(body: str, *, legacy: bool = False) -> Ruleset:
    text = body if body.endswith("\n") else body + "\n"
    return Ruleset(iptables_legacy=text) if legacy else Ruleset(iptables_nft=text)


def texts(refs: tuple[object, ...] | list[object]) -> list[str]:
    return [r.text for r in refs]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- Docker (recorded)


@pytest.fixture(scope="module")
def docker() -> tuple[netfilter.Netfilter, NetnsFacts, dict[str, str]]:
    nf = netfilter.load(Ruleset(iptables_nft=text("docker-iptables-nft.save")))
    links = json.loads(text("docker-addresses.json"))
    addrs = {ln["ifname"]: tuple(a["local"] for a in ln.get("addr_info", [])) for ln in links}
    nets = {
        ln["ifname"]: tuple(f"{a['local']}/{a['prefixlen']}" for a in ln.get("addr_info", []))
        for ln in links
    }
    f = NetnsFacts(frozenset(a for v in addrs.values() for a in v), addrs, nets)
    bridges = {}
    for ln in links:
        for a in ln.get("addr_info", []):
            if ln["ifname"].startswith("br-"):
                bridges[a["local"]] = ln["ifname"]
    return nf, f, bridges


def test_docker_published_port_dnat(docker) -> None:  # type: ignore[no-untyped-def]
    nf, f, _ = docker
    w = netfilter.walk(
        nf,
        Packet("tcp", "203.0.113.10", "198.51.100.2", 40000, 8080),
        f,
        kind="input",
        iif="nfup0",
        route=lambda p: "docker0" if p.dst.startswith("172.17.") else None,
    )
    assert w.certain
    assert w.kind == "forward"  # DNAT turned local delivery into forwarding
    assert w.verdict == "accept"
    assert w.packet_after == Packet("tcp", "203.0.113.10", "172.17.0.2", 40000, 80)
    (nat,) = w.nats
    assert nat.kind == "dnat" and nat.hook == "prerouting"
    assert nat.rule is not None and "--to-destination 172.17.0.2:80" in nat.rule.text
    assert w.deciding is not None and w.deciding.chain == "DOCKER" and w.deciding.table == "filter"
    assert w.deciding.text.endswith("--dport 80 -j ACCEPT")
    assert w.deciding.counters is not None


def test_docker_egress_masquerade_picks_the_uplink_address(docker) -> None:  # type: ignore[no-untyped-def]
    nf, f, _ = docker
    w = netfilter.walk(
        nf,
        Packet("udp", "172.17.0.3", "203.0.113.53", 40000, 53),
        f,
        kind="forward",
        iif="docker0",
        oif="nfup0",
    )
    assert w.verdict == "accept"
    assert w.packet_after.src == "198.51.100.2"
    (nat,) = w.nats
    assert nat.kind == "masquerade" and nat.hook == "postrouting"
    assert (
        nat.rule is not None
        and nat.rule.text == "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE"
    )
    assert (
        w.deciding is not None and w.deciding.text == "-A FORWARD -i docker0 ! -o docker0 -j ACCEPT"
    )


def test_docker_isolation_drop_between_bridges(docker) -> None:  # type: ignore[no-untyped-def]
    nf, f, bridges = docker
    br1, br2 = bridges["172.31.1.1"], bridges["172.31.2.1"]
    w = netfilter.walk(
        nf,
        Packet("tcp", "172.31.2.2", "172.31.1.2", 40000, 443),
        f,
        kind="forward",
        iif=br2,
        oif=br1,
    )
    assert w.verdict == "drop"
    assert w.deciding is not None
    assert w.deciding.chain == "DOCKER-ISOLATION-STAGE-2"
    assert w.deciding.text == f"-A DOCKER-ISOLATION-STAGE-2 -o {br1} -j DROP"
    fwd = next(h for h in w.hooks if h.hook == "forward")
    assert (
        texts(fwd.matched)[-2]
        == f"-A DOCKER-ISOLATION-STAGE-1 -i {br2} ! -o {br2} -j DOCKER-ISOLATION-STAGE-2"
    )


def test_docker_forward_policy_drop_is_named(docker) -> None:  # type: ignore[no-untyped-def]
    nf, f, _ = docker
    w = netfilter.walk(
        nf,
        Packet("tcp", "203.0.113.10", "172.17.0.2", 40000, 22),
        f,
        kind="forward",
        iif="nfup0",
        oif="docker0",
    )
    assert w.verdict == "drop"
    d = w.deciding
    assert d is not None and d.policy and d.position is None and d.text == "policy drop"
    assert (d.backend, d.family, d.table, d.chain, d.hook, d.priority) == (
        "iptables-nft", "ip", "filter", "FORWARD", "forward", 0,
    )  # fmt: skip
    assert w.policy == d.name == "iptables-nft ip filter FORWARD policy drop"


def test_docker_reply_gets_reverse_nat_from_conntrack(docker) -> None:  # type: ignore[no-untyped-def]
    nf, f, _ = docker
    first = netfilter.walk(
        nf,
        Packet("tcp", "203.0.113.10", "198.51.100.2", 40000, 8080),
        f,
        kind="input",
        iif="nfup0",
        route=lambda p: "docker0",
    )
    reply = netfilter.walk(
        nf,
        first.packet_after.reply(),
        f,
        kind="forward",
        iif="docker0",
        oif="nfup0",
        ctstate="ESTABLISHED",
        conntrack=first.conntrack(),
    )
    assert reply.verdict == "accept"
    assert reply.packet_after == Packet("tcp", "198.51.100.2", "203.0.113.10", 8080, 40000)
    assert [n.kind for n in reply.nats] == ["conntrack"]
    # later packets of the same connection skip the nat chains but still get translated
    again = netfilter.walk(
        nf,
        Packet("tcp", "203.0.113.10", "198.51.100.2", 40000, 8080),
        f,
        kind="input",
        iif="nfup0",
        ctstate="ESTABLISHED",
        conntrack=first.conntrack(),
        route=lambda p: "docker0",
    )
    assert again.packet_after.dst == "172.17.0.2"
    pre = again.hooks[0]
    assert all(v.skipped for v in pre.chains if v.type == "nat")


def test_docker_legacy_and_nft_give_the_same_answer(docker) -> None:  # type: ignore[no-untyped-def]
    _, f, _ = docker
    legacy = netfilter.load(Ruleset(iptables_legacy=text("docker-iptables-legacy.save")))
    w = netfilter.walk(
        legacy,
        Packet("udp", "203.0.113.10", "198.51.100.2", 40000, 5003),
        f,
        kind="input",
        iif="nfup0",
        route=lambda p: "x",
    )
    assert w.packet_after.dst == "172.31.1.2" and w.packet_after.dport == 53
    assert {h.deciding.backend for h in w.hooks if h.deciding} == {"iptables-legacy"}


# --------------------------------------------------------------------------- Podman / netavark


def test_netavark_iptables_localhost_port_forward_marks_and_masquerades() -> None:
    nf = netfilter.load(Ruleset(iptables_nft=text("podman-netavark.save")))
    f = facts(nfup0="198.51.100.3/24", podman0="10.88.0.1/16")
    w = netfilter.walk(
        nf,
        Packet("tcp", "127.0.0.1", "127.0.0.1", 40000, 8081),
        f,
        kind="local-output",
        route=lambda p: "podman0",
    )
    assert w.certain
    assert w.kind == "output"
    assert w.packet_after == Packet("tcp", "10.88.0.1", "10.88.0.3", 40000, 80, mark=0x2000)
    kinds = [(n.hook, n.kind) for n in w.nats]
    assert kinds == [("output", "dnat"), ("postrouting", "masquerade")]
    masq = w.nats[1].rule
    assert masq is not None and masq.chain == "NETAVARK-HOSTPORT-MASQ"


def test_netavark_nft_driver() -> None:
    nf = netfilter.load(Ruleset(nft_json=text("netavark-nft.nft.json")))
    f = facts(eth0="203.0.113.1/24", podman0="10.88.0.1/16")
    w = netfilter.walk(
        nf,
        Packet("tcp", "198.51.100.7", "203.0.113.1", 40000, 8082),
        f,
        kind="input",
        iif="eth0",
        route=lambda p: "podman0",
    )
    assert w.packet_after.dst == "10.88.0.5" and w.packet_after.dport == 80
    assert w.verdict == "accept"
    assert w.nats[0].rule is not None and w.nats[0].rule.handle is not None
    # container egress: FORWARD accepts its subnet, the nv_ chain masquerades
    out = netfilter.walk(
        nf, Packet("udp", "10.88.0.5", "198.51.100.7", 40000, 53), f, kind="forward",
        iif="podman0", oif="eth0",
    )  # fmt: skip
    assert out.packet_after.src == "203.0.113.1"
    assert out.nats[0].rule is not None and out.nats[0].rule.chain == "nv_2f259bab_10_88_0_0_nm16"
    # isolation: another bridge may not reach podman0
    iso = netfilter.walk(
        nf, Packet("udp", "10.89.0.5", "10.88.0.5", 40000, 53), f, kind="forward",
        iif="podman1", oif="podman0",
    )  # fmt: skip
    assert iso.verdict == "accept"  # podman0 -> elsewhere is isolated, not the reverse


# --------------------------------------------------------------------------- kube-proxy


def test_kube_proxy_iptables_statistic_is_uncertain() -> None:
    nf = netfilter.load(Ruleset(iptables_nft=text("kube-proxy-iptables.save")))
    f = facts(eth0="192.168.0.2/24", cni0="10.244.0.1/24")
    w = netfilter.walk(
        nf,
        Packet("tcp", "10.244.0.9", "10.96.12.34", 40000, 80),
        f,
        kind="forward",
        iif="cni0",
        route=lambda p: "cni0",
    )
    assert not w.certain
    (ref, why) = next(u for u in w.uncertain if "statistic" in u[1])
    assert ref.chain == "KUBE-SVC-WEBAPPXXXXXXXXXX" and "0.33333333349" in why
    assert w.packet_after.dst == "10.244.1.7"  # one possible answer, labelled as such


def test_kube_proxy_iptables_single_endpoint_is_certain_and_marked_for_masquerade() -> None:
    nf = netfilter.load(Ruleset(iptables_nft=text("kube-proxy-iptables.save")))
    f = facts(eth0="192.168.0.2/24", cni0="10.244.0.1/24")
    w = netfilter.walk(
        nf,
        Packet("tcp", "192.168.0.50", "10.96.0.1", 40000, 443),
        f,
        kind="forward",
        iif="eth0",
        route=lambda p: "eth0",
    )
    assert w.certain
    assert w.packet_after.dst == "192.168.0.2" and w.packet_after.dport == 6443
    # 192.168.0.2 is this node: DNAT turned forwarding into local delivery
    assert w.kind == "input"


def test_kube_proxy_iptables_masquerade_random_fully_noted() -> None:
    nf = netfilter.load(Ruleset(iptables_nft=text("kube-proxy-iptables.save")))
    f = facts(eth0="192.168.0.2/24", cni0="10.244.0.1/24")
    w = netfilter.walk(
        nf,
        Packet("udp", "192.168.0.50", "10.96.0.10", 40000, 53),
        f,
        kind="forward",
        iif="eth0",
        route=lambda p: "cni0",
    )
    assert w.packet_after.dst == "10.244.0.3" and w.packet_after.src == "10.244.0.1"
    assert w.packet_after.mark == 0  # KUBE-POSTROUTING clears 0x4000 before MASQUERADE
    masq = w.nats[-1]
    assert masq.kind == "masquerade" and masq.note and "random" in masq.note


def test_kube_proxy_iptables_service_without_endpoints_rejects() -> None:
    nf = netfilter.load(Ruleset(iptables_nft=text("kube-proxy-iptables.save")))
    f = facts(eth0="192.168.0.2/24")
    w = netfilter.walk(
        nf, Packet("tcp", "192.168.0.2", "10.96.0.99", 40000, 80), f, kind="output", oif="eth0"
    )
    assert w.verdict == "reject"
    assert w.deciding is not None and w.deciding.chain == "KUBE-SERVICES"


def test_kube_proxy_nft_vmaps_numgen_and_checks() -> None:
    nf = netfilter.load(Ruleset(nft_json=text("kube-proxy-nft.nft.json")))
    f = facts(eth0="192.168.0.2/24")

    def go(dst: str, dport: int, iif: str = "eth0") -> netfilter.Walk:
        return netfilter.walk(
            nf, Packet("tcp", "10.0.1.5", dst, 40000, dport), f, kind="forward", iif=iif,
            route=lambda p: "eth0",
        )  # fmt: skip

    two = go("172.30.0.41", 80)  # two endpoints: numgen mod 2
    assert not two.certain and any("numgen random mod 2" in why for _, why in two.uncertain)
    assert two.packet_after.dst == "10.180.0.1"
    one = go("172.30.0.43", 80)  # one endpoint: numgen mod 1 is certain
    assert one.certain and one.packet_after.dst == "10.180.0.3"
    nodeport = netfilter.walk(
        nf, Packet("tcp", "203.0.113.9", "192.168.0.2", 40000, 3003), f, kind="input",
        iif="eth0", route=lambda p: "eth0",
    )  # fmt: skip
    assert nodeport.packet_after.dst == "10.180.0.3"
    assert (
        nodeport.packet_after.mark & 0x4000 == 0
    )  # set by mark-for-masquerade, cleared at masquerade
    assert nodeport.nats[-1].kind == "masquerade"
    noep = go("172.30.0.46", 80)
    assert noep.verdict == "reject" and noep.deciding is not None
    assert noep.deciding.chain == "reject-chain"
    unalloc = go("172.30.0.99", 80)
    assert unalloc.verdict == "drop" and unalloc.deciding is not None
    assert unalloc.deciding.text.startswith("ip daddr 172.30.0.0/16 drop")
    wrong_port = go("172.30.0.41", 81)
    assert wrong_port.verdict == "reject"  # cluster-ips-check: a ClusterIP, a port it lacks


# ------------------------------------------------------------------ Docker nftables, firewalld


def test_docker_nftables_backend() -> None:
    nf = netfilter.load(Ruleset(nft_json=text("docker-nftables.nft.json")))
    f = facts(eth0="198.51.100.2/24", docker0="172.17.0.1/16", bridge1="192.0.2.1/24")
    w = netfilter.walk(
        nf, Packet("tcp", "203.0.113.5", "198.51.100.2", 40000, 8080), f, kind="input",
        iif="eth0", route=lambda p: "bridge1",
    )  # fmt: skip
    assert w.verdict == "accept" and w.packet_after.dst == "192.0.2.2"
    assert w.deciding is not None and w.deciding.chain == "filter-forward-in__bridge1"
    direct = netfilter.walk(
        nf, Packet("tcp", "203.0.113.5", "192.0.2.2", 40000, 80), f, kind="forward",
        iif="eth0", oif="bridge1",
    )  # fmt: skip
    assert direct.verdict == "drop" and direct.deciding is not None
    assert direct.deciding.chain == "raw-PREROUTING"
    unpublished = netfilter.walk(
        nf, Packet("tcp", "203.0.113.5", "172.17.0.2", 40000, 22), f, kind="forward",
        iif="eth0", oif="docker0",
    )  # fmt: skip
    assert unpublished.verdict == "drop" and unpublished.deciding is not None
    assert 'comment "UNPUBLISHED PORT DROP"' in unpublished.deciding.text
    egress = netfilter.walk(
        nf, Packet("udp", "172.17.0.2", "203.0.113.5", 40000, 53), f, kind="forward",
        iif="docker0", oif="eth0",
    )  # fmt: skip
    assert egress.packet_after.src == "198.51.100.2"


def test_firewalld_zones_sets_and_reject() -> None:
    nf = netfilter.load(Ruleset(nft_json=text("firewalld-nft.nft.json")))
    f = facts(eth0="192.0.2.10/24", wg0="10.9.0.1/24")

    def inp(src: str, dport: int, iif: str = "eth0", proto: str = "tcp") -> netfilter.Walk:
        return netfilter.walk(
            nf, Packet(proto, src, "192.0.2.10", 40000, dport), f, kind="input", iif=iif
        )

    assert inp("203.0.113.50", 22).verdict == "accept"
    assert inp("198.51.100.5", 8050).verdict == "accept"  # interval set + port range
    other = inp("198.51.100.200", 8050)
    assert other.verdict == "reject" and other.deciding is not None
    assert other.deciding.text == "reject with icmpx admin-prohibited"
    denied = inp("198.51.100.66", 22)
    assert denied.verdict == "drop" and denied.deciding is not None
    assert denied.deciding.chain == "filter_IN_public_deny"
    assert inp("10.9.0.7", 12345, iif="wg0").deciding.chain == "filter_IN_trusted"  # type: ignore[union-attr]
    fwd = netfilter.walk(
        nf, Packet("tcp", "198.51.100.9", "192.0.2.10", 40000, 2222), f, kind="input",
        iif="eth0", route=lambda p: "eth1",
    )  # fmt: skip
    assert fwd.packet_after.dst == "10.0.5.5" and fwd.verdict == "accept"
    assert fwd.deciding is not None and fwd.deciding.text == "ct status dnat accept"
    mdns = netfilter.walk(
        nf, Packet("udp", "192.0.2.77", "224.0.0.251", 5353, 5353), f, kind="input", iif="eth0"
    )
    assert mdns.verdict == "accept"


# --------------------------------------------------------------------------- semantics, one by one


CHAINS = """*filter
:INPUT DROP [3:180]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
:C - [0:0]
"""


def run_input(body: str, packet: Packet, iif: str = "eth0", **kw: object) -> netfilter.Walk:
    nf = netfilter.load(save(CHAINS + body + "COMMIT"))
    return netfilter.walk(nf, packet, facts(eth0="10.0.0.1/24"), kind="input", iif=iif, **kw)  # type: ignore[arg-type]


P = Packet("tcp", "10.0.0.5", "10.0.0.1", 40000, 22)


def test_jump_return_and_goto() -> None:
    body = (
        "-A INPUT -j A\n"  # jump A
        "-A INPUT -j ACCEPT\n"  # reached after A returns
        "-A A -g B\n"  # goto B: B's end returns to INPUT, not to A
        "-A A -j DROP\n"  # never reached
        "-A B -p tcp -j RETURN\n"
        "-A B -j DROP\n"
    )
    w = run_input(body, P)
    assert w.verdict == "accept"
    assert texts(w.hooks[-1].matched) == [
        "-A INPUT -j A",
        "-A A -g B",
        "-A B -p tcp -j RETURN",
        "-A INPUT -j ACCEPT",
    ]


def test_negation_multiport_and_wildcards() -> None:
    body = (
        "-A INPUT ! -s 10.0.0.0/24 -j DROP\n"
        "-A INPUT -i eth+ -p tcp -m multiport --dports 80,20:25 -j ACCEPT\n"
    )
    assert run_input(body, P).verdict == "accept"
    assert run_input(body, P.rewritten(dport=26)).policy is not None  # falls to policy DROP
    assert run_input(body, P.rewritten(src="192.0.2.1")).deciding.position == 1  # type: ignore[union-attr]
    assert run_input(body, P, iif="wlan0").verdict == "drop"


def test_policy_and_counters() -> None:
    w = run_input("[7:420] -A INPUT -p udp -j ACCEPT\n", P)
    assert w.verdict == "drop" and w.deciding is not None and w.deciding.policy
    assert w.deciding.counters == (3, 180)  # the policy's own counters (:INPUT DROP [3:180])
    assert w.policy == "iptables-nft ip filter INPUT policy drop"
    w2 = run_input("[7:420] -A INPUT -p tcp -j ACCEPT\n", P)
    assert w2.deciding is not None and w2.deciding.counters == (7, 420)


def test_uncertain_match_is_named_not_guessed() -> None:
    w = run_input("-A INPUT -m limit --limit 5/sec -j ACCEPT\n", P)
    assert w.verdict == "accept"
    ((ref, why),) = w.uncertain
    assert ref.text == "-A INPUT -m limit --limit 5/sec -j ACCEPT" and "rate limit" in why


def test_addrtype_needs_facts() -> None:
    nf = netfilter.load(save(CHAINS + "-A INPUT -m addrtype --dst-type LOCAL -j ACCEPT\nCOMMIT"))
    w = netfilter.walk(nf, P, NetnsFacts.unknown(), kind="input", iif="eth0")
    assert not w.certain and "fib.daddr.type" in w.uncertain[0][1]


def test_connmark_save_and_restore() -> None:
    body = (
        "COMMIT\n*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n"
        "-A PREROUTING -j MARK --set-xmark 0x5/0xff\n"
        "-A PREROUTING -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff\n"
        "-A PREROUTING -j MARK --set-xmark 0x0/0xffffffff\n"
        "-A INPUT -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff\n"
        "COMMIT\n*filter\n:INPUT DROP [0:0]\n-A INPUT -m mark --mark 0x5 -j ACCEPT\n"
    )
    nf = netfilter.load(save(CHAINS + body + "COMMIT"))
    w = netfilter.walk(nf, P, facts(eth0="10.0.0.1/24"), kind="input", iif="eth0")
    assert w.verdict == "accept" and w.packet_after.mark == 5


def test_equal_priority_newer_registration_runs_first() -> None:
    """At equal priority the kernel runs the most recently registered chain first."""
    doc = {
        "nftables": [
            {"table": {"family": "ip", "name": "old", "handle": 1}},
            {"chain": {"family": "ip", "table": "old", "name": "c", "handle": 1, "type": "filter",
                       "hook": "input", "prio": 0, "policy": "accept"}},
            {"rule": {"family": "ip", "table": "old", "chain": "c", "handle": 2,
                      "expr": [{"drop": None}]}},
            {"table": {"family": "ip", "name": "new", "handle": 2}},
            {"chain": {"family": "ip", "table": "new", "name": "c", "handle": 1, "type": "filter",
                       "hook": "input", "prio": 0, "policy": "accept"}},
            {"rule": {"family": "ip", "table": "new", "chain": "c", "handle": 2,
                      "expr": [{"reject": None}]}},
        ]
    }  # fmt: skip
    nf = netfilter.load(Ruleset(nft_json=json.dumps(doc)))
    w = netfilter.walk(nf, P, facts(eth0="10.0.0.1/24"), kind="input", iif="eth0")
    assert w.verdict == "reject" and w.deciding is not None and w.deciding.table == "new"


def test_nat_chains_need_conntrack() -> None:
    """A nat chain without any NAT or ct rule never runs: the kernel has no conntrack there."""
    nat_only = "COMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp\n"
    w = run_input(nat_only, P)
    assert w.hooks[0].matched == ()
    assert any(v.skipped and "connection tracking" in v.skipped for v in w.hooks[0].chains)


def test_first_nat_binding_wins_across_tables() -> None:
    doc = {
        "nftables": [
            {"table": {"family": "ip", "name": "a", "handle": 1}},
            {"chain": {"family": "ip", "table": "a", "name": "n", "handle": 1, "type": "nat",
                       "hook": "prerouting", "prio": -110, "policy": "accept"}},
            {"rule": {"family": "ip", "table": "a", "chain": "n", "handle": 2,
                      "expr": [{"dnat": {"addr": "10.0.0.7"}}]}},
            {"chain": {"family": "ip", "table": "a", "name": "m", "handle": 3, "type": "nat",
                       "hook": "prerouting", "prio": -90, "policy": "accept"}},
            {"rule": {"family": "ip", "table": "a", "chain": "m", "handle": 4,
                      "expr": [{"dnat": {"addr": "10.0.0.8"}}]}},
        ]
    }  # fmt: skip
    nf = netfilter.load(Ruleset(nft_json=json.dumps(doc)))
    h = netfilter.evaluate_hook(
        nf, "prerouting", P, facts(eth0="10.0.0.1/24"), iif="eth0", oif=None
    )
    assert h.packet.dst == "10.0.0.7"
    assert [v.skipped is not None for v in h.chains] == [False, True]


def test_notrack_skips_nat_and_sets_untracked() -> None:
    body = (
        "COMMIT\n*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j CT --notrack\n"
        "COMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j DNAT --to-destination 10.0.0.9\n"
        "COMMIT\n*filter\n:INPUT DROP [0:0]\n-A INPUT -m conntrack --ctstate UNTRACKED -j ACCEPT\n"
    )
    w = run_input(body, P)
    assert w.verdict == "accept" and not w.nats


def test_physdev_for_bridged_packets() -> None:
    nf = netfilter.load(save(
        "*filter\n:FORWARD DROP [0:0]\n"
        "-A FORWARD -m physdev --physdev-is-bridged --physdev-in veth+ -j ACCEPT\nCOMMIT"
    ))  # fmt: skip
    f = facts(br0="10.0.0.1/24")
    pkt = Packet("tcp", "10.0.0.5", "10.0.0.6", 40000, 80)
    bridged = netfilter.evaluate_hook(
        nf, "forward", pkt, f, iif="br0", oif="br0", physdev_in="veth1", physdev_out="veth2"
    )
    assert bridged.verdict == "accept"
    routed = netfilter.evaluate_hook(nf, "forward", pkt, f, iif="br0", oif="eth1")
    assert routed.verdict == "drop"


def test_ipset_contents() -> None:
    rs = Ruleset(
        iptables_nft="*filter\n:INPUT DROP [0:0]\n"
        "-A INPUT -m set --match-set allowed src -j ACCEPT\nCOMMIT\n",
        ipsets="create allowed hash:net family inet\nadd allowed 10.0.0.0/28\n",
    )
    nf = netfilter.load(rs)
    f = facts(eth0="10.0.0.1/24")
    assert netfilter.walk(nf, P, f, kind="input", iif="eth0").verdict == "accept"
    far = P.rewritten(src="10.0.0.99")
    assert netfilter.walk(nf, far, f, kind="input", iif="eth0").verdict == "drop"
    unknown = netfilter.load(Ruleset(iptables_nft=rs.iptables_nft))
    w = netfilter.walk(unknown, P, f, kind="input", iif="eth0")
    assert any("ipset 'allowed'" in why for _, why in w.uncertain)


def test_redirect_uses_the_input_address_and_masquerade_borrows_for_lo() -> None:
    body = (
        "COMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -j REDIRECT --to-ports 3128\n"
    )
    w = run_input(body, P.rewritten(dst="93.184.216.34", dport=80), route=lambda p: "eth1")
    assert w.packet_after.dst == "10.0.0.1" and w.packet_after.dport == 3128
    assert w.kind == "input"


def test_bad_arguments_are_bad_input() -> None:
    nf = netfilter.load(save(CHAINS + "COMMIT"))
    with pytest.raises(netfilter.RulesetError.__mro__[1]):  # BadInput
        netfilter.walk(nf, P, facts(), kind="sideways")
    with pytest.raises(netfilter.RulesetError.__mro__[1]):
        netfilter.evaluate_hook(nf, "ingress", P, facts(), iif=None, oif=None)
    with pytest.raises(netfilter.RulesetError.__mro__[1]):
        netfilter.walk(nf, P, facts(), kind="input", ctstate="SLEEPY")


# --------------------------------------------------------------------------- queries


def test_rules_touching_a_docker_container(docker) -> None:  # type: ignore[no-untyped-def]
    nf, _, _ = docker
    by_hook = netfilter.rules_touching(nf, addresses=["172.17.0.2"])
    assert set(by_hook) >= {"prerouting", "output", "forward", "postrouting"}
    pre = texts(by_hook["prerouting"])
    assert (
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80"
        in pre
    )
    post = texts(by_hook["postrouting"])
    assert "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE" in post
    assert all("172.31" not in t for t in pre)
    ports = netfilter.rules_touching(nf, ports=[8080])
    assert any("--dport 8080" in r.text for r in ports["prerouting"])
    ifaces = netfilter.rules_touching(nf, interfaces=["docker0"])
    assert any("-o docker0 -j DOCKER" in r.text for r in ifaces["forward"])


def test_rules_touching_nft_vmap_keys() -> None:
    nf = netfilter.load(Ruleset(nft_json=text("docker-nftables.nft.json")))
    by_iface = netfilter.rules_touching(nf, interfaces=["bridge1"])
    assert any("vmap @filter-forward-in-jumps" in r.text for r in by_iface["forward"])
    kp = netfilter.load(Ruleset(nft_json=text("kube-proxy-nft.nft.json")))
    by_addr = netfilter.rules_touching(kp, addresses=["172.30.0.41"])
    assert any("vmap @service-ips" in r.text for r in by_addr["prerouting"])


def test_rules_by_hook_lists_reachable_chains() -> None:
    nf = netfilter.load(Ruleset(iptables_nft=text("docker-iptables-nft.save")))
    rules = netfilter.rules_by_hook(nf)
    fwd = [r.chain for r in rules["forward"]]
    assert fwd[0] == "FORWARD" and "DOCKER-ISOLATION-STAGE-2" in fwd
    assert "DOCKER" in [r.chain for r in rules["prerouting"]]


def test_facts_for_a_snapshot_namespace() -> None:
    ns = Netns(
        inode=1,
        links=(
            Link(1, "lo", kind="loopback", addresses=(Address(4, "127.0.0.1", 8, "host"),)),
            Link(
                2, "eth0", addresses=(Address(4, "198.51.100.2", 24, broadcast="198.51.100.255"),)
            ),
            Link(3, "docker0", kind="bridge", addresses=(Address(4, "172.17.0.1", 16),)),
            Link(4, "veth1", kind="veth", master=3),
        ),
        routes=(Route(4, "10.1.2.3/32", table=255, type="local"),),
    )
    f = netfilter.facts_for(ns)
    assert f.known
    assert {"198.51.100.2", "172.17.0.1", "10.1.2.3"} <= f.local_addresses
    assert f.iface_addresses["eth0"] == ("198.51.100.2",)
    assert f.bridge_of == {"veth1": "docker0"}
    assert "198.51.100.255" in f.broadcast_addresses


def test_ipv6_rules_and_families() -> None:
    rs = Ruleset(
        ip6tables_nft="# Generated by ip6tables-save v1.8.9 (nf_tables) on x\n*filter\n"
        ":INPUT DROP [0:0]\n-A INPUT -s fe80::/64 -p ipv6-icmp -j ACCEPT\nCOMMIT\n",
        iptables_nft="*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n",
    )
    nf = netfilter.load(rs)
    f = NetnsFacts(
        frozenset({"fe80::2", "10.0.0.1"}),
        {"eth0": ("10.0.0.1", "fe80::2")},
        {"eth0": ("10.0.0.1/24", "fe80::2/64")},
    )
    ping6 = Packet("icmp", "fe80::1", "fe80::2", family=6, icmp_type=128)
    assert netfilter.walk(nf, ping6, f, kind="input", iif="eth0").verdict == "accept"
    other = Packet("icmp", "2001:db8::1", "fe80::2", family=6, icmp_type=128)
    assert netfilter.walk(nf, other, f, kind="input", iif="eth0").verdict == "drop"
    # the IPv4 table does not see IPv6 packets, nor the reverse
    assert netfilter.walk(nf, P, f, kind="input", iif="eth0").verdict == "accept"


def test_iptables_nft_save_warns_about_legacy_tables() -> None:
    text = (
        "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n"
        "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"
    )
    nf = netfilter.load(Ruleset(iptables_nft=text))
    assert any("both back ends are in use" in w for w in nf.warnings)
