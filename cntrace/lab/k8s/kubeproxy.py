"""The rules kube-proxy writes for a set of Services and their endpoints, in both netfilter modes.

kube-proxy needs an API server, so the lab cannot run it; this module writes what it would write,
shape for shape, from kube-proxy's own source (pkg/proxy/iptables/proxier.go and
pkg/proxy/nftables/proxier.go, Kubernetes 1.31/1.32; facts, not code):

- chain names: ``KUBE-SVC-``/``KUBE-SVL-``/``KUBE-EXT-``/``KUBE-FW-`` + the first 16 characters of
  base32(sha256(servicePortName + protocol)); ``KUBE-SEP-`` hashes servicePortName + protocol +
  "ip:port". nftables: ``service-``/``external-`` + 8 characters of base32(sha256(base)) + "-" +
  base, base = ``ns/name/proto/portname`` (``__ip/port`` appended for ``endpoint-`` chains);
- endpoint choice: iptables' ``statistic --mode random --probability 1/(n-i)`` ladder, the last
  endpoint unconditional; nftables' ``numgen random mod n vmap``;
- no endpoints: a REJECT in filter KUBE-SERVICES (ClusterIP) and KUBE-EXTERNAL-SERVICES (NodePort);
  nftables: ``no-endpoint-services`` / ``no-endpoint-nodeports`` elements going to reject-chain;
- ``externalTrafficPolicy: Local`` without a local endpoint: the EXT chain short-circuits pod and
  node traffic only; everything else is dropped ("has no local endpoints");
- masquerade: mark 0x4000 (KUBE-MARK-MASQ / mark-for-masquerade) for traffic from outside the
  cluster CIDR to a ClusterIP, for all external traffic with policy Cluster, and for hairpin
  (an endpoint reaching itself: ``-s <endpoint ip>``), then MASQUERADE --random-fully;
- ``--nodeport-addresses`` limits NodePorts to the listed node addresses (kube-proxy's nftables
  mode defaults to the node's primary address; the lab passes the same list to both modes).

kubelet's own chains (KUBE-IPTABLES-HINT, KUBE-KUBELET-CANARY, KUBE-FIREWALL with the localnet
rule) are written too: they are on every node, in both modes.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cntrace.lab.k8s.plan import ServiceSpec

NODEPORTS_TAIL = "kubernetes service nodeports; NOTE: this must be the last rule in this chain"


@dataclass(frozen=True)
class Endpoint:
    """A Service's backend pod as kube-proxy programs it."""

    ip: str
    port: int
    local: bool = True  # on this node

    @property
    def text(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class ServicePort:
    """One Service port and its ready endpoints (kube-proxy's ServicePort + EndpointsMap entry)."""

    spec: ServiceSpec
    endpoints: tuple[Endpoint, ...]

    @property
    def name(self) -> str:
        return self.spec.port_ref

    @property
    def local_endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.local)

    @property
    def etp_local(self) -> bool:
        return self.spec.external_policy == "Local"


@dataclass(frozen=True)
class ProxyConfig:
    """What kube-proxy is started with on a lab node: the addresses its rules name."""

    node_ip: str
    cluster_cidr: str
    service_cidr: str
    nodeport_addresses: tuple[str, ...]  # addresses (no prefix); empty: every local address
    mark: int = 0x4000


def _b32(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()


def port_proto_hash(name: str, proto: str) -> str:
    return _b32(name + proto)[:16]


def svc_chain(s: ServicePort, prefix: str = "KUBE-SVC-") -> str:
    return prefix + port_proto_hash(s.name, s.spec.proto)


def sep_chain(s: ServicePort, ep: Endpoint) -> str:
    return "KUBE-SEP-" + _b32(s.name + s.spec.proto + ep.text)[:16]


def probability(n: int) -> str:
    return f"{1.0 / n:0.10f}"


# ----------------------------------------------------------------------------- iptables


# (table, chain, extra args, comment, target) in kube-proxy's iptablesJumpChains order; each is
# ensured with "insert at the top if missing", so the last one ends up first in its chain.
JUMPS: tuple[tuple[str, str, tuple[str, ...], str, str], ...] = (
    ("filter", "INPUT", ("-m", "conntrack", "--ctstate", "NEW"),
     "kubernetes externally-visible service portals", "KUBE-EXTERNAL-SERVICES"),
    ("filter", "FORWARD", ("-m", "conntrack", "--ctstate", "NEW"),
     "kubernetes externally-visible service portals", "KUBE-EXTERNAL-SERVICES"),
    ("filter", "INPUT", (), "kubernetes health check service ports", "KUBE-NODEPORTS"),
    ("filter", "FORWARD", ("-m", "conntrack", "--ctstate", "NEW"),
     "kubernetes service portals", "KUBE-SERVICES"),
    ("filter", "OUTPUT", ("-m", "conntrack", "--ctstate", "NEW"),
     "kubernetes service portals", "KUBE-SERVICES"),
    ("filter", "FORWARD", (), "kubernetes forwarding rules", "KUBE-FORWARD"),
    ("filter", "INPUT", ("-m", "conntrack", "--ctstate", "NEW"),
     "kubernetes load balancer firewall", "KUBE-PROXY-FIREWALL"),
    ("filter", "OUTPUT", ("-m", "conntrack", "--ctstate", "NEW"),
     "kubernetes load balancer firewall", "KUBE-PROXY-FIREWALL"),
    ("filter", "FORWARD", ("-m", "conntrack", "--ctstate", "NEW"),
     "kubernetes load balancer firewall", "KUBE-PROXY-FIREWALL"),
    ("nat", "OUTPUT", (), "kubernetes service portals", "KUBE-SERVICES"),
    ("nat", "PREROUTING", (), "kubernetes service portals", "KUBE-SERVICES"),
    ("nat", "POSTROUTING", (), "kubernetes postrouting rules", "KUBE-POSTROUTING"),
)  # fmt: skip


def jump_args(
    table: str, chain: str, extra: tuple[str, ...], comment: str, target: str
) -> list[str]:
    """The iptables arguments of one jump rule (after ``-t TABLE -I/-C CHAIN``)."""
    return [*extra, "-m", "comment", "--comment", comment, "-j", target]


def kubelet_restore() -> str:
    """kubelet's chains: the iptables hint, its canaries, and the localnet firewall."""
    return (
        "\n".join(
            [
                "*mangle",
                ":KUBE-IPTABLES-HINT - [0:0]",
                ":KUBE-KUBELET-CANARY - [0:0]",
                "COMMIT",
                "*nat",
                ":KUBE-KUBELET-CANARY - [0:0]",
                "COMMIT",
                "*filter",
                ":KUBE-FIREWALL - [0:0]",
                ":KUBE-KUBELET-CANARY - [0:0]",
                "-A INPUT -j KUBE-FIREWALL",
                "-A OUTPUT -j KUBE-FIREWALL",
                "-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "
                '"block incoming localnet connections" '
                "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
                "COMMIT",
            ]
        )
        + "\n"
    )


def _q(text: str) -> str:
    return f'"{text}"'


def iptables_restore(cfg: ProxyConfig, services: list[ServicePort]) -> str:
    """kube-proxy's iptables-restore input (used with --noflush): filter then nat."""
    f_chains = [":KUBE-SERVICES - [0:0]", ":KUBE-EXTERNAL-SERVICES - [0:0]",
                ":KUBE-FORWARD - [0:0]", ":KUBE-NODEPORTS - [0:0]",
                ":KUBE-PROXY-FIREWALL - [0:0]"]  # fmt: skip
    n_chains = [":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]",
                ":KUBE-POSTROUTING - [0:0]", ":KUBE-MARK-MASQ - [0:0]"]  # fmt: skip
    mark = f"{cfg.mark:#08x}"
    f_rules: list[str] = []
    n_rules = [
        f"-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {mark}",
        "-A KUBE-POSTROUTING -m comment --comment "
        f"{_q('kubernetes service traffic requiring SNAT')} -j MASQUERADE --random-fully",
        f"-A KUBE-MARK-MASQ -j MARK --or-mark {mark}",
    ]
    for s in sorted(services, key=lambda s: s.name):
        _iptables_service(cfg, s, f_rules, n_chains, n_rules)
    if cfg.nodeport_addresses:
        n_rules += [
            f"-A KUBE-SERVICES -m comment --comment {_q(NODEPORTS_TAIL)} -d {ip} -j KUBE-NODEPORTS"
            for ip in cfg.nodeport_addresses
        ]
    else:
        n_rules.append(
            f"-A KUBE-SERVICES -m comment --comment {_q(NODEPORTS_TAIL)} -m addrtype --dst-type "
            "LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS"
        )
    f_rules += [
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        f"-A KUBE-FORWARD -m comment --comment {_q('kubernetes forwarding rules')} "
        f"-m mark --mark {mark}/{mark} -j ACCEPT",
        f"-A KUBE-FORWARD -m comment --comment {_q('kubernetes forwarding conntrack rule')} "
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    out = ["*filter", *f_chains, *f_rules, "COMMIT", "*nat", *n_chains, *n_rules, "COMMIT"]
    return "\n".join(out) + "\n"


def _iptables_service(
    cfg: ProxyConfig, s: ServicePort, f_rules: list[str], n_chains: list[str], n_rules: list[str]
) -> None:
    spec, proto, name = s.spec, s.spec.proto, s.name
    has = bool(s.endpoints)
    has_external = has and (not s.etp_local or bool(s.local_endpoints))
    svc, ext = svc_chain(s), svc_chain(s, "KUBE-EXT-")
    portal = f"-m {proto} -p {proto} -d {spec.cluster_ip} --dport {spec.port}"
    if not has:
        target, comment = "REJECT", _q(f"{name} has no endpoints")
    else:
        target, comment = "DROP", _q(f"{name} has no local endpoints")
    if has:
        n_rules.append(
            f"-A KUBE-SERVICES -m comment --comment {_q(name + ' cluster IP')} {portal} -j {svc}"
        )
    else:
        f_rules.append(f"-A KUBE-SERVICES -m comment --comment {comment} {portal} -j {target}")
    if spec.node_port:
        if has:
            n_rules.append(
                f"-A KUBE-NODEPORTS -m comment --comment {name} -m {proto} -p {proto} "
                f"--dport {spec.node_port} -j {ext}"
            )
        if not has_external:
            f_rules.append(
                f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {comment} -m addrtype "
                f"--dst-type LOCAL -m {proto} -p {proto} --dport {spec.node_port} -j {target}"
            )
    if not has:
        return
    n_rules.append(
        f"-A {svc} -m comment --comment {_q(name + ' cluster IP')} {portal} "
        f"! -s {cfg.cluster_cidr} -j KUBE-MARK-MASQ"
    )
    if spec.node_port:
        n_chains.append(f":{ext} - [0:0]")
        if not s.etp_local:
            n_rules.append(
                f"-A {ext} -m comment --comment "
                f"{_q(f'masquerade traffic for {name} external destinations')} -j KUBE-MARK-MASQ"
            )
        else:
            n_rules += [
                f"-A {ext} -m comment --comment "
                f"{_q(f'pod traffic for {name} external destinations')} "
                f"-s {cfg.cluster_cidr} -j {svc}",
                f"-A {ext} -m comment --comment "
                f"{_q(f'masquerade LOCAL traffic for {name} external destinations')} "
                "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
                f"-A {ext} -m comment --comment "
                f"{_q(f'route LOCAL traffic for {name} external destinations')} "
                f"-m addrtype --src-type LOCAL -j {svc}",
            ]
        if has_external:
            policy = svc if not s.etp_local else svc_chain(s, "KUBE-SVL-")
            n_rules.append(f"-A {ext} -j {policy}")
    chains = [(svc, s.endpoints)]
    if s.etp_local and s.local_endpoints and spec.node_port:
        chains.append((svc_chain(s, "KUBE-SVL-"), s.local_endpoints))
    for chain, eps in chains:
        n_chains.append(f":{chain} - [0:0]")
        for i, ep in enumerate(eps):
            rule = f"-A {chain} -m comment --comment {_q(f'{name} -> {ep.text}')}"
            if i < len(eps) - 1:
                rule += f" -m statistic --mode random --probability {probability(len(eps) - i)}"
            n_rules.append(f"{rule} -j {sep_chain(s, ep)}")
    for ep in s.endpoints:
        sep = sep_chain(s, ep)
        n_chains.append(f":{sep} - [0:0]")
        n_rules += [
            f"-A {sep} -m comment --comment {name} -s {ep.ip} -j KUBE-MARK-MASQ",
            f"-A {sep} -m comment --comment {name} -m {proto} -p {proto} "
            f"-j DNAT --to-destination {ep.text}",
        ]


# ----------------------------------------------------------------------------- nftables


def _nft_base(s: ServicePort) -> str:
    spec = s.spec
    return f"{spec.namespace}/{spec.name}/{spec.proto}/{spec.port_name}"


def nft_chain(kind: str, base: str) -> str:
    return f"{kind}-{_b32(base)[:8]}-{base}"


def nft_endpoint_chain(s: ServicePort, ep: Endpoint) -> str:
    return nft_chain("endpoint", f"{_nft_base(s)}__{ep.ip}/{ep.port}")


NFT_BASE = """\
add table ip kube-proxy { comment "rules for kube-proxy" ; }
add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
add set ip kube-proxy nodeport-ips { type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }
add map ip kube-proxy firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; \
comment "destinations that are subject to LoadBalancerSourceRanges" ; }
add map ip kube-proxy no-endpoint-nodeports { type inet_proto . inet_service : verdict ; \
comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }
add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : \
verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; \
comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }
add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; \
comment "NodePort traffic" ; }
add chain ip kube-proxy cluster-ips-check
add chain ip kube-proxy filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; }
add chain ip kube-proxy filter-output-pre-dnat { type filter hook output priority -110 ; }
add chain ip kube-proxy filter-forward { type filter hook forward priority 0 ; }
add chain ip kube-proxy filter-input { type filter hook input priority 0 ; }
add chain ip kube-proxy filter-output { type filter hook output priority 0 ; }
add chain ip kube-proxy firewall-check
add chain ip kube-proxy mark-for-masquerade
add chain ip kube-proxy masquerading
add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }
add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }
add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add chain ip kube-proxy nodeport-endpoints-check
add chain ip kube-proxy reject-chain { comment "helper for @no-endpoint-services / \
@no-endpoint-nodeports" ; }
add chain ip kube-proxy services
add chain ip kube-proxy service-endpoints-check
add rule ip kube-proxy cluster-ips-check ip daddr @cluster-ips reject comment \
"Reject traffic to invalid ports of ClusterIPs"
add rule ip kube-proxy cluster-ips-check ip daddr { SERVICE_CIDR } drop comment \
"Drop traffic to unallocated ClusterIPs"
add rule ip kube-proxy filter-prerouting-pre-dnat ct state new jump firewall-check
add rule ip kube-proxy filter-forward ct state new jump service-endpoints-check
add rule ip kube-proxy filter-forward ct state new jump cluster-ips-check
add rule ip kube-proxy filter-input ct state new jump nodeport-endpoints-check
add rule ip kube-proxy filter-input ct state new jump service-endpoints-check
add rule ip kube-proxy filter-output ct state new jump service-endpoints-check
add rule ip kube-proxy filter-output-pre-dnat ct state new jump firewall-check
add rule ip kube-proxy filter-output ct state new jump cluster-ips-check
add rule ip kube-proxy firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips
add rule ip kube-proxy mark-for-masquerade mark set mark or MARK
add rule ip kube-proxy masquerading mark and MARK == 0 return
add rule ip kube-proxy masquerading mark set mark xor MARK
add rule ip kube-proxy masquerading masquerade fully-random
add rule ip kube-proxy nat-output jump services
add rule ip kube-proxy nat-postrouting jump masquerading
add rule ip kube-proxy nat-prerouting jump services
add rule ip kube-proxy nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport \
vmap @no-endpoint-nodeports
add rule ip kube-proxy reject-chain reject
add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kube-proxy services ip daddr @nodeport-ips meta l4proto . th dport \
vmap @service-nodeports
add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport \
vmap @no-endpoint-services
"""


def nft_script(cfg: ProxyConfig, services: list[ServicePort]) -> str:
    """kube-proxy's nftables transaction, as ``nft -f`` input."""
    out = [NFT_BASE.replace("SERVICE_CIDR", cfg.service_cidr).replace("MARK", f"{cfg.mark:#x}")]
    out += [f"add element ip kube-proxy nodeport-ips {{ {ip} }}" for ip in cfg.nodeport_addresses]
    for s in sorted(services, key=lambda s: s.name):
        out += _nft_service(cfg, s)
    return "\n".join(out) + "\n"


def _nft_service(cfg: ProxyConfig, s: ServicePort) -> list[str]:
    spec, proto, t = s.spec, s.spec.proto, "ip kube-proxy"
    base = _nft_base(s)
    svc, ext = nft_chain("service", base), nft_chain("external", base)
    has = bool(s.endpoints)
    has_external = has and (not s.etp_local or bool(s.local_endpoints))
    key = f"{spec.cluster_ip} . {proto} . {spec.port}"
    lines = [f"# {s.name}", f"add element {t} cluster-ips {{ {spec.cluster_ip} }}"]
    comment = f'comment "{s.name}"'
    if not has:
        lines.append(
            f"add element {t} no-endpoint-services {{ {key} {comment} : goto reject-chain }}"
        )
        if spec.node_port:
            lines.append(
                f"add element {t} no-endpoint-nodeports "
                f"{{ {proto} . {spec.node_port} {comment} : goto reject-chain }}"
            )
        return lines
    for ep in s.endpoints:  # before the vmap that names them
        chain = nft_endpoint_chain(s, ep)
        lines += [
            f"add chain {t} {chain}",
            f"add rule {t} {chain} ip saddr {ep.ip} jump mark-for-masquerade",
            f"add rule {t} {chain} meta l4proto {proto} dnat to {ep.text}",
        ]
    lines += [
        f"add chain {t} {svc}",
        f"add rule {t} {svc} ip daddr {spec.cluster_ip} ip saddr != {cfg.cluster_cidr} "
        "jump mark-for-masquerade",
        f"add rule {t} {svc} numgen random mod {len(s.endpoints)} vmap {{ "
        + " , ".join(f"{i} : goto {nft_endpoint_chain(s, ep)}" for i, ep in enumerate(s.endpoints))
        + " }",
    ]
    if spec.node_port:
        lines.append(f"add chain {t} {ext}")
        if not s.etp_local:
            lines += [
                f"add rule {t} {ext} jump mark-for-masquerade",
                f"add rule {t} {ext} goto {svc}",
            ]
        else:
            lines += [
                f"add rule {t} {ext} ip saddr {cfg.cluster_cidr} goto {svc} comment "
                '"short-circuit pod traffic"',
                f"add rule {t} {ext} fib saddr type local jump mark-for-masquerade comment "
                '"masquerade local traffic"',
                f"add rule {t} {ext} fib saddr type local goto {svc} comment "
                '"short-circuit local traffic"',
            ]
        if not has_external:
            lines.append(
                f"add element {t} no-endpoint-nodeports "
                f"{{ {proto} . {spec.node_port} {comment} : drop }}"
            )
    lines.append(f"add element {t} service-ips {{ {key} : goto {svc} }}")
    if spec.node_port:
        lines.append(
            f"add element {t} service-nodeports {{ {proto} . {spec.node_port} : goto {ext} }}"
        )
    return lines
