"""Predict one packet's way hop by hop from a Snapshot, and its reply's way back.

The walk follows the kernel: in each namespace a locally generated packet is routed, passes the
OUTPUT and POSTROUTING hooks and leaves by an interface; a packet arriving on an interface passes
PREROUTING, is delivered locally (INPUT, then a socket) or forwarded (ip_forward, rp_filter,
FORWARD, POSTROUTING). Leaving by a veth lands in the peer's namespace; a veth enslaved to a bridge
hands the frame to the bridge, which either gives it to its own namespace's IP stack (the frame is
for the bridge's address) or forwards it to the port behind which the next hop lives, through
br_netfilter's FORWARD when bridge-nf-call-iptables is on. NAT done on the way out is undone on the
way back, as conntrack would.

Every decision becomes a Hop with its evidence; the first failure becomes the Verdict, and its
cause a Finding with the fix. The pieces: walk (state, hops, ends), stack (a namespace's IP
stack), links (interfaces, pairs, bridges), hooks (netfilter), diagnose (findings), reply.
"""

from __future__ import annotations

from dataclasses import replace

from cntrace.model import Endpoint, Netns, Packet, Path, Snapshot, Verdict
from cntrace.netfilter import Netfilter
from cntrace.path import diagnose, fork, intent, overlay, reply, routing, stack
from cntrace.path.endpoints import Destination, Source, resolve_destination, resolve_source
from cntrace.path.walk import LEFT_HOST, End, Step, Walk
from cntrace.topology import Topology

MAX_HOPS = 64  # namespaces a packet may enter before cntrace calls the path a loop
EPHEMERAL_PORT = 40000
TCP_SYN_SIZE = 60
DEFAULT_SIZES = {"tcp": TCP_SYN_SIZE, "udp": 64, "icmp": 84}


def predict(
    snap: Snapshot,
    source: str,
    destination: str,
    *,
    proto: str | None = None,
    port: int | None = None,
    size: int | None = None,
) -> Path:
    """The predicted path of one packet from ``source`` to ``destination``, with its reply.

    Where a rule picks at random (a Kubernetes Service's endpoints), the walk forks: every way is
    walked and listed as a Branch (cntrace.path.fork).
    """
    topo = Topology(snap)
    stopped = intent.not_running(snap, topo, source, destination, proto)
    if stopped is not None:
        return stopped
    src = resolve_source(snap, topo, source, destination)
    dst = resolve_destination(snap, topo, src, destination, port=port, proto=proto)

    def once(forced: dict[int, Netfilter]) -> tuple[Path, Walk]:
        return _predict_once(snap, topo, src, dst, destination, size, forced)

    return fork.predict_forked(snap, src, once)


def _predict_once(
    snap: Snapshot,
    topo: Topology,
    src: Source,
    dst: Destination,
    destination: str,
    size: int | None,
    forced: dict[int, Netfilter],
) -> tuple[Path, Walk]:
    """One walk (request, then reply) with the given random choices made."""
    w = Walk(snap, topo, size or DEFAULT_SIZES[dst.proto], forced=forced)
    w.endpoints = (src.container, dst.container or topo.owner(dst.endpoint.netns))
    for f in dst.findings:
        w.add(f)
    if dst.ip is None:
        verdict = Verdict(
            "unreachable",
            None,
            dst.findings[0].summary if dst.findings else f"cannot resolve {destination}",
            reason="name-resolution",
        )
        return Path(src.endpoint, dst.endpoint, (), verdict, tuple(w.findings)), w
    packet = Packet(
        proto=dst.proto,
        src="",
        dst=dst.ip,
        sport=EPHEMERAL_PORT if dst.proto in ("tcp", "udp") else None,
        dport=dst.port,
        family=routing.family_of(dst.ip),
        icmp_type=8 if dst.proto == "icmp" else None,
    )
    end = _walk(w, src.netns, packet)
    w.request_end = end
    intent.after_walk(w, end)
    if end.status == "delivered" and end.reason != LEFT_HOST:
        end = reply.outcome(end, _walk(w, *reply.turn(w, end)))
    elif end.reason == LEFT_HOST and w.unmasqueraded is not None:
        host, uplink, private = w.unmasqueraded
        diagnose.no_masquerade(w, host, uplink, private, end.hop, severity="warning")
    diagnose.mtu_warnings(w, src.netns)
    src_ep = replace(src.endpoint, ip=src.endpoint.ip or (w.hops[0].packet.src if w.hops else None))
    verdict = Verdict(end.status, end.hop, end.summary, end.reason, end.rule)
    path = Path(src_ep, _final_destination(dst.endpoint, w), tuple(w.hops), verdict)
    return replace(path, findings=w.sorted_findings()), w


def _walk(w: Walk, start: Netns, packet: Packet) -> End:
    """The one loop, for the request and the reply: send from ``start``, then hop namespace to
    namespace until the packet is delivered or lost."""
    step: Step = stack.output(w, start, packet)
    for _ in range(MAX_HOPS):
        if isinstance(step, End):
            return overlay.ended(w, step)
        step = stack.arrive(w, step)
    if isinstance(step, End):
        return overlay.ended(w, step)
    what = "path" if w.request else "reply path"
    return End(status="unknown", summary=f"the {what} loops", netns=step.netns, hop=len(w.hops))


def _final_destination(ep: Endpoint, w: Walk) -> Endpoint:
    """Where the request really arrived (after DNAT; and for an address, the namespace that holds
    it on the way the packet went), kept next to what was asked."""
    for h in w.hops:
        if (h.kind, h.direction) != ("socket", "request"):
            continue
        ep = replace(ep, netns=h.netns, netns_label=h.netns_label)
        owner = w.topo.owner(h.netns)
        if ep.kind == "ip":
            ep = replace(
                ep, name=owner.name if owner else None, runtime=owner.runtime if owner else None
            )
        return ep
    return ep
