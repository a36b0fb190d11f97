"""`cntrace lab up|down|status|break|fix|faults`: the built-in Docker-like lab."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from cntrace.commands._args import integer
from cntrace.errors import BadInput, Exit


def register(sub: Any) -> None:
    p = sub.add_parser(
        "lab",
        help="the built-in Docker-like lab (namespaces only; never touches the host's own network)",
        description="A self-contained Docker-like host built in network namespaces, "
        "with classic faults to inject.",
    )
    lab_sub = p.add_subparsers(dest="lab_command", metavar="ACTION", required=True)

    def named(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--name",
            default=os.environ.get("CNTRACE_LAB", "cntrace-lab"),
            help="lab name, prefix of its namespaces (default: $CNTRACE_LAB or cntrace-lab)",
        )

    def topology(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--topology",
            default="docker",
            metavar="NAME",
            help="docker (default), router, nested, routed, macvlan (see docs/lab.md) or "
            "k8s-node (docs/kubernetes.md)",
        )

    q = lab_sub.add_parser("up", help="create the lab")
    named(q)
    topology(q)
    q.add_argument(
        "--containers",
        type=integer(0, 8000, "a number of containers"),  # lab.spec.MAX_EXTRA
        default=0,
        metavar="N",
        help="add N scaled containers (for benchmarks)",
    )
    q.add_argument(
        "--iptables",
        choices=("nft", "legacy", "nftables"),
        default="nft",
        help="back end for the host's rules (default: nft, as Docker on Debian); nftables: "
        "native nft rules (router topology)",
    )
    q.add_argument(
        "--cni",
        choices=("bridge", "ptp"),
        default="bridge",
        help="k8s-node topology: the CNI plugin that wires the pods (default: bridge)",
    )
    q.add_argument(
        "--print",
        action="store_true",
        dest="print_only",
        help="print the ip/iptables commands instead of running them",
    )
    q = lab_sub.add_parser("down", help="remove the lab (also after a killed `lab up`)")
    named(q)
    q.add_argument("--all", action="store_true", help="remove every lab on this machine")
    q = lab_sub.add_parser("status", help="the lab's objects and active faults")
    named(q)
    q.add_argument("--json", action="store_true")
    q = lab_sub.add_parser("break", help="inject a fault")
    named(q)
    q.add_argument("fault")
    q = lab_sub.add_parser("fix", help="remove a fault")
    named(q)
    q.add_argument("fault", help="fault name, or `all`")
    topology(lab_sub.add_parser("faults", help="list the faults a topology can inject"))


def run(args: argparse.Namespace) -> int:
    from cntrace.commands import lab_k8s
    from cntrace.lab import build, faults, spec, state, topo, topologies
    from cntrace.render.console import console as make_console

    console = make_console()
    action = args.lab_command
    if getattr(args, "topology", None) == lab_k8s.TOPOLOGY:
        if action == "faults":
            console.print("the k8s-node topology has no faults to inject (docs/kubernetes.md)")
            return int(Exit.OK)
        return lab_k8s.up(args, console, make_console(stderr=True))
    if action == "faults":
        for f in topologies.get(args.topology).faults.values():
            console.print(f"[bold]{f.name:<20}[/] {f.summary}  [dim]({f.breaks})[/]")
        return int(Exit.OK)

    name = spec.check_name(args.name)
    if action == "up":
        kind = topologies.get(args.topology)
        backend = kind.check_backend(args.iptables)
        err = make_console(stderr=True)
        if kind.plan is not None:
            if args.containers:
                raise BadInput("--containers applies to the default (docker) topology only")
            tplan = kind.plan(name, backend)
            if args.print_only:
                sys.stdout.write(topo.render(tplan))
                return int(Exit.OK)
            lab = build.up_plan(tplan, progress=lambda m: err.print(f"[dim]lab: {m}[/]"))
        else:
            plan = spec.plan(name, args.containers)
            if args.print_only:
                _print_plan(plan, backend)
                return int(Exit.OK)
            lab = build.up(
                plan, iptables=backend, progress=lambda m: err.print(f"[dim]lab: {m}[/]")
            )
        console.print(
            f"lab [bold]{lab.name}[/] is up: {len(lab.containers)} containers, "
            f"host namespace {lab.host_netns}"
        )
        return int(Exit.OK)
    if action == "down":
        build.require_root()
        names = build.all_labs() if args.all else [name]
        k8s_nodes = lab_k8s.names() if args.all else [n for n in names if lab_k8s.is_node(n)]
        removed_any = False
        for n in [*names, *k8s_nodes]:
            removed = lab_k8s.down(n) if n in k8s_nodes else build.down(n)
            removed_any |= bool(removed)
            if removed:
                console.print(f"lab [bold]{n}[/] is down ({len(removed)} namespaces removed)")
        if not removed_any and not args.all:
            raise BadInput(f"lab {name} is not up")
        return int(Exit.OK)

    if action == "status" and lab_k8s.is_node(name):
        return lab_k8s.status(name, args.json, console)
    loaded = state.load(name)
    if loaded is None:
        raise BadInput(f"lab {name} is not up (`cntrace lab up` first)")
    lab = loaded
    if action == "status":
        report = _status(lab)
        if args.json:
            sys.stdout.write(json.dumps(report, indent=2) + "\n")
        else:
            _print_status(console, report)
        return int(Exit.OK if report["healthy"] else Exit.FAILED)
    build.require_root()
    if action == "break":
        f = faults.fault(args.fault, lab.topology)
        faults.break_(lab, f.name)
        console.print(f"broke [bold]{f.name}[/]: {f.summary}; expect: {f.breaks}")
    elif action == "fix":
        todo = (
            list(lab.faults)
            if args.fault == "all"
            else [faults.fault(args.fault, lab.topology).name]
        )
        for fname in todo:
            lab = faults.fix(lab, fname)
            console.print(f"fixed [bold]{fname}[/]")
    return int(Exit.OK)


def _status(lab: Any) -> dict[str, Any]:
    """The state file plus live checks: every namespace present, every process alive."""
    from cntrace import codec
    from cntrace.lab import build
    from cntrace.sources import nsenter

    present = set(nsenter.named())
    missing = [n for n in lab.namespaces if n not in present]
    dead = [c.name for c in lab.containers if not build.pid_alive(c.pid)]
    if not build.pid_alive(lab.upstream_pid):
        dead.append("upstream")
    report: dict[str, Any] = {**codec.to_plain(lab), "schema": "cntrace.lab-status/v1"}
    report["missing_namespaces"] = missing
    report["dead_processes"] = dead
    report["healthy"] = lab.status == "up" and not missing and not dead
    return report


def _print_status(console: Any, r: dict[str, Any]) -> None:
    from rich.table import Table

    health = "[green]healthy[/]" if r["healthy"] else "[red]unhealthy[/]"
    console.print(
        f"lab [bold]{r['name']}[/] (topology {r['topology']}, {r['status']}, {health}), "
        f"created {r['created_at']}"
    )
    console.print(
        f"  host namespace {r['host_netns']}: uplink eth0 {r['uplink_ip']}, "
        f"upstream {r['upstream_netns']} serves {r['internet_ip']} (tcp/80, udp/9000)"
    )
    for n in r["networks"]:
        console.print(f"  network [bold]{n['name']}[/]: bridge {n['bridge']} {n['subnet']}")
    table = Table(box=None, pad_edge=False)
    for col in ("container", "network", "ip", "host veth", "netns", "pid", "published", "listens"):
        table.add_column(col)
    shown = [c for c in r["containers"] if c["full_server"]]
    for c in shown:
        ports = ", ".join(
            f"{p['host_port']}->{p['container_port']}/{p['proto']}" for p in c["published"]
        )
        listens = f"{c['bind']}:{c['tcp_port'] or '-'}/tcp"
        alive = "" if c["name"] not in r["dead_processes"] else " [red](dead)[/]"
        table.add_row(
            c["name"],
            c["network"],
            c["ip"],
            c["host_veth"],
            c["netns"],
            f"{c['pid']}{alive}",
            ports or "-",
            listens,
        )
    console.print(table)
    extra = len(r["containers"]) - len(shown)
    if extra:
        console.print(f"  + {extra} scaled containers (busybox httpd on tcp/80)")
    faults = ", ".join(r["faults"]) or "none"
    console.print(f"  active faults: {faults}")
    for key in ("missing_namespaces", "dead_processes"):
        if r[key]:
            console.print(f"  [red]{key.replace('_', ' ')}: {', '.join(r[key])}[/]")


def _print_plan(plan: Any, iptables: str) -> None:
    from cntrace.lab import spec

    out = sys.stdout.write
    out(f"# lab {plan.name}: what `cntrace lab up` runs\n")
    out("ip -batch - <<EOF\n" + spec.script_namespaces(plan) + "EOF\n")
    out(f"ip -n {plan.host_ns} -batch - <<EOF\n" + spec.script_host(plan) + "EOF\n")
    out(f"ip -n {plan.upstream_ns} -batch - <<EOF\n" + spec.script_upstream() + "EOF\n")
    for c in plan.containers:
        out(f"ip -n {plan.ns(c.name)} -batch - <<EOF\n" + spec.script_container(plan, c) + "EOF\n")
    for k, v in spec.HOST_SYSCTLS.items():
        out(f"ip netns exec {plan.host_ns} sysctl -w {k}={v}\n")
    out(f"ip netns exec {plan.host_ns} iptables-{iptables}-restore <<EOF\n")
    out(spec.iptables_ruleset(plan) + "EOF\n")
