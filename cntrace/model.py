"""The data cntrace reasons about: a Snapshot of a host's network state and the Path it predicts.

Everything here is a frozen dataclass of plain values (str, int, bool, tuples, dicts of str), so a
Snapshot can be written to JSON, carried in a bug report and replayed on another machine. Nothing in
this module reads the system or imports any other part of cntrace but the records it is
made of (cntrace.records: links, routes, neighbours, sockets, re-exported here).

Namespaces are identified by their nsfs inode (``Netns.inode``): it is what the kernel, /proc and
every tracer agree on, whereas names are optional and paths vary by runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cntrace.records import (  # the records a Netns holds, re-exported (__all__)
    DEFAULT_POLICY_RULES,
    Address,
    BridgeInfo,
    BridgePort,
    FdbEntry,
    Link,
    Neighbor,
    PolicyRule,
    Route,
    Socket,
    Vxlan,
)

SNAPSHOT_SCHEMA = "cntrace.snapshot/v1"
PATH_SCHEMA = "cntrace.path/v2"  # v2: a policy is a RuleRef (policy, position null)
DISCOVERY_SCHEMA = "cntrace.discovery/v1"
REPORT_SCHEMA = "cntrace.report/v1"  # a bug report: a path with the snapshot it came from

__all__ = [  # with the records' names: model is where every module imports them from
    "DEFAULT_POLICY_RULES",
    "DISCOVERY_SCHEMA",
    "PATH_SCHEMA",
    "REPORT_SCHEMA",
    "SNAPSHOT_SCHEMA",
    "Address",
    "Branch",
    "BridgeInfo",
    "BridgePort",
    "Container",
    "ContainerNetwork",
    "Endpoint",
    "FdbEntry",
    "Finding",
    "Hop",
    "Link",
    "Neighbor",
    "Netns",
    "Packet",
    "Path",
    "PolicyRule",
    "PortMapping",
    "Resolver",
    "Route",
    "RuleRef",
    "Ruleset",
    "ServiceRef",
    "Snapshot",
    "Socket",
    "Verdict",
    "Vxlan",
]

# --------------------------------------------------------------------------- netfilter


@dataclass(frozen=True, slots=True)
class Ruleset:
    """A namespace's netfilter rules as the tools print them, unparsed.

    Raw text is kept so a bug report holds exactly what the host said; the netfilter package parses
    it (purely) when needed. ``iptables_nft``/``iptables_legacy`` hold ``iptables-save`` output
    per back end, ``ip6tables_*`` the IPv6 equivalent, ``nft_json`` ``nft -j list ruleset``,
    ``ipsets`` ``ipset save``.
    """

    iptables_legacy: str | None = None
    ip6tables_legacy: str | None = None
    iptables_nft: str | None = None
    ip6tables_nft: str | None = None
    nft_json: str | None = None
    errors: tuple[str, ...] = ()
    ipsets: str | None = None  # `ipset save` output, when ipset is in use (set match contents)
    # State the stateful matches read, as the kernel prints it, only when a rule uses them:
    # ("xt_recent/NAME", its /proc text), ("nf_conntrack", /proc/net/nf_conntrack),
    # ("jiffies", "NOW HZ"). Added to cntrace.snapshot/v1 with an empty default.
    kernel_state: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not any(
            (
                self.iptables_legacy,
                self.ip6tables_legacy,
                self.iptables_nft,
                self.ip6tables_nft,
                self.nft_json,
            )
        )


# --------------------------------------------------------------------------- namespaces


@dataclass(frozen=True, slots=True)
class Netns:
    """One network namespace and everything the kernel holds in it that decides a packet's fate.

    ``sysctls`` maps a dotted sysctl name (``net.ipv4.ip_forward``,
    ``net.ipv4.conf.eth0.rp_filter``, ``net.bridge.bridge-nf-call-iptables``,
    ``net.netfilter.nf_conntrack_count``) to its value as text.
    """

    inode: int
    name: str | None = None  # the `ip netns` name, when it has one
    paths: tuple[str, ...] = ()  # bind mounts and /proc/PID/ns/net paths that reach it
    is_root: bool = False  # the namespace of PID 1
    links: tuple[Link, ...] = ()
    # Without the entries the kernel derives from addresses (local table, IPv6 link-local):
    # an address of the namespace is local whether or not its route is listed.
    routes: tuple[Route, ...] = ()
    rules: tuple[PolicyRule, ...] = ()  # empty: DEFAULT_POLICY_RULES
    neighbors: tuple[Neighbor, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()
    sockets: tuple[Socket, ...] = ()
    sysctls: dict[str, str] = field(default_factory=dict)
    ruleset: Ruleset = field(default_factory=Ruleset)
    pids: tuple[int, ...] = ()  # a few processes living in it (not exhaustive)
    error: str | None = None  # why it could not be read fully (vanished, permission)

    def link(self, name_or_index: str | int) -> Link | None:
        for link in self.links:
            if name_or_index in (link.name, link.ifindex):
                return link
        return None

    def sysctl(self, name: str, default: str | None = None) -> str | None:
        return self.sysctls.get(name, default)

    @property
    def label(self) -> str:
        """How to name this namespace to a person."""
        if self.is_root:
            return "host"
        return self.name or f"netns:{self.inode}"


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True, slots=True)
class PortMapping:
    """A published port: host_ip:host_port on the host forwards to container_port."""

    proto: str
    host_port: int
    container_port: int
    host_ip: str = "0.0.0.0"


@dataclass(frozen=True, slots=True)
class ContainerNetwork:
    """A container's attachment to one runtime network, as the runtime reports it."""

    name: str
    driver: str = "bridge"  # bridge | macvlan | overlay | host | null | ...
    bridge: str | None = None  # the host bridge's name, when the runtime says
    ip: str | None = None
    prefixlen: int | None = None
    ipv6: str | None = None
    gateway: str | None = None
    mac: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Resolver:
    """What name resolution inside the container will use (resolv.conf and /etc/hosts)."""

    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    hosts: dict[str, str] = field(default_factory=dict)  # name -> address


@dataclass(frozen=True, slots=True)
class Container:
    """A workload that owns (or shares) a network namespace.

    ``runtime`` is one of docker | podman | containerd | kubernetes | lab | netns | pid.
    ``network_mode`` is bridge | host | none | container:<name> | macvlan | overlay | unknown.
    ``state`` is running, or gone when it exited while discovery ran; a container listed in
    ``Snapshot.stopped`` has its runtime's state (exited, created, paused, dead).
    """

    id: str
    name: str
    runtime: str
    pid: int | None = None
    netns: int | None = None  # namespace inode
    netns_path: str | None = None
    network_mode: str = "bridge"
    networks: tuple[ContainerNetwork, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    resolver: Resolver | None = None
    labels: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    state: str = "running"
    host_netns: int | None = None  # the namespace its runtime treats as "the host"
    exit_code: int | None = None  # a stopped container's (Snapshot.stopped), as its runtime says


@dataclass(frozen=True, slots=True)
class RuntimeNetwork:
    """What a runtime says it configured for one network (`docker network inspect`, `podman
    network ls`): the intent behind the rules, so a finding names the cause a user recognises."""

    runtime: str  # docker | podman
    name: str
    driver: str = "bridge"
    bridge: str | None = None  # the host bridge's name
    subnets: tuple[str, ...] = ()
    internal: bool = False  # --internal: no way in or out but its own subnet
    icc: bool = True  # com.docker.network.bridge.enable_icc
    masquerade: bool = True  # com.docker.network.bridge.enable_ip_masquerade
    host_binding_ipv4: str | None = None  # com.docker.network.bridge.host_binding_ipv4
    gateway_mode: str | None = None  # com.docker.network.bridge.gateway_mode_ipv4 (Docker 27+)
    backend: str | None = None  # Podman: netavark | cni
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PortProxy:
    """A userland proxy relaying a host port to a container (docker-proxy's command line)."""

    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    pid: int | None = None


# --------------------------------------------------------------------------- the snapshot


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything cntrace knows about one host at one moment."""

    netns: tuple[Netns, ...]
    containers: tuple[Container, ...] = ()
    schema: str = SNAPSHOT_SCHEMA
    taken_at: str = ""
    hostname: str = ""
    kernel: str = ""
    tool_version: str = ""
    warnings: tuple[str, ...] = ()
    drop_reasons: dict[str, str] = field(default_factory=dict)  # kernel's reason id -> name
    # A snapshot stitched from per-node files (cntrace.sources.stitch): the nodes' names. Their
    # underlay links are joined by address, as the wire between the machines would.
    nodes: tuple[str, ...] = ()
    # What the runtimes say they configured (cntrace.path.intent reads it): their networks'
    # options, the userland proxies running, and containers that exist but do not run.
    runtime_networks: tuple[RuntimeNetwork, ...] = ()
    port_proxies: tuple[PortProxy, ...] = ()
    stopped: tuple[Container, ...] = ()

    _index: dict[int, Netns] = field(default_factory=dict, init=False, repr=False, compare=False)

    def ns(self, inode: int | None) -> Netns | None:
        """The namespace with this inode (indexed on first use; Snapshots never change)."""
        if inode is None:
            return None
        if not self._index and self.netns:
            self._index.update((n.inode, n) for n in self.netns)
        return self._index.get(inode)

    @property
    def root(self) -> Netns | None:
        for ns in self.netns:
            if ns.is_root:
                return ns
        return None


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True, slots=True)
class Packet:
    """A packet's addresses as seen at one point of its way (NAT rewrites them)."""

    proto: str  # tcp | udp | icmp
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    family: int = 4
    icmp_type: int | None = None
    mark: int = 0

    def rewritten(self, **changes: object) -> Packet:
        return replace(self, **changes)  # type: ignore[arg-type]

    def reply(self) -> Packet:
        """The packet the destination would send back."""
        icmp = 0 if self.proto == "icmp" and self.icmp_type == 8 else self.icmp_type
        return Packet(
            self.proto, self.dst, self.src, self.dport, self.sport, self.family, icmp, self.mark
        )

    def __str__(self) -> str:
        s = f"{self.src}:{self.sport}" if self.sport is not None else self.src
        d = f"{self.dst}:{self.dport}" if self.dport is not None else self.dst
        return f"{self.proto} {s} -> {d}"


@dataclass(frozen=True, slots=True)
class RuleRef:
    """A netfilter decision named the way a person finds it again: a rule, or a base chain's
    policy (``policy`` True, no ``position``, text ``policy drop``), since a default deny is a
    decision like any other.

    ``hook`` and ``priority`` are those of the base chain the decision was reached from (for a
    rule in a user chain such as DOCKER-USER, the base chain that jumped there); None where the
    reference names a rule outside any walk (a rule listing).
    """

    backend: str  # iptables-nft | iptables-legacy | nftables
    table: str
    chain: str
    position: int | None  # 1-based within the chain (iptables -L --line-numbers); policy: None
    text: str  # the rule as the tool prints it; "policy drop" / "policy accept" for a policy
    handle: int | None = None
    family: str = "ip"
    verdict: str | None = None
    counters: tuple[int, int] | None = None  # packets, bytes
    hook: str | None = None
    priority: int | None = None
    policy: bool = False

    @property
    def where(self) -> str:
        """Back end, family, table and chain: ``nftables inet filter forward``."""
        return f"{self.backend} {self.family} {self.table} {self.chain}"

    @property
    def name(self) -> str:
        """Short: ``filter/FORWARD #3`` for a rule, ``nftables inet filter forward policy drop``
        for a policy (a policy needs its back end and family: two tables may share a name)."""
        if self.policy or self.position is None:
            return f"{self.where} {self.text}"
        return f"{self.table}/{self.chain} #{self.position}"

    def describe(self) -> str:
        """One line with the rule's text: ``filter/FORWARD #3: -A FORWARD -j DROP``; a policy is
        its name (the text is already in it)."""
        if self.policy or self.position is None:
            return self.name
        return f"{self.name}: {self.text}"


@dataclass(frozen=True, slots=True)
class Hop:
    """One step of a packet's way.

    ``kind`` vocabulary (docs/path.md): interface, veth, bridge, route, netfilter, nat, socket,
    neighbor, deliver.
    """

    index: int
    kind: str
    netns: int | None
    netns_label: str
    interface: str | None
    packet: Packet
    summary: str
    direction: str = "request"  # request | reply
    rule: RuleRef | None = None
    evidence: tuple[str, ...] = ()
    ok: bool = True
    tap: str | None = None  # ingress | egress: where a tc hook on `interface` sees this hop
    # Live tracing fills these; all None in a prediction.
    observed: bool | None = None  # seen (True), watched but not seen (False)
    t_us: int | None = None  # microseconds since the probe was sent
    observed_packet: Packet | None = None  # the packet as seen there (NAT shows here)
    reason: str | None = None  # the kernel's drop reason, at the dropping hop
    location: str | None = None  # the dropping kernel function
    watched: bool | None = None  # False: this hop could not be watched (not the same as unseen)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What the user asked for and what it resolved to."""

    asked: str
    kind: str  # container | host | ip | hostname | published-port
    name: str | None = None
    runtime: str | None = None
    ip: str | None = None
    port: int | None = None
    protocol: str | None = None
    netns: int | None = None
    netns_label: str | None = None
    pod: str | None = (
        None  # Kubernetes: the pod's name, when the endpoint is one (or its container)
    )
    namespace: str | None = None  # Kubernetes: the pod's namespace


@dataclass(frozen=True, slots=True)
class Verdict:
    """How the packet's way ends."""

    status: str  # delivered | dropped | refused | no-route | unreachable | timeout | unknown
    at_hop: int | None
    summary: str
    reason: str | None = None
    rule: RuleRef | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """A cause in plain words, with evidence and fix; ``code`` never changes once released."""

    code: str
    severity: str  # error | warning | info
    summary: str
    evidence: tuple[str, ...] = ()
    fix: str = ""
    hop: int | None = None


@dataclass(frozen=True, slots=True)
class Path:
    """A predicted (or observed) packet path with its verdict and findings."""

    source: Endpoint
    destination: Endpoint
    hops: tuple[Hop, ...]
    verdict: Verdict
    findings: tuple[Finding, ...] = ()
    mode: str = "predicted"  # predicted | live
    schema: str = PATH_SCHEMA
    stats: dict[str, int] = field(default_factory=dict)  # live: events, lost, ...
    notes: tuple[str, ...] = ()
    service: ServiceRef | None = None  # Kubernetes: the Service the destination is
    branches: tuple[Branch, ...] = ()  # a random choice on the way (a Service's endpoints)


@dataclass(frozen=True, slots=True)
class ServiceRef:
    """A Kubernetes Service port as kube-proxy's rules name it (``namespace/name:port``)."""

    namespace: str
    name: str
    port_name: str
    kind: str  # ClusterIP | NodePort | ExternalIP
    address: str  # the address the packet was sent to
    port: int | None
    protocol: str
    proxy: str  # iptables | nftables: kube-proxy's mode, from the rules' shape
    endpoints: int = 0

    @property
    def ref(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base


@dataclass(frozen=True, slots=True)
class Branch:
    """One way a random choice can go (a Service endpoint), with its own walk and verdict.

    ``hops`` is the whole path of this branch; the Path's own hops are its first branch's.
    ``chosen`` is set by a live trace: the branch the kernel took.
    """

    probability: float
    endpoint: str | None  # ip:port after the DNAT
    pod: str | None  # namespace/pod owning the endpoint, when known
    verdict: Verdict
    hops: tuple[Hop, ...] = ()
    findings: tuple[Finding, ...] = ()
    rule: RuleRef | None = None  # the rule whose random match selects this branch
    chosen: bool | None = None
