"""The two-node labs' faults and what `cntrace path` must say about each: one table for the unit
tier (recorded snapshots, fixtures/snapshots/<topology>/<state>.json) and the live tier
(tests/integration/test_overlay_live.py, which breaks a live lab and checks a real connection).
"""

from __future__ import annotations

from dataclasses import dataclass

REAL = {"delivered": "ok", "dropped": "timeout", "timeout": "timeout", "unreachable": "timeout"}
IPS = {"client": "10.244.1.2", "web": "10.244.2.2"}


@dataclass(frozen=True)
class OverlayCase:
    topology: str
    fault: str | None
    src: str
    dst: str  # NAME:PORT
    status: str
    hop: str  # kind of the hop the first error finding points at ("" when none)
    node: str  # the namespace role that hop is in ("" when none)
    code: str | None  # the first error finding
    proto: str = "tcp"
    size: int | None = None

    @property
    def state(self) -> str:
        return self.fault or "healthy"

    @property
    def name(self) -> str:
        return self.dst.split(":")[0]

    @property
    def port(self) -> int:
        return int(self.dst.split(":")[1])

    @property
    def id(self) -> str:
        return f"{self.topology}/{self.state}:{self.src}->{self.dst}/{self.proto}"

    @property
    def real(self) -> str:
        return REAL[self.status]


V, H = "two-node", "two-node-host-gw"
CASES = (
    OverlayCase(V, None, "client", "web:80", "delivered", "", "", None),
    OverlayCase(V, None, "web", "client:80", "delivered", "", "", None),
    OverlayCase(V, None, "client", "web:9000", "delivered", "", "", None, proto="udp", size=1400),
    OverlayCase(H, None, "client", "web:80", "delivered", "", "", None),
    OverlayCase(H, None, "web", "client:80", "delivered", "", "", None),
    OverlayCase(V, "no-fdb", "client", "web:80", "dropped", "vxlan", "node1", "vxlan-no-fdb"),
    OverlayCase(V, "no-fdb", "web", "client:80", "timeout", "vxlan", "node1", "vxlan-no-fdb"),
    OverlayCase(
        V, "wrong-vni", "client", "web:80", "dropped", "vxlan", "node2", "vxlan-vni-mismatch"
    ),
    OverlayCase(
        V, "wrong-vni", "web", "client:80", "dropped", "vxlan", "node1", "vxlan-vni-mismatch"
    ),
    OverlayCase(
        V,
        "underlay-mtu",
        "client",
        "web:9000",
        "dropped",
        "veth",
        "node2",
        "vxlan-mtu",
        proto="udp",
        size=1400,
    ),
    OverlayCase(V, "underlay-mtu", "client", "web:80", "delivered", "", "", None),
    OverlayCase(
        V, "vxlan-blocked", "client", "web:80", "dropped", "netfilter", "node2", "vxlan-dropped"
    ),
    OverlayCase(
        V, "vxlan-blocked", "web", "client:80", "timeout", "netfilter", "node2", "vxlan-dropped"
    ),
    OverlayCase(
        V, "no-route", "client", "web:80", "unreachable", "route", "node1", "no-node-route"
    ),
    OverlayCase(V, "no-route", "web", "client:80", "timeout", "route", "node1", "no-node-route"),
    OverlayCase(V, "rp-filter", "client", "web:80", "dropped", "route", "node2", "rp-filter"),
    OverlayCase(V, "rp-filter", "web", "client:80", "timeout", "route", "node2", "rp-filter"),
    OverlayCase(
        H, "no-route", "client", "web:80", "unreachable", "route", "node1", "no-node-route"
    ),
    OverlayCase(H, "no-route", "web", "client:80", "timeout", "route", "node1", "no-node-route"),
)
IDS = [c.id for c in CASES]
