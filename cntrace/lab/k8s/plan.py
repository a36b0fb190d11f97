"""The k8s-node lab's blueprint: pods, Services, addresses and CNI network configs. Pure data.

    upstream (192.0.2.1, 203.0.113.10)             "outside the cluster": TEST-NET addresses only
        | eth0 <-> eth0 (192.0.2.10, 192.0.2.11)    the node's uplink (.10 is the node IP)
      node  containerd, CNI's bridge cni0 10.244.0.1/24 (or ptp routes), kube-proxy's rules
        |-- default/web-a, default/web-b            endpoints of default/web (ClusterIP + NodePort)
        |-- default/web-c                           runs but does not listen: a not-ready endpoint
        |-- default/hp, default/hp-clash            both ask for hostPort 8088 (portmap)
        `-- tools/client                            a shell to start connections from

Every namespace is named ``<lab>.<role>``; pod namespaces ``<lab>.cni-<pod>`` (CRI names them
``cni-<uuid>``). Pod addresses come from host-local at `up`, in the order below.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from cntrace.errors import BadInput

DEFAULT_NAME = "cntrace-k8s"
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
VARIANTS = ("bridge", "ptp")
PROXY_MODES = ("iptables", "nft")

NODE_NAME = "k8s-node-1"
NODE_IP = "192.0.2.10"
NODE_IP_EXTRA = "192.0.2.11"  # a second node address, not in --nodeport-addresses
UPLINK_PREFIX = 24
UPSTREAM_IP = "192.0.2.1"
INTERNET_IP = "203.0.113.10"  # a server "on the internet", in the upstream namespace
INTERNET_PORT = 80
POD_SUBNET = "10.244.0.0/24"
POD_GATEWAY = "10.244.0.1"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
OTHER_NODE_IP = "192.0.2.20"  # another node (absent): its pods are 10.244.1.0/24
OTHER_NODE_PODS = "10.244.1.0/24"
MASQ_MARK = 0x4000
APP_PORT = 8080
BRIDGE = "cni0"
NETWORK_NAME = "k8s-pod-network"
CNI_BIN = "/usr/lib/cni"


@dataclass(frozen=True)
class PodSpec:
    """A pod: its sandbox, one app container, and the hostPorts it asks for."""

    namespace: str
    name: str
    container: str
    listens: bool = True  # whether the app listens on APP_PORT
    host_ports: tuple[tuple[str, int, int], ...] = ()  # (proto, hostPort, containerPort)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def sandbox_id(self) -> str:
        return _id(f"sandbox/{self.ref}")

    @property
    def container_id(self) -> str:
        return _id(f"container/{self.ref}/{self.container}")

    def command(self) -> tuple[str, ...]:
        """The app's process: a persistent busybox nc that answers with the pod's name, so a
        connection says which endpoint took it; a not-ready pod only sleeps."""
        if not self.listens:
            return ("/bin/sleep", "1000000")
        return ("/bin/nc", "-ll", "-p", str(APP_PORT), "-e", "/bin/echo", self.name)


@dataclass(frozen=True)
class ServiceSpec:
    """A Service port (kube-proxy handles each port of a Service on its own)."""

    namespace: str
    name: str
    port_name: str
    cluster_ip: str
    port: int
    target_port: int = APP_PORT
    proto: str = "tcp"
    node_port: int | None = None
    selector: tuple[str, ...] = ()  # pod names (namespace as the Service's)
    external_policy: str = "Cluster"  # Cluster | Local
    remote_endpoints: tuple[str, ...] = ()  # endpoint IPs on other nodes

    @property
    def port_ref(self) -> str:
        """kube-proxy's ServicePortName string: ``ns/name:port`` (``ns/name`` when unnamed)."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base


PODS = (
    PodSpec("default", "web-a", "web"),
    PodSpec("default", "web-b", "web"),
    PodSpec("default", "web-c", "web", listens=False),
    PodSpec("default", "hp", "web", host_ports=(("tcp", 8088, APP_PORT),)),
    PodSpec("default", "hp-clash", "web", host_ports=(("tcp", 8088, APP_PORT),)),
    PodSpec("tools", "client", "shell", listens=False),
)

SERVICES = (
    ServiceSpec("default", "web", "http", "10.96.0.20", 80, node_port=30080,
                selector=("web-a", "web-b")),
    ServiceSpec("default", "empty", "http", "10.96.0.30", 80, node_port=30030),
    ServiceSpec("default", "flaky", "http", "10.96.0.50", 80, selector=("web-a", "web-c")),
    ServiceSpec("default", "local", "http", "10.96.0.40", 80, node_port=30040,
                external_policy="Local", remote_endpoints=("10.244.1.9",)),
)  # fmt: skip


@dataclass(frozen=True)
class NodePlan:
    """Everything `up` creates, from a name, a CNI variant and a kube-proxy mode."""

    name: str
    variant: str = "bridge"
    proxy_mode: str = "iptables"
    pods: tuple[PodSpec, ...] = PODS
    services: tuple[ServiceSpec, ...] = SERVICES

    def ns(self, role: str) -> str:
        return f"{self.name}.{role}"

    @property
    def node_ns(self) -> str:
        return self.ns("node")

    @property
    def upstream_ns(self) -> str:
        return self.ns("up")

    def pod_ns(self, pod: PodSpec) -> str:
        return self.ns(f"cni-{pod.name}")

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.node_ns, self.upstream_ns, *(self.pod_ns(p) for p in self.pods))

    @property
    def root(self) -> str:
        """containerd's persistent root (images, snapshots, metadata)."""
        return f"/var/lib/cntrace-k8s/{self.name}"

    @property
    def run_dir(self) -> str:
        """containerd's state, its socket, the CNI configs and host-local's leases."""
        return f"/run/cntrace-k8s/{self.name}"

    @property
    def socket(self) -> str:
        return f"{self.run_dir}/containerd/containerd.sock"

    def pod(self, name: str) -> PodSpec:
        for p in self.pods:
            if name in (p.name, p.ref):
                return p
        raise BadInput(f"the k8s node has no pod {name!r}")


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise BadInput(
            f"bad lab name {name!r}: use 1-16 lower-case letters, digits and dashes, "
            "starting with a letter"
        )
    return name


def plan(
    name: str = DEFAULT_NAME, variant: str = "bridge", proxy_mode: str = "iptables"
) -> NodePlan:
    check_name(name)
    if variant not in VARIANTS:
        raise BadInput(f"unknown CNI variant {variant!r} (one of {', '.join(VARIANTS)})")
    if proxy_mode not in PROXY_MODES:
        raise BadInput(f"unknown kube-proxy mode {proxy_mode!r} (one of {', '.join(PROXY_MODES)})")
    return NodePlan(name, variant, proxy_mode)


def _id(seed: str) -> str:
    """A stable 64-hex id, the shape of containerd's."""
    return hashlib.sha256(seed.encode()).hexdigest()


# ----------------------------------------------------------------------------- CNI configs


def conflist(p: NodePlan) -> dict[str, Any]:
    """The network configuration list a CRI runtime reads from /etc/cni/net.d.

    bridge: cni0 as the pods' gateway (what the reference bridge plugin and e.g. flannel's
    delegate make); ptp: one veth per pod routed from the node (kind's kindnet uses ptp). Both
    chain portmap for hostPorts. host-local keeps its leases in the lab's own directory.
    """
    ipam = {
        "type": "host-local",
        "ranges": [[{"subnet": POD_SUBNET, "gateway": POD_GATEWAY}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": f"{p.run_dir}/ipam",
    }
    main: dict[str, Any]
    if p.variant == "bridge":
        main = {
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": True,
            "ipMasq": True,
            "hairpinMode": True,
            "ipam": ipam,
        }
    else:
        main = {"type": "ptp", "ipMasq": True, "ipam": ipam}
    portmap = {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
    return {"cniVersion": "1.0.0", "name": NETWORK_NAME, "plugins": [main, portmap]}


def conflist_text(p: NodePlan) -> str:
    return json.dumps(conflist(p), indent=2) + "\n"


def port_mappings(pod: PodSpec) -> list[dict[str, Any]]:
    """runtimeConfig.portMappings, as kubelet's hostPorts reach the portmap plugin."""
    return [
        {"hostPort": hp, "containerPort": cp, "protocol": proto, "hostIP": ""}
        for proto, hp, cp in pod.host_ports
    ]


# ----------------------------------------------------------------------------- addresses


def script_node(p: NodePlan) -> str:
    """`ip -n <node> -batch`: loopback, the uplink to upstream, the routes to the outside and to
    the (absent) other node's pods."""
    return (
        "link set lo up\n"
        f"link add eth0 type veth peer name eth0 netns {p.upstream_ns}\n"
        f"addr add {NODE_IP}/{UPLINK_PREFIX} dev eth0\n"
        f"addr add {NODE_IP_EXTRA}/{UPLINK_PREFIX} dev eth0\n"
        "link set eth0 up\n"
        f"route add default via {UPSTREAM_IP} dev eth0\n"
        f"route add {OTHER_NODE_PODS} via {OTHER_NODE_IP} dev eth0\n"
    )


def script_upstream() -> str:
    return (
        "link set lo up\n"
        f"addr add {UPSTREAM_IP}/{UPLINK_PREFIX} dev eth0\n"
        f"addr add {INTERNET_IP}/24 dev eth0\n"
        "link set eth0 up\n"
    )


NODE_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",  # kubelet requires it (br_netfilter)
}
