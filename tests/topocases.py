"""The lab topologies' connections and what each fault does to them, as measured on a real kernel.

One table for two tiers: tests/integration/test_lab_topologies.py proves every outcome with real
connections, tests/unit/test_path_topologies.py asks `cntrace path` the same questions on the
recorded snapshots (fixtures/snapshots/<topology>/) and must give the same answers.
"""

from __future__ import annotations

from typing import NamedTuple


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
