"""Forks at random choices, and the Kubernetes words for a path.

A rule that matches at random (kube-proxy's endpoint choice) cannot be predicted, so the walk is
forked like a trace that branches at conntrack: the first random choice met is made every way it
can be made (cntrace.path.kube.alternatives), each way walked on its own, and listed as a Branch
with its probability and its own verdict. The Path's hops and verdict are the first branch's;
later random choices inside a branch stay "rule-uncertain".

Then the path is said in Kubernetes' words: the Service a DNAT belongs to (``Path.service``), the
destination named as the Service (not as the endpoint one branch reached), pod and namespace on
both ends, and the findings only a fork shows (an endpoint that refuses, a pod reaching itself).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from cntrace.model import Branch, Container, Endpoint, Path, ServiceRef, Snapshot
from cntrace.netfilter import Netfilter
from cntrace.path import diagnose, kube
from cntrace.path.endpoints import Source
from cntrace.path.findings import finding
from cntrace.path.walk import Walk

Once = Callable[[dict[int, Netfilter]], tuple[Path, Walk]]
POD_LABEL = "io.kubernetes.pod.name"
POD_NS_LABEL = "io.kubernetes.pod.namespace"


def predict_forked(snap: Snapshot, src: Source, once: Once) -> Path:
    path, w = once({})
    branches: list[tuple[Branch, Walk]] = []
    first = w.choices[0] if w.choices else None
    ns = snap.ns(first[0]) if first else None
    alts = kube.alternatives(w.netfilter(ns), first[2]) if first and ns else []
    if first is not None and len(alts) >= 2:
        inode = first[0]
        for alt in alts:
            bpath, bw = once({inode: alt.nf})
            _uncertain(bw, skip=first)
            bpath = replace(bpath, findings=bw.sorted_findings())
            branches.append((_branch(bw, inode, alt, bpath), bw))
            if len(branches) == 1:
                path, w = bpath, bw  # the path shown is the first branch's
    else:
        _uncertain(w, skip=None)
    return _kubernetes(src, path, w, branches)


def _uncertain(w: Walk, skip: tuple[int, str, object] | None) -> None:
    """Random choices the walk did not fork on: said to be assumed, as any uncertain rule."""
    for inode, hook, ref in w.choices:
        ns = w.snap.ns(inode)
        if ns is not None and (inode, hook, ref) != skip:
            diagnose.rule_uncertain(w, ns, hook, ref, "a random choice")


def _branch(w: Walk, inode: int, alt: kube.Alternative, path: Path) -> Branch:
    nat = next((n for n in w.nats if n.kind == "dnat" and n.netns == inode), None)
    endpoint = f"{nat.after.dst}:{nat.after.dport}" if nat and nat.after.dport else None
    owner = None
    if nat is not None:
        owner = w.topo.owner(_holder(w, nat.after.dst))
    return Branch(
        probability=round(alt.probability, 6),
        endpoint=endpoint,
        pod=_pod_name(owner),
        verdict=path.verdict,
        hops=path.hops,
        findings=path.findings,
        rule=alt.rule,
    )


def _holder(w: Walk, ip: str) -> int | None:
    for ns in w.snap.netns:
        if any(a.address == ip for link in ns.links for a in link.addresses):
            return ns.inode
    return None


def _pod_name(c: Container | None) -> str | None:
    if c is None or c.runtime != "kubernetes":
        return None
    pod, ns = c.labels.get(POD_LABEL), c.labels.get(POD_NS_LABEL)
    return f"{ns}/{pod}" if pod and ns else c.name


def _with_pod(ep: Endpoint, c: Container | None) -> Endpoint:
    if c is None or c.runtime != "kubernetes":
        return ep
    return replace(ep, pod=c.labels.get(POD_LABEL), namespace=c.labels.get(POD_NS_LABEL))


def _kubernetes(src: Source, path: Path, w: Walk, forks: list[tuple[Branch, Walk]]) -> Path:
    service: ServiceRef | None = None
    for nat in w.nats:
        ns = w.snap.ns(nat.netns)
        if ns is None:
            continue
        if service is None:
            service = kube.service_of(w, ns, nat, endpoints=len(forks) or 1)
        kube.hostport_clash(w, ns, nat)
    end = w.request_end
    if not any(n.kind == "dnat" for n in w.nats) and end and end.netns and end.packet:
        kube.nodeport_unserved(w, end.netns, end.packet, end.hop)
    branches = tuple(b for b, _ in forks)
    if service is not None:
        _fork_findings(w, src, service, branches)
    destination = path.destination
    if service is not None:
        destination = replace(destination, kind="service", name=service.ref, runtime="kubernetes")
        if branches:  # no one namespace: every branch ends in its own
            destination = replace(destination, netns=None, netns_label=None)
    else:
        destination = _with_pod(destination, w.topo.owner(destination.netns))
    return replace(
        path,
        source=_with_pod(path.source, src.container),
        destination=destination,
        findings=w.sorted_findings(),
        service=service,
        branches=branches,
    )


def _fork_findings(w: Walk, src: Source, svc: ServiceRef, branches: tuple[Branch, ...]) -> None:
    src_pod = _pod_name(src.container)
    for i, b in enumerate(branches, 1):
        share = f"{b.probability:.0%}"
        if b.verdict.status == "refused" and b.verdict.reason == "NO_SOCKET":
            w.add(
                finding(
                    "service-endpoint-not-ready",
                    f"endpoint {b.endpoint} ({b.pod or 'unknown pod'}) of {svc.ref} accepts "
                    f"nothing on {svc.protocol}/{b.endpoint.split(':')[-1] if b.endpoint else '?'}"
                    f": about {share} of connections to the Service are refused (branch {i})",
                    evidence=[b.verdict.summary],
                    fix=f"give {b.pod or 'the pod'} a readinessProbe on that port, so kube-proxy "
                    "takes it out of the Service while it is not serving; then find out why the "
                    "server is not listening (kubectl logs)",
                )
            )
        if src_pod is not None and b.pod == src_pod:
            w.add(
                finding(
                    "service-hairpin",
                    f"branch {i} ({share}): {src_pod} reaches itself through {svc.ref}; "
                    "kube-proxy marks it for masquerade (the endpoint rule's source match), so "
                    "the reply comes back through the node"
                    + (" (it fails here)" if b.verdict.status != "delivered" else ""),
                    evidence=[h.summary for h in b.hops if h.kind == "nat"][:3],
                    fix="nothing to do when it is delivered; on a bridge the pod's port needs "
                    "hairpin mode (the bridge CNI plugin's hairpinMode: true)",
                    severity="error" if b.verdict.status != "delivered" else "info",
                )
            )
