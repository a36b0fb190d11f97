"""Bringing the k8s-node lab up and down.

`up`: namespaces and the uplink (ip -batch); kubelet's chains; kube-proxy's jump rules (iptables
mode); a private containerd; per pod a namespace, CNI ADD (loopback, then bridge|ptp + portmap)
and the sandbox and app containers; a server "on the internet"; kube-proxy's Service rules for the
endpoints the pods got. `down`: CNI DEL for every pod (so the plugins release their leases, veths
and hostPort rules), every container and containerd stopped, then the namespaces and the lab's
directories removed. The state file (/run/cntrace/k8s/<name>.json) is written before anything is
created, so `down` also cleans up after a killed `up`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from cntrace import codec
from cntrace.errors import BadInput
from cntrace.lab import build
from cntrace.lab.k8s import cni, containerd, kubeproxy
from cntrace.lab.k8s import plan as k8splan
from cntrace.lab.k8s.plan import NodePlan
from cntrace.sources import nsenter

STATE_DIR = Path(os.environ.get("CNTRACE_K8S_DIR", "/run/cntrace/k8s"))
SCHEMA = "cntrace.k8s-node/v1"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class PodState:
    """A pod of a lab node, as recorded for `lab down` and discovery."""

    namespace: str
    name: str
    container: str
    netns: str
    sandbox_id: str
    container_id: str
    ip: str = ""
    host_iface: str | None = None
    pid: int | None = None  # the app container's init
    cni_result: str = ""  # the ADD result (JSON), as libcni caches it for DEL
    host_ports: tuple[tuple[str, int, int], ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class NodeState:
    """A lab Kubernetes node: its namespace, proxy mode and pods, as recorded."""

    name: str
    variant: str
    proxy_mode: str
    node_netns: str
    upstream_netns: str
    namespaces: tuple[str, ...]
    status: str = "building"  # building | up
    node_ip: str = k8splan.NODE_IP
    containerd_pid: int | None = None
    upstream_pid: int | None = None
    pods: tuple[PodState, ...] = ()
    created_at: str = ""
    schema: str = SCHEMA
    notes: dict[str, str] = field(default_factory=dict)

    def pod(self, ref: str) -> PodState:
        for p in self.pods:
            if ref in (p.name, p.ref):
                return p
        raise BadInput(f"k8s node {self.name} has no pod {ref!r}")


def state_path(name: str) -> Path:
    return STATE_DIR / f"{name}.json"


def save(st: NodeState) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = state_path(st.name).with_suffix(".tmp")
    tmp.write_text(codec.dumps(st))
    tmp.replace(state_path(st.name))


def load(name: str) -> NodeState | None:
    try:
        text = state_path(name).read_text()
    except FileNotFoundError:
        return None
    try:
        return codec.loads(NodeState, text)
    except (codec.CodecError, json.JSONDecodeError) as exc:
        raise BadInput(f"k8s node state {state_path(name)} is damaged ({exc})") from None


def all_names() -> list[str]:
    return sorted(p.stem for p in STATE_DIR.glob("*.json")) if STATE_DIR.is_dir() else []


def service_ports(p: NodePlan, pods: tuple[PodState, ...]) -> list[kubeproxy.ServicePort]:
    """The Services' endpoints as kube-proxy would get them from EndpointSlices: every selected
    pod that has an address (readiness is not probed here: web-c counts as ready)."""
    by_name = {(x.namespace, x.name): x for x in pods}
    out = []
    for s in p.services:
        eps = [
            kubeproxy.Endpoint(by_name[(s.namespace, n)].ip, s.target_port)
            for n in s.selector
            if by_name.get((s.namespace, n)) and by_name[(s.namespace, n)].ip
        ]
        eps += [kubeproxy.Endpoint(ip, s.target_port, local=False) for ip in s.remote_endpoints]
        out.append(kubeproxy.ServicePort(s, tuple(eps)))
    return out


def proxy_config() -> kubeproxy.ProxyConfig:
    return kubeproxy.ProxyConfig(
        node_ip=k8splan.NODE_IP,
        cluster_cidr=k8splan.CLUSTER_CIDR,
        service_cidr=k8splan.SERVICE_CIDR,
        nodeport_addresses=(k8splan.NODE_IP,),
    )


def _iptables_ensure(ns: str, table: str, chain: str, args: list[str]) -> None:
    """kube-proxy's EnsureChain, then EnsureRule(Prepend): insert at the top unless there."""
    with contextlib.suppress(build.LabError):  # the chain exists already
        build.run_in(ns, ["iptables-nft", "-w", "-t", table, "-N", args[-1]])
    try:
        build.run_in(ns, ["iptables-nft", "-w", "-t", table, "-C", chain, *args])
    except build.LabError:
        build.run_in(ns, ["iptables-nft", "-w", "-t", table, "-I", chain, *args])


def load_kube_proxy(p: NodePlan, pods: tuple[PodState, ...]) -> None:
    """kube-proxy's sync: its whole ruleset for the current Services and endpoints."""
    cfg, services = proxy_config(), service_ports(p, pods)
    if p.proxy_mode == "nft":
        build.run_in(p.node_ns, ["nft", "-f", "-"], stdin=kubeproxy.nft_script(cfg, services))
    else:
        build.run_in(
            p.node_ns,
            ["iptables-nft-restore", "-w", "--noflush"],
            stdin=kubeproxy.iptables_restore(cfg, services),
        )


def up(p: NodePlan, *, progress: Progress | None = None) -> NodeState:
    """Build the node; on any failure (or Ctrl-C) remove what was made and re-raise."""
    build.require_root("the k8s-node lab")
    build.require_tools("ip", "nsenter", "iptables-nft", "iptables-nft-restore", "nft")
    if load(p.name) is not None or build.existing_namespaces(p.name):
        raise BadInput(f"lab {p.name} is already up (`cntrace lab down --name {p.name}` first)")
    say = progress or (lambda _m: None)
    st = NodeState(
        name=p.name,
        variant=p.variant,
        proxy_mode=p.proxy_mode,
        node_netns=p.node_ns,
        upstream_netns=p.upstream_ns,
        namespaces=p.namespaces,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        notes={"cni": p.variant, "kube-proxy": p.proxy_mode, "socket": p.socket},
    )
    save(st)
    try:
        say(f"creating {len(p.namespaces)} network namespaces")
        build.ip_batch("".join(f"netns add {n}\n" for n in p.namespaces))
        build.ip_batch(k8splan.script_node(p), p.node_ns)
        build.ip_batch(k8splan.script_upstream(), p.upstream_ns)
        for key, value in k8splan.NODE_SYSCTLS.items():
            build.write_sysctl(p.node_ns, key, value)
        netd = Path(p.run_dir) / "net.d"
        netd.mkdir(parents=True, exist_ok=True)
        (netd / "10-k8s.conflist").write_text(k8splan.conflist_text(p))
        say("kubelet's chains" + (" and kube-proxy's jumps" if p.proxy_mode == "iptables" else ""))
        build.run_in(p.node_ns, ["iptables-nft-restore", "-w", "--noflush"],
                     stdin=kubeproxy.kubelet_restore())  # fmt: skip
        if p.proxy_mode == "iptables":
            for table, chain, extra, comment, target in kubeproxy.JUMPS:
                args = kubeproxy.jump_args(table, chain, extra, comment, target)
                _iptables_ensure(p.node_ns, table, chain, args)
        say("starting containerd")
        st = replace(st, containerd_pid=containerd.start(p))
        save(st)
        pods = []
        for pod in p.pods:
            say(f"pod {pod.ref}: CNI ADD ({p.variant} + portmap), sandbox, {pod.container}")
            pods.append(_pod_up(p, pod))
            st = replace(st, pods=tuple(pods))
            save(st)
        st = replace(st, pods=_with_pids(p, st.pods))
        save(st)
        st = replace(st, upstream_pid=build.start_server(
            p.name, p.upstream_ns, "internet", bind="0.0.0.0", tcp=k8splan.INTERNET_PORT, udp=0
        ))  # fmt: skip
        say(f"kube-proxy's rules ({p.proxy_mode} mode)")
        load_kube_proxy(p, st.pods)
        for pod_state, spec in zip(st.pods, p.pods, strict=True):
            if spec.listens and pod_state.pid:
                _wait_listening(pod_state.pid, k8splan.APP_PORT)
        build.wait_listening(st.upstream_pid or 0, k8splan.INTERNET_PORT)
        st = replace(st, status="up")
        save(st)
        return st
    except BaseException:
        down(p.name)
        raise


def _pod_up(p: NodePlan, pod: k8splan.PodSpec) -> PodState:
    netns = p.pod_ns(pod)
    path = nsenter.netns_path(netns)
    runtime = {"portMappings": k8splan.port_mappings(pod)}
    result = cni.add(p.node_ns, k8splan.conflist(p), pod.sandbox_id, path, runtime, k8splan.CNI_BIN)
    ip, host_if = cni.pod_address(result)
    containerd.run_pod(p, pod, path)
    return PodState(
        namespace=pod.namespace,
        name=pod.name,
        container=pod.container,
        netns=netns,
        sandbox_id=pod.sandbox_id,
        container_id=pod.container_id,
        ip=ip,
        host_iface=host_if,
        cni_result=json.dumps(result),
        host_ports=pod.host_ports,
    )


def _with_pids(p: NodePlan, pods: tuple[PodState, ...]) -> tuple[PodState, ...]:
    deadline = time.monotonic() + 20
    while True:
        running = containerd.tasks(p)
        if all(x.container_id in running for x in pods) or time.monotonic() > deadline:
            return tuple(replace(x, pid=running.get(x.container_id)) for x in pods)
        time.sleep(0.1)


def _wait_listening(pid: int, port: int, timeout: float = 10.0) -> None:
    """busybox nc listens on a dual-stack IPv6 socket: look in tcp6 too."""
    deadline = time.monotonic() + timeout
    while not any(build._listening(pid, port, proto) for proto in ("tcp", "tcp6")):
        if time.monotonic() > deadline:
            raise build.LabError(f"pod process {pid} is not listening on tcp/{port}")
        time.sleep(0.05)


def plan_of(st: NodeState) -> NodePlan:
    return k8splan.plan(st.name, st.variant, st.proxy_mode)


def pods_down(st: NodeState) -> list[str]:
    """CNI DEL for every pod (reverse order), as kubelet's StopPodSandbox would; problems."""
    p = plan_of(st)
    problems = []
    for pod in reversed(st.pods):
        if not Path(nsenter.netns_path(pod.netns)).exists():
            continue
        spec = p.pod(pod.ref)
        cached = json.loads(pod.cni_result) if pod.cni_result else None
        try:
            cni.delete(p.node_ns, k8splan.conflist(p), pod.sandbox_id,
                       nsenter.netns_path(pod.netns),
                       {"portMappings": k8splan.port_mappings(spec)}, cached,
                       k8splan.CNI_BIN)  # fmt: skip
        except cni.CniError as e:
            problems.append(f"{pod.ref}: {e}")
    return problems


def down(name: str) -> list[str]:
    """Remove every object of the node ``name``; the namespaces removed."""
    build.require_root("the k8s-node lab")
    st = load(name)
    names = set(build.existing_namespaces(name))
    if st is not None:
        p = plan_of(st)
        names |= {n for n in st.namespaces if Path(nsenter.netns_path(n)).exists()}
        if Path(nsenter.netns_path(st.node_netns)).exists():
            pods_down(st)
        if build.pid_alive(st.containerd_pid):
            containerd.remove_all(p)
            _stop(st.containerd_pid)
        shutil.rmtree(p.run_dir, ignore_errors=True)
        shutil.rmtree(p.root, ignore_errors=True)
    inodes = [i for i in (build.netns_inode(n) for n in names) if i is not None]
    build.kill_all(build.pids_in(inodes), grace=2.0)
    if names:
        build.ip_batch("".join(f"netns del {n}\n" for n in sorted(names)))
    state_path(name).unlink(missing_ok=True)
    return sorted(names)


def _stop(pid: int | None) -> None:
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while build.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
