"""Every lab topology by name. A new one is one module here: ``plan(name, backend)`` returning a
TopologyPlan, its FAULTS, and a TOPOLOGY entry added to TOPOLOGIES below."""

from __future__ import annotations

from cntrace.errors import BadInput
from cntrace.lab import faults
from cntrace.lab.topo import Topology
from cntrace.lab.topologies import macvlan, nested, routed, router, twonode

DEFAULT = "docker"

TOPOLOGIES: dict[str, Topology] = {
    t.name: t
    for t in (
        Topology(
            DEFAULT,
            "the Docker-like host: two bridge networks, published ports (default)",
            faults.FAULTS,
        ),
        router.TOPOLOGY,
        nested.TOPOLOGY,
        routed.TOPOLOGY,
        macvlan.TOPOLOGY,
        twonode.TOPOLOGY,
        twonode.TOPOLOGY_HOST_GW,
    )
}


def get(name: str) -> Topology:
    try:
        return TOPOLOGIES[name]
    except KeyError:
        raise BadInput(f"unknown topology {name!r} (known: {', '.join(TOPOLOGIES)})") from None
