"""The stable vocabulary of findings: a code names a cause and never changes once released.

docs/findings.md documents each code (what triggers it, and the fix); a unit test keeps the two in
step. Findings are built by the predictor with evidence taken from the Snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass

from cntrace.model import Finding


@dataclass(frozen=True)
class Code:
    """A finding's code, with how bad it is and its title."""

    code: str
    severity: str  # error: explains a failure; warning: will bite later; info: worth knowing
    title: str


CODES: dict[str, Code] = {
    c.code: c
    for c in (
        Code("loopback-bind", "error", "the server listens on loopback only"),
        Code("no-listener", "error", "nothing listens on the destination port"),
        Code("isolated-networks", "error", "source and destination are on isolated networks"),
        Code("ip-forward-disabled", "error", "IP forwarding is off where the packet is routed"),
        Code("forward-drop", "error", "a rule in the forward path drops the packet"),
        Code("input-drop", "error", "a rule in the input path drops the packet"),
        Code("output-drop", "error", "a rule in the output path drops the packet"),
        Code("no-masquerade", "error", "the packet leaves with a private source address"),
        Code("no-route", "error", "no route to the destination"),
        Code("interface-down", "error", "an interface on the path is down"),
        Code("mtu-mismatch", "warning", "an MTU on the path is smaller than the sender's"),
        Code("rp-filter", "error", "reverse-path filtering drops the packet"),
        Code("neighbor-failed", "error", "the next hop does not answer ARP/NDP"),
        Code("port-not-published", "error", "the port is not published on the host"),
        Code("dns-no-embedded-resolver", "error", "the name cannot be resolved from the source"),
        Code("conntrack-full", "error", "the connection-tracking table is full"),
        Code("rule-uncertain", "warning", "a rule could not be evaluated"),
        Code("dns-unresolved", "error", "the name does not resolve"),
        Code("vxlan-no-fdb", "error", "the VXLAN device does not know where the remote VTEP is"),
        Code("vxlan-no-neighbor", "error", "no neighbour entry for the remote VTEP"),
        Code("vxlan-vni-mismatch", "error", "the receiving node has no VXLAN device for the VNI"),
        Code("vxlan-mtu", "error", "the wrapped packet is larger than an underlay MTU"),
        Code("vxlan-dropped", "error", "a rule drops the tunnel's outer packets"),
        Code("no-node-route", "error", "a node has no route to another node's pod subnet"),
        Code("service-no-endpoints", "error", "the Kubernetes Service has no ready endpoints"),
        Code(
            "service-no-local-endpoint",
            "error",
            "externalTrafficPolicy: Local and no endpoint on this node",
        ),
        Code("service-endpoint-not-ready", "error", "a Service endpoint does not serve the port"),
        Code("service-hairpin", "info", "a pod reaches itself through its Service"),
        Code("hostport-clash", "warning", "two pods claim the same hostPort"),
        Code(
            "nodeport-address",
            "error",
            "a NodePort reached on an address kube-proxy does not serve",
        ),
        Code("proxy-arp-off", "error", "a routed veth's gateway is neither held nor proxied"),
        Code("missing-host-route", "error", "no route to a container behind its routed veth"),
        Code("macvlan-parent", "error", "a macvlan's parent namespace cannot reach its child"),
        Code("macvlan-private", "error", "a private-mode macvlan talks to no sibling"),
        Code("macvlan-vepa", "warning", "vepa-mode macvlan siblings need a reflecting switch"),
        Code("network-internal", "error", "an internal runtime network lets nothing in or out"),
        Code("icc-disabled", "error", "the network disables inter-container communication"),
        Code(
            "port-published-elsewhere",
            "error",
            "the port is published on another host address",
        ),
        Code("docker-proxy-hairpin", "info", "docker-proxy relays a host port to a container"),
        Code(
            "runtime-policy-clash",
            "error",
            "Docker's FORWARD policy drops another runtime's published port",
        ),
        Code("container-not-running", "error", "the container exists but is not running"),
    )
}


def finding(
    code: str,
    summary: str,
    *,
    evidence: tuple[str, ...] | list[str] = (),
    fix: str = "",
    hop: int | None = None,
    severity: str | None = None,
) -> Finding:
    """A Finding with its catalogued severity (unknown codes are a programming error)."""
    entry = CODES[code]
    return Finding(
        code=code,
        severity=severity or entry.severity,
        summary=summary,
        evidence=tuple(evidence),
        fix=fix,
        hop=hop,
    )
