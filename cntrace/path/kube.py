"""Kubernetes on the path: kube-proxy's and portmap's rules recognised, and what they mean.

kube-proxy picks a Service endpoint at random (iptables: a ``statistic --mode random`` ladder in
the KUBE-SVC chain; nftables: ``numgen random mod N vmap``). A prediction cannot know which, so
the walk is *forked*: ``alternatives`` returns one ruleset per endpoint with the random choice
made, each with its probability, and the predictor walks every one (cntrace.path.predict).

The rest recognises kube-proxy's shapes to say things in Kubernetes' words: which Service a DNAT
belongs to (``service_of``), a REJECT for a Service without endpoints or a DROP for
``externalTrafficPolicy: Local`` without a local endpoint (``explain_drop``), a NodePort sent to
an address kube-proxy does not serve (``nodeport_unserved``), two pods claiming one hostPort
(``hostport_clash``). Names come from the rules themselves: iptables comments
(``"ns/svc:port cluster IP"``), nftables chain names (``service-HASH-ns/svc/proto/port``) and set
element comments, so a real node's rules read the same as the lab's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache

from cntrace import netfilter
from cntrace.model import Netns, Packet, RuleRef, Ruleset, ServiceRef
from cntrace.netfilter.model import Chain, Compiled, Rule, RuleForm, Table
from cntrace.netfilter.steps import Field, Match, Step, VerdictMap
from cntrace.path import routing
from cntrace.path.findings import finding
from cntrace.path.walk import End, Nat, Walk

RANDOM_KEYS = ("statistic.random", "numgen.random")


@dataclass(frozen=True)
class Alternative:
    """The ruleset of one namespace with a random choice made one way."""

    nf: netfilter.Netfilter
    probability: float
    rule: RuleRef


def find_rule(nf: netfilter.Netfilter, ref: RuleRef) -> Rule | None:
    for t in nf.tables:
        if (t.backend, t.family, t.name) != (ref.backend, ref.family, ref.table):
            continue
        chain = t.chains.get(ref.chain)
        if chain is not None and ref.position is not None and 0 < ref.position <= len(chain.rules):
            return chain.rules[ref.position - 1]
    return None


def _stat(rule: Rule) -> Match | None:
    for s in rule.steps:
        if isinstance(s, Match) and len(s.fields) == 1 and s.fields[0].key == "statistic.random":
            p = float(s.fields[0].arg or "0")
            if 0.0 < p < 1.0 and s.op == "==":
                return s
    return None


def _numgen(rule: Rule) -> VerdictMap | None:
    for s in rule.steps:
        if isinstance(s, VerdictMap) and s.map_name is None and len(s.fields) == 1:
            f = s.fields[0]
            if f.key == "numgen.random" and (f.mask or 0) > 1:
                return s
    return None


def is_random(nf: netfilter.Netfilter, ref: RuleRef) -> bool:
    rule = find_rule(nf, ref)
    return rule is not None and (_stat(rule) is not None or _numgen(rule) is not None)


def _with_rules(nf: netfilter.Netfilter, ref: RuleRef, new: dict[int, Rule]) -> netfilter.Netfilter:
    """``nf`` with rules of ``ref``'s chain replaced (position -> rule); caches start afresh."""
    tables = []
    for t in nf.tables:
        if (t.backend, t.family, t.name) == (ref.backend, ref.family, ref.table):
            chain = t.chains[ref.chain]
            rules = tuple(new.get(r.position, r) for r in chain.rules)
            tables.append(replace(t, chains={**t.chains, ref.chain: replace(chain, rules=rules)}))
        else:
            tables.append(t)
    return netfilter.Netfilter(
        tables=tuple(tables),
        warnings=nf.warnings,
        ignored=nf.ignored,
        ipsets=nf.ipsets,
        kernel=nf.kernel,
    )


class _Forced(RuleForm):
    """A rule of the real ruleset with its random choice made: already compiled, same text."""

    __slots__ = ()

    def __init__(self, steps: tuple[Step, ...], comment: str | None, text: str) -> None:
        self._compiled = Compiled(steps, comment)
        self._text = text

    def _compile(self) -> Compiled:
        assert self._compiled is not None
        return self._compiled

    def _render(self) -> str:
        return self._text or ""

    def _source_text(self) -> str:
        return self._text or ""


def _rebuilt(rule: Rule, steps: tuple[Step, ...]) -> Rule:
    return replace(rule, form=_Forced(steps, rule.comment, rule.text))


def _forced_stat(rule: Rule, holds: bool) -> Rule:
    steps = tuple(
        Match((replace(s.fields[0], arg="1" if holds else "0"),), s.op, s.values, text=s.text)
        if s is _stat(rule) and isinstance(s, Match)
        else s
        for s in rule.steps
    )
    return _rebuilt(rule, steps)


def alternatives(nf: netfilter.Netfilter, ref: RuleRef) -> list[Alternative]:
    """Every way the random choice at ``ref`` can go (empty when it is not one we can fork).

    iptables: the chain's statistic ladder and the unconditional rule after it (kube-proxy's last
    endpoint); rule k is taken with p_k times the chance that every earlier one missed.
    nftables: each element of the numgen verdict map, with its share of the modulus.
    """
    rule = find_rule(nf, ref)
    if rule is None:
        return []
    vm = _numgen(rule)
    if vm is not None:
        mod = vm.fields[0].mask or 1
        out = []
        for atoms, _verdict in vm.elements:
            a = atoms[0]
            if not isinstance(a.lo, int):
                return []
            width = (a.hi - a.lo + 1) if a.hi is not None else 1
            forced = replace(vm, fields=(Field("numgen.random", mask=1, arg=str(a.lo)),))
            steps = tuple(forced if s is vm else s for s in rule.steps)
            out.append(Alternative(_with_rules(nf, ref, {rule.position: _rebuilt(rule, steps)}),
                                   width / mod, rule.ref()))  # fmt: skip
        return out
    if _stat(rule) is None:
        return []
    chain = _chain(nf, ref)
    ladder = [r for r in chain.rules if _stat(r) is not None]
    after = [r for r in chain.rules if r.position > ladder[-1].position]
    final = next((r for r in after if r.target is not None and not r.matches), None)
    out, miss = [], 1.0
    for k, r in enumerate(ladder):
        p = float((_stat(r) or Match(())).fields[0].arg or "0")
        new = {x.position: _forced_stat(x, False) for x in ladder[:k]}
        new[r.position] = _forced_stat(r, True)
        out.append(Alternative(_with_rules(nf, ref, new), miss * p, r.ref()))
        miss *= 1 - p
    if final is not None:
        new = {x.position: _forced_stat(x, False) for x in ladder}
        out.append(Alternative(_with_rules(nf, ref, new), miss, final.ref()))
    return out


def _chain(nf: netfilter.Netfilter, ref: RuleRef) -> Chain:
    for t in nf.tables:
        if (t.backend, t.family, t.name) == (ref.backend, ref.family, ref.table):
            return t.chains[ref.chain]
    raise KeyError(ref.chain)


# ----------------------------------------------------------------------------- names


def _split_port_ref(text: str) -> tuple[str, str, str] | None:
    """``ns/name:port`` (or ``ns/name``) -> (ns, name, port)."""
    head, _, port = text.partition(":")
    ns, sep, name = head.partition("/")
    if not sep or not ns or not name or " " in head:
        return None
    return ns, name, port


def _nft_chain_service(chain: str) -> tuple[str, str, str, str] | None:
    """``endpoint-HASH-ns/name/proto/port__ip/port`` or ``service-HASH-...`` -> (ns, name,
    proto, port)."""
    kind, _, rest = chain.partition("-")
    if kind not in ("endpoint", "service", "external", "local", "firewall"):
        return None
    _, _, base = rest.partition("-")
    parts = base.split("__", 1)[0].split("/")
    if len(parts) != 4:
        return None
    return parts[0], parts[1], parts[2], parts[3]


def service_of(w: Walk, ns: Netns, nat: Nat, endpoints: int = 0) -> ServiceRef | None:
    """The Service a DNAT belongs to, named by kube-proxy's rules."""
    if nat.rule is None or nat.kind != "dnat":
        return None
    nf = w.netfilter(ns)
    rule = find_rule(nf, nat.rule)
    proxy, parsed = "", None
    if nat.rule.chain.startswith("KUBE-SEP-") and rule is not None and rule.comment:
        parsed = _split_port_ref(rule.comment.strip('"'))
        proxy = "iptables"
    elif nat.rule.table == "kube-proxy":
        nft = _nft_chain_service(nat.rule.chain)
        if nft is not None:
            parsed, proxy = (nft[0], nft[1], nft[3]), "nftables"
    if parsed is None:
        return None
    before = nat.before
    kind = "NodePort" if before.dst in routing.local_addresses(ns) else "ClusterIP"
    return ServiceRef(
        namespace=parsed[0],
        name=parsed[1],
        port_name=parsed[2],
        kind=kind,
        address=before.dst,
        port=before.dport,
        protocol=before.proto,
        proxy=proxy,
        endpoints=endpoints,
    )


@lru_cache(maxsize=64)
def _element_comments(nft_json: str) -> dict[tuple[str, tuple[str, ...]], str]:
    """Comments of nft map elements (kube-proxy names a Service there): (map, key) -> comment."""
    out: dict[tuple[str, tuple[str, ...]], str] = {}
    try:
        doc = json.loads(nft_json)
    except ValueError:
        return out
    for obj in doc.get("nftables", []) if isinstance(doc, dict) else []:
        m = obj.get("map") if isinstance(obj, dict) else None
        if not isinstance(m, dict) or m.get("table") != "kube-proxy":
            continue
        for pair in m.get("elem") or []:
            elem = (
                pair[0].get("elem")
                if isinstance(pair, list) and isinstance(pair[0], dict)
                else None
            )
            if not isinstance(elem, dict) or not isinstance(elem.get("comment"), str):
                continue
            val = elem.get("val")
            key = val.get("concat") if isinstance(val, dict) else [val]
            out[(str(m.get("name")), tuple(str(x) for x in key or ()))] = elem["comment"]
    return out


def _no_endpoint_name(ruleset: Ruleset, packet: Packet, nodeport: bool) -> str | None:
    if not ruleset.nft_json:
        return None
    comments = _element_comments(ruleset.nft_json)
    if nodeport:
        return comments.get(("no-endpoint-nodeports", (packet.proto, str(packet.dport))))
    return comments.get(("no-endpoint-services", (packet.dst, packet.proto, str(packet.dport))))


# ----------------------------------------------------------------------------- findings


def explain_drop(w: Walk, ns: Netns, end: End) -> bool:
    """A kube-proxy REJECT/DROP for a Service without (local) endpoints: the finding, and True."""
    rule, packet = end.rule, end.packet
    if rule is None or packet is None:
        return False
    nf = w.netfilter(ns)
    found = find_rule(nf, rule)
    text = (found.comment or "") if found is not None else ""
    local = packet.dst in routing.local_addresses(ns)
    name: str | None = None
    no_local = False
    if text.endswith("has no endpoints"):
        name = text[: -len(" has no endpoints")]
    elif text.endswith("has no local endpoints"):
        name, no_local = text[: -len(" has no local endpoints")], True
    elif rule.table == "kube-proxy" and rule.chain in (
        "reject-chain", "nodeport-endpoints-check", "service-endpoints-check",
    ):  # fmt: skip
        name = _no_endpoint_name(ns.ruleset, packet, local) or f"the Service at {packet.dst}"
        no_local = rule.chain == "nodeport-endpoints-check" and end.status == "dropped"
    if name is None:
        return False
    where = f"{packet.dst}:{packet.dport}/{packet.proto}"
    if no_local:
        w.add(
            finding(
                "service-no-local-endpoint",
                f"{name} has externalTrafficPolicy: Local and no endpoint on this node "
                f"({w.label(ns)}): kube-proxy drops external traffic to {where}",
                evidence=[f"{rule.table}/{rule.chain} #{rule.position}: {rule.text}"],
                fix="send the traffic to a node that runs one of its pods (the load balancer's "
                "health check on healthCheckNodePort does), run a pod of it here, or set "
                "externalTrafficPolicy: Cluster (the client address is then masqueraded)",
                hop=end.hop,
            )
        )
        return True
    w.add(
        finding(
            "service-no-endpoints",
            f"{name} has no ready endpoints: kube-proxy rejects {where} "
            f"({'port unreachable: the client sees connection refused' if packet.proto == 'tcp' else 'ICMP port unreachable'})",  # noqa: E501
            evidence=[f"{rule.table}/{rule.chain} #{rule.position}: {rule.text}"],
            fix=f"kubectl get endpointslices -n {name.split('/')[0]} -l "
            f"kubernetes.io/service-name={name.split('/')[-1].split(':')[0]}: check that the "
            "Service's selector matches running pods and that they pass their readiness probe "
            "(kube-proxy rewrites this rule; deleting it does not help)",
            hop=end.hop,
        )
    )
    return True


def nodeport_unserved(w: Walk, ns: Netns, packet: Packet, hop: int | None) -> None:
    """A NodePort reached on a node address that ``--nodeport-addresses`` leaves out."""
    if packet.dport is None or packet.dst not in routing.local_addresses(ns):
        return
    nf = w.netfilter(ns)
    served: set[str] = set()
    nodeports: dict[int, str] = {}
    for t in nf.tables:
        if t.backend.startswith("iptables") and t.name == "nat":
            _iptables_nodeports(t, served, nodeports)
        elif t.backend == "nftables" and t.name == "kube-proxy":
            _nft_nodeports(t, served, nodeports)
    name = nodeports.get(packet.dport)
    if name is None or not served or packet.dst in served:
        return
    w.findings[:] = [f for f in w.findings if f.code not in ("port-not-published", "no-listener")]
    w.add(
        finding(
            "nodeport-address",
            f"{packet.dport} is the NodePort of {name}, but kube-proxy serves NodePorts only on "
            f"{', '.join(sorted(served))}, not on {packet.dst}",
            evidence=[f"NodePort addresses: {', '.join(sorted(served))}"],
            fix=f"connect to {sorted(served)[0]}:{packet.dport}, or add {packet.dst} to "
            "kube-proxy's nodePortAddresses (--nodeport-addresses)",
            hop=hop,
        )
    )


def _iptables_nodeports(t: Table, served: set[str], nodeports: dict[int, str]) -> None:
    everywhere = False
    for r in (t.chains.get("KUBE-SERVICES") or Chain("", "", "", "")).rules:
        if "KUBE-NODEPORTS" not in r.text:
            continue
        if " -d " in r.text:
            served.add(r.text.split(" -d ", 1)[1].split()[0].split("/")[0])
        else:
            everywhere = True  # addrtype LOCAL: every node address
    for r in (t.chains.get("KUBE-NODEPORTS") or Chain("", "", "", "")).rules:
        if "--dport " in r.text:
            port = r.text.split("--dport ", 1)[1].split()[0]
            if port.isdigit():
                nodeports[int(port)] = (r.comment or "a Service").strip('"')
    if everywhere:
        served.clear()


def _nft_nodeports(t: Table, served: set[str], nodeports: dict[int, str]) -> None:
    ips = t.sets.get("nodeport-ips")
    for atoms in ips.elements or () if ips is not None else ():
        lo = atoms[0].lo
        if isinstance(lo, int):
            served.add(".".join(str(lo >> s & 255) for s in (24, 16, 8, 0)))
    ports = t.sets.get("service-nodeports")
    for atoms, verdict in zip(ports.elements or (), ports.data, strict=False) if ports else ():
        if len(atoms) == 2 and isinstance(atoms[1].lo, int):
            target = getattr(verdict, "target", None) or ""
            nft = _nft_chain_service(target)
            nodeports[atoms[1].lo] = f"{nft[0]}/{nft[1]}:{nft[3]}" if nft else "a Service"


def hostport_clash(w: Walk, ns: Netns, nat: Nat) -> None:
    """Two pods whose portmap rules claim the same hostPort: the first rule takes every
    connection, the other pod gets none."""
    if nat.rule is None or not nat.rule.chain.startswith("CNI-DN-"):
        return
    port = nat.before.dport
    nf = w.netfilter(ns)
    claims: list[str] = []
    for t in nf.tables:
        if t.name != "nat" or not t.backend.startswith("iptables"):
            continue
        for name, chain in t.chains.items():
            if not name.startswith("CNI-DN-"):
                continue
            for r in chain.rules:
                if f"--dport {port} " in r.text + " " and "--to-destination" in r.text:
                    claims.append(r.text.split("--to-destination ", 1)[1].split()[0])
    if len(set(claims)) < 2:
        return
    owners = []
    for dest in claims:
        owner = w.topo.owner(_owner_inode(w, dest.split(":")[0]))
        owners.append(f"{owner.name if owner else dest} ({dest})")
    w.add(
        finding(
            "hostport-clash",
            f"hostPort {port}/{nat.before.proto} is claimed by {len(claims)} pods: "
            f"{', '.join(owners)}; portmap's first rule takes every connection",
            evidence=[f"{nat.rule.table}/{nat.rule.chain}: {nat.rule.text}"],
            fix="give each pod its own hostPort (the scheduler keeps hostPorts apart across pods "
            "it places; a clash means pods were started outside it), or use a Service",
            severity="warning",
        )
    )


def _owner_inode(w: Walk, ip: str) -> int | None:
    for n in w.snap.netns:
        if any(a.address == ip for link in n.links for a in link.addresses):
            return n.inode
    return None
