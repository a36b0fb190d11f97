"""`cntrace lab ... --topology k8s-node`: the Kubernetes node lab (cntrace.lab.k8s).

It is not a step-list topology like the others (cntrace.lab.topologies): it runs containerd and
the CNI plugins, so `lab up/down/status` hand it to cntrace.lab.k8s.node. ``--iptables`` picks
kube-proxy's mode: ``nft`` (the default) is kube-proxy's iptables mode through iptables-nft,
``nftables`` its nftables mode; ``--cni`` picks the bridge or ptp plugin.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cntrace.errors import BadInput, Exit

TOPOLOGY = "k8s-node"
PROXY_MODES = {"nft": "iptables", "nftables": "nft"}


def is_node(name: str) -> bool:
    from cntrace.lab.k8s import node

    return node.load(name) is not None


def up(args: argparse.Namespace, console: Any, err: Any) -> int:
    from cntrace.lab.k8s import node, plan

    mode = PROXY_MODES.get(args.iptables)
    if mode is None:
        raise BadInput(
            "topology k8s-node supports --iptables nft (kube-proxy's iptables mode) or nftables "
            "(its nftables mode)"
        )
    if args.containers:
        raise BadInput("--containers applies to the default (docker) topology only")
    p = plan.plan(args.name, getattr(args, "cni", "bridge") or "bridge", mode)
    if args.print_only:
        _print_plan(p)
        return int(Exit.OK)
    st = node.up(p, progress=lambda m: err.print(f"[dim]lab: {m}[/]"))
    console.print(
        f"lab [bold]{st.name}[/] is up: k8s node {st.node_netns} ({st.variant} CNI, kube-proxy "
        f"{st.proxy_mode} mode), {len(st.pods)} pods, containerd {p.socket}"
    )
    return int(Exit.OK)


def down(name: str) -> list[str]:
    from cntrace.lab.k8s import node

    return node.down(name)


def names() -> list[str]:
    from cntrace.lab.k8s import node

    return node.all_names()


def status(name: str, as_json: bool, console: Any) -> int:
    from cntrace import codec
    from cntrace.lab import build
    from cntrace.lab.k8s import node
    from cntrace.sources import nsenter

    st = node.load(name)
    if st is None:
        raise BadInput(f"lab {name} is not up")
    present = set(nsenter.named())
    missing = [n for n in st.namespaces if n not in present]
    dead = [p.ref for p in st.pods if not build.pid_alive(p.pid)]
    if not build.pid_alive(st.containerd_pid):
        dead.append("containerd")
    report: dict[str, Any] = {**codec.to_plain(st), "schema": "cntrace.k8s-node-status/v1"}
    for p in report["pods"]:
        p.pop("cni_result", None)
    report.update(topology=TOPOLOGY, missing_namespaces=missing, dead_processes=dead)
    report["healthy"] = st.status == "up" and not missing and not dead
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        health = "[green]healthy[/]" if report["healthy"] else "[red]unhealthy[/]"
        console.print(
            f"lab [bold]{st.name}[/] (topology k8s-node, {st.status}, {health}): node "
            f"{st.node_netns} {st.node_ip}, CNI {st.variant}, kube-proxy {st.proxy_mode} mode, "
            f"containerd pid {st.containerd_pid}"
        )
        for p in st.pods:
            ports = ", ".join(f"{h}->{c}/{proto}" for proto, h, c in p.host_ports) or "-"
            console.print(
                f"  pod [bold]{p.ref}[/] {p.ip} via {p.host_iface}, hostPorts {ports}, "
                f"netns {p.netns}"
            )
        for key in ("missing_namespaces", "dead_processes"):
            if report[key]:
                console.print(f"  [red]{key.replace('_', ' ')}: {', '.join(report[key])}[/]")
    return int(Exit.OK if report["healthy"] else Exit.FAILED)


def _print_plan(p: Any) -> None:
    from cntrace.lab.k8s import containerd, kubeproxy, node
    from cntrace.lab.k8s import plan as k8splan

    out = sys.stdout.write
    out(f"# k8s-node lab {p.name}: what `cntrace lab up --topology k8s-node` does\n")
    out(f"ip -n {p.node_ns} -batch - <<EOF\n{k8splan.script_node(p)}EOF\n")
    out(f"# containerd --config {containerd.config_path(p)}:\n{containerd.config_text(p)}")
    out(f"# CNI network config list (ADD per pod, DEL on down):\n{k8splan.conflist_text(p)}")
    for pod in p.pods:
        out(f"# pod {pod.ref}: netns {p.pod_ns(pod)}, sandbox {pod.sandbox_id[:12]}\n")
    cfg = node.proxy_config()
    pods = tuple(
        node.PodState(x.namespace, x.name, x.container, "", "", "", ip=f"<ip of {x.ref}>")
        for x in p.pods
    )
    services = node.service_ports(p, pods)
    if p.proxy_mode == "nft":
        out("# kube-proxy (nftables mode): nft -f -\n" + kubeproxy.nft_script(cfg, services))
    else:
        out("# kube-proxy (iptables mode): iptables-nft-restore --noflush\n")
        out(kubeproxy.iptables_restore(cfg, services))
