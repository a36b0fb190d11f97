"""Every lab topology on a real kernel: healthy connections, each fault breaking exactly what it
says (every other connection unchanged), `fix` restoring it, and nothing left after `down`.

Each topology's checks are real TCP/UDP connections (tests/safety.py's probe) between its
namespaces. The router runs once per firewall back end (iptables-nft, iptables-legacy, native
nftables): the same checks must give the same answers under every fault.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import pytest
from harness import require_root
from labkit import Lab, lab_up, root_state, unique_name

from cntrace.lab import topologies


class Check(NamedTuple):
    src: str  # lab role (namespace <lab>.<src>)
    ip: str
    port: int
    proto: str
    healthy: str  # outcome when nothing is broken
    size: int = 0  # UDP payload bytes (0: a short line)


CHECKS: dict[str, dict[str, Check]] = {
    "router": {
        "client>web": Check("client", "10.220.2.10", 80, "tcp", "ok"),
        "client>web/udp": Check("client", "10.220.2.10", 9000, "udp", "ok"),
        "client>db": Check("client", "10.220.2.20", 5432, "tcp", "refused"),  # DMZ-IN REJECT
        "client>upstream": Check("client", "203.0.113.10", 80, "tcp", "ok"),  # masqueraded
        "upstream>forward": Check("upstream", "192.0.2.2", 8080, "tcp", "ok"),  # DNAT to web
        "upstream>web": Check("upstream", "10.220.2.10", 80, "tcp", "ok"),  # routed DMZ
        "web>db": Check("web", "10.220.2.20", 5432, "tcp", "ok"),  # same switch
        "web>upstream": Check("web", "203.0.113.10", 80, "tcp", "ok"),
        "web>client": Check("web", "10.220.1.10", 80, "tcp", "timeout"),  # FORWARD policy
    },
    "nested": {
        "client>web": Check("client", "10.244.0.2", 80, "tcp", "ok"),
        "client>upstream": Check("client", "203.0.113.10", 80, "tcp", "ok"),
        "host>web": Check("host", "10.244.0.2", 80, "tcp", "ok"),
        "host>nodeport": Check("host", "10.230.0.2", 30080, "tcp", "ok"),
        "upstream>published": Check("upstream", "192.0.2.2", 8080, "tcp", "ok"),
        "node>upstream": Check("node", "203.0.113.10", 80, "tcp", "ok"),
    },
    "routed": {
        "client>web": Check("client", "10.240.0.10", 80, "tcp", "ok"),
        "web>client/udp": Check("web", "10.240.0.20", 9000, "udp", "ok"),
        "client>upstream": Check("client", "203.0.113.10", 80, "tcp", "ok"),
        "web>upstream": Check("web", "203.0.113.10", 80, "tcp", "ok"),
        "upstream>web": Check("upstream", "10.240.0.10", 80, "tcp", "ok"),
        "host>web": Check("host", "10.240.0.10", 80, "tcp", "ok"),
    },
    "macvlan": {
        "web>client": Check("web", "10.250.0.11", 80, "tcp", "ok"),  # bridge-mode siblings
        "web>lan": Check("web", "10.250.0.1", 80, "tcp", "ok"),
        "private>lan": Check("private", "10.250.0.1", 80, "tcp", "ok"),
        "web>private": Check("web", "10.250.0.12", 80, "tcp", "timeout"),  # private mode
        "lan>web": Check("upstream", "10.250.0.10", 80, "tcp", "ok"),
        "host>lan": Check("host", "10.250.0.1", 80, "tcp", "ok"),
        "host>web": Check("host", "10.250.0.10", 80, "tcp", "ok"),  # through the shim
        "host>client": Check("host", "10.250.0.11", 80, "tcp", "ok"),
        "host>private": Check("host", "10.250.0.12", 80, "tcp", "timeout"),
    },
    "two-node": {
        "client>web": Check("client", "10.244.2.2", 80, "tcp", "ok"),  # through the tunnel
        "web>client": Check("web", "10.244.1.2", 80, "tcp", "ok"),
        "client>web/udp": Check("client", "10.244.2.2", 9000, "udp", "ok"),
        # 1,428 bytes inside, 1,478 outside: fits the 1,500-byte underlay, not node2's 1,400
        "client>web/big": Check("client", "10.244.2.2", 9000, "udp", "ok", size=1400),
        "client>upstream": Check("client", "203.0.113.10", 80, "tcp", "ok"),  # masqueraded
        "web>upstream": Check("web", "203.0.113.10", 80, "tcp", "ok"),  # not tunnelled
    },
    "two-node-host-gw": {
        "client>web": Check("client", "10.244.2.2", 80, "tcp", "ok"),
        "web>client": Check("web", "10.244.1.2", 80, "tcp", "ok"),
        "client>web/udp": Check("client", "10.244.2.2", 9000, "udp", "ok"),
        "client>upstream": Check("client", "203.0.113.10", 80, "tcp", "ok"),
    },
}

_BETWEEN_THE_NODES = {
    c: "timeout" for c in ("client>web", "web>client", "client>web/udp", "client>web/big")
}

_EVERYTHING_THROUGH_THE_ROUTER = {
    c: "timeout"
    for c in (
        "client>web",
        "client>web/udp",
        "client>db",
        "client>upstream",
        "upstream>forward",
        "upstream>web",
        "web>upstream",
    )
}
_EVERYTHING_OF_WEB = {
    c: "timeout"
    for c in ("client>web", "web>client/udp", "web>upstream", "upstream>web", "host>web")
}

# fault -> the checks whose outcome changes, and to what; every other check must not change.
BREAKS: dict[str, dict[str, dict[str, str]]] = {
    "router": {
        "reject-port": {
            "client>web": "refused",
            "upstream>forward": "refused",
            "upstream>web": "refused",
        },
        "drop-subnet": {
            "client>web": "timeout",
            "client>web/udp": "timeout",
            "client>db": "timeout",
            "client>upstream": "timeout",
        },
        "no-return-route": {"web>upstream": "timeout", "upstream>web": "enetunreach"},
        "ip-forward-off": _EVERYTHING_THROUGH_THE_ROUTER,
    },
    "nested": {
        "node-forward-drop": {
            "host>web": "timeout",
            "host>nodeport": "timeout",
            "upstream>published": "timeout",
        },
        "node-no-dnat": {"host>nodeport": "refused", "upstream>published": "refused"},
        "host-no-route": {"host>web": "timeout"},
        "node-no-masquerade": {"client>upstream": "timeout"},
    },
    "routed": {"missing-route": _EVERYTHING_OF_WEB, "proxy-arp-off": _EVERYTHING_OF_WEB},
    "macvlan": {
        "no-shim": {"host>web": "timeout", "host>client": "timeout"},
        "client-private": {"web>client": "timeout", "host>client": "timeout"},
    },
    "two-node": {
        "no-fdb": _BETWEEN_THE_NODES,
        "wrong-vni": _BETWEEN_THE_NODES,
        "underlay-mtu": {"client>web/big": "timeout"},
        "vxlan-blocked": _BETWEEN_THE_NODES,
        "no-route": _BETWEEN_THE_NODES,
        "rp-filter": _BETWEEN_THE_NODES,
    },
    "two-node-host-gw": {
        "no-route": {c: "timeout" for c in ("client>web", "web>client", "client>web/udp")},
    },
}

LABS = [
    ("router", "nft"),
    ("router", "legacy"),
    ("router", "nftables"),
    ("nested", "nft"),
    ("routed", "nft"),
    ("macvlan", "nft"),
    ("two-node", "nft"),
    ("two-node-host-gw", "nft"),
]


def outcomes(lab: Lab, topology: str) -> dict[str, str]:
    """Every check of ``topology``, run at once (each probe is its own process)."""
    checks = CHECKS[topology]
    with ThreadPoolExecutor(max_workers=8) as pool:
        done = pool.map(
            lambda c: lab.probe(c.src, c.ip, c.port, c.proto, size=c.size), checks.values()
        )
        # An unanswered ARP ends as a timeout the first time, and as EHOSTUNREACH while the
        # neighbour entry stays FAILED: the same fact, told apart only by timing.
        return {
            name: "timeout" if got == "ehostunreach" else got
            for name, got in zip(checks, done, strict=True)
        }


def healthy(topology: str) -> dict[str, str]:
    return {name: c.healthy for name, c in CHECKS[topology].items()}


def test_every_topology_and_fault_has_cases() -> None:
    made = {t for t, kind in topologies.TOPOLOGIES.items() if kind.plan is not None}
    assert set(CHECKS) == set(BREAKS) == made == {t for t, _ in LABS}
    for t in made:
        assert set(BREAKS[t]) == set(topologies.get(t).faults), t
        for changes in BREAKS[t].values():
            assert set(changes) <= set(CHECKS[t])
            assert all(CHECKS[t][c].healthy != v for c, v in changes.items())


@pytest.fixture(scope="module", params=LABS, ids=[f"{t}-{b}" for t, b in LABS])
def topo_lab(request: pytest.FixtureRequest) -> Iterator[tuple[Lab, str]]:
    require_root()
    topology, backend = request.param
    before = root_state()
    name = unique_name(topology[:4] + backend[:2])
    with lab_up(name, "--topology", topology, "--iptables", backend) as lab:
        assert lab.state.topology == topology and lab.state.status == "up"
        during = root_state()
        yield lab, topology
    after = root_state()
    for key in ("links", "addresses", "routes", "nft", "iptables-legacy"):
        assert during[key] == before[key] == after[key], f"the lab changed the root's {key}"
    # Namespaces are compared by name only: other labs may come and go meanwhile.
    assert not [n for n in after["netns"].split() if n.startswith(f"{name}.")]


def test_healthy_connections(topo_lab: tuple[Lab, str]) -> None:
    lab, topology = topo_lab
    assert outcomes(lab, topology) == healthy(topology)
    res = lab.run("lab", "status", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    if topology == "router":
        # Both ends were placed at once in fresh namespaces: one ifindex on both sides, which
        # discovery must not mistake for a single device.
        assert _links(lab, "router")["wan0"] == _links(lab, "upstream")["eth0"]


def _links(lab: Lab, role: str) -> dict[str, int]:
    out = subprocess.run(
        ["ip", "-n", f"{lab.name}.{role}", "-j", "link"], capture_output=True, text=True, check=True
    ).stdout
    return {x["ifname"]: x["ifindex"] for x in json.loads(out)}


def test_faults_break_exactly_what_they_say_and_fix_restores(topo_lab: tuple[Lab, str]) -> None:
    lab, topology = topo_lab
    for fault, changes in BREAKS[topology].items():
        res = lab.run("lab", "break", fault)
        assert res.returncode == 0, res.stderr
        try:
            assert fault in lab.state.faults
            assert outcomes(lab, topology) == {**healthy(topology), **changes}, fault
        finally:
            res = lab.run("lab", "fix", fault)
            assert res.returncode == 0, res.stderr
        assert outcomes(lab, topology) == healthy(topology), f"after fixing {fault}"
    assert not lab.state.faults
