"""What the console's panels show, computed from a Snapshot or a Path without textual.

Rows come from the same discovery documents as ``cntrace ls`` and ``cntrace topo`` (so the
console and the CLI never disagree); text is rich ``Text`` styled only with bold, dim, reverse
and the 16 ANSI colours, which textual maps onto the active light or dark theme, and every
colour cue also has a mark or a word so it survives NO_COLOR.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from cntrace.model import Container, Hop, Link, Netns, Packet, Path, RuleRef, Snapshot
from cntrace.render.discovery_json import ls_doc, port_text, show_doc, topo_doc
from cntrace.render.path import SEVERITY_MARK, STATUS_STYLE
from cntrace.topology import Topology, netfilter_for

Doc = dict[str, Any]
RuleKey = tuple[str, str, str, str, int]  # backend, family, table, chain, position


def rule_key(r: RuleRef | Any) -> RuleKey:
    """Identifies a rule across RuleRef and the netfilter model's Rule."""
    return (r.backend, r.family, r.table, r.chain, r.position)


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True, slots=True)
class ContainerRow:
    """One row of the containers table."""

    key: str  # the container id: stable across refreshes
    name: str
    runtime: str
    ips: str
    host_veth: str
    bridge: str
    ports: str
    state: str

    @property
    def haystack(self) -> str:
        """What the incremental filter searches."""
        return " ".join(
            (self.name, self.runtime, self.ips, self.host_veth, self.bridge, self.ports, self.state)
        ).lower()

    def cells(self) -> tuple[str | Text, ...]:
        state: str | Text = (
            self.state if self.state == "running" else Text(self.state, style="bold red")
        )
        return (self.name, self.runtime, self.ips, self.host_veth, self.bridge, self.ports, state)


CONTAINER_COLUMNS = ("NAME", "RUNTIME", "IPS", "HOST VETH", "BRIDGE", "PORTS", "STATE")


def container_rows(snapshot: Snapshot) -> list[ContainerRow]:
    """The ``cntrace ls`` rows (containers sorted by runtime, then name)."""
    rows = []
    for r in ls_doc(snapshot)["containers"]:
        veths = ", ".join(
            v["name"] if v["netns_label"] == "host" else f"{v['name']}@{v['netns_label']}"
            for v in r["host_veths"]
        )
        ports = ", ".join(port_text_doc(p) for p in r["ports"])
        rows.append(
            ContainerRow(
                key=r["id"],
                name=r["name"],
                runtime=r["runtime"],
                ips=", ".join(r["ips"]) or "-",
                host_veth=veths or "-",
                bridge=", ".join(r["bridges"]) or "-",
                ports=ports or "-",
                state=r["state"],
            )
        )
    return rows


def port_text_doc(p: Doc) -> str:
    host = f"[{p['host_ip']}]" if ":" in p["host_ip"] else p["host_ip"]
    return f"{host}:{p['host_port']}->{p['container_port']}/{p['proto']}"


def filter_rows(rows: Iterable[ContainerRow], text: str) -> list[ContainerRow]:
    """Rows matching every word of ``text`` (case-insensitive, anywhere in the row)."""
    words = text.lower().split()
    return [r for r in rows if all(w in r.haystack for w in words)]


def container_by_id(snapshot: Snapshot, key: str) -> Container | None:
    for c in snapshot.containers:
        if c.id == key:
            return c
    return None


def path_ref(snapshot: Snapshot, c: Container) -> str:
    """How to name ``c`` to the path predictor: its name when unambiguous, else its id."""
    same = [o for o in snapshot.containers if o.name == c.name]
    return c.name if len(same) == 1 else c.id


# --------------------------------------------------------------------------- topology


@dataclass(frozen=True, slots=True)
class NodeRef:
    """What a topology tree node stands for; the details pane is computed from it."""

    kind: str  # host | uplink | bridge | port | container | hostmode | unowned | info
    netns: int | None = None
    name: str | None = None  # link name (uplink, bridge, port), container id (container)


@dataclass(slots=True)
class TreeNode:
    label: Text
    ref: NodeRef
    children: list[TreeNode] = field(default_factory=list)
    expand: bool = True


def _port_node(topo: Topology, host: Netns, port: Doc, prefix: str = "") -> TreeNode:
    label = Text(f"{prefix}{port['name']} -> ")
    peer = port.get("peer")
    who = topo.containers_in(peer["netns"]) if peer else []
    label.append(", ".join(c.name for c in who) or (peer["netns_label"] if peer else "?"), "bold")
    if port["state"] not in (None, "forwarding"):
        label.append(f" {port['state']}", "bold red")
    if not port["up"]:
        label.append(" (down)", "bold red")
    node = TreeNode(label, NodeRef("port", host.inode, port["name"]), expand=False)
    for c in who:
        c_label = Text(c.name, "bold")
        c_label.append(f" ({c.runtime})", "dim")
        cnode = TreeNode(c_label, NodeRef("container", c.netns, c.id))
        for p in c.ports:
            cnode.children.append(TreeNode(Text(f"published {port_text(p)}"), NodeRef("info")))
        node.children.append(cnode)
    node.expand = True
    return node


def topology_nodes(snapshot: Snapshot) -> list[TreeNode]:
    """The host as a tree: hosts, their uplinks, bridges, ports, containers, published ports."""
    topo = Topology(snapshot)
    doc = topo_doc(snapshot)
    out: list[TreeNode] = []
    for host in doc["hosts"]:
        inode = host["netns"]["inode"]
        ns = topo.ns(inode)
        assert ns is not None
        label = Text(host["netns"]["label"], "bold")
        fwd = host["sysctls"].get("net.ipv4.ip_forward")
        if fwd is not None:
            label.append(f"  ip_forward={fwd}", "dim" if fwd == "1" else "bold red")
        hnode = TreeNode(label, NodeRef("host", inode))
        for up in host["uplinks"]:
            ul = Text(f"uplink {up['name']} ")
            ul.append(", ".join(up["addresses"]), "dim")
            if not up["up"]:
                ul.append(" (down)", "bold red")
            hnode.children.append(TreeNode(ul, NodeRef("uplink", inode, up["name"])))
        for br in host["bridges"]:
            bl = Text("bridge ")
            bl.append(br["name"], "bold")
            bl.append(f" {', '.join(br['addresses'])}", "dim")
            if not br["up"]:
                bl.append(" (down)", "bold red")
            bnode = TreeNode(bl, NodeRef("bridge", inode, br["name"]))
            for port in br["ports"]:
                bnode.children.append(_port_node(topo, ns, port))
            if not br["ports"]:
                bnode.children.append(TreeNode(Text("no ports", "dim"), NodeRef("info")))
            hnode.children.append(bnode)
        for veth in host["veths"]:
            hnode.children.append(_port_node(topo, ns, veth, prefix="veth "))
        for c in snapshot.containers:
            if c.netns == inode and c.network_mode == "host" and c.runtime != "netns":
                hl = Text(c.name, "bold")
                hl.append(" (host network)", "dim")
                hnode.children.append(TreeNode(hl, NodeRef("container", inode, c.id)))
        out.append(hnode)
    if doc["unowned"]:
        group = TreeNode(Text("namespaces no runtime owns", "dim"), NodeRef("info"), expand=False)
        for u in doc["unowned"]:
            links = ", ".join(ln for ln in u["links"] if ln != "lo") or "only lo"
            group.children.append(
                TreeNode(Text(f"{u['label']}: {links}"), NodeRef("unowned", u["inode"]))
            )
        out.append(group)
    return out


# --------------------------------------------------------------------------- details


def _heading(title: str) -> Text:
    return Text(f"\n{title}", style="bold underline")


LIST_MAX = 40  # lines of one list in the details pane: a host with 1,000 veths lists 40


def _capped(lines: list[Text], what: str) -> list[Text]:
    """At most LIST_MAX lines, then how many were left out (the tree has them all)."""
    if len(lines) <= LIST_MAX:
        return lines
    more = Text(f"  … and {len(lines) - LIST_MAX} more {what}", "dim")
    return [*lines[:LIST_MAX], more]


def _counters(r: RuleRef) -> str:
    if r.counters is None:
        return "[no counters]"
    pkts, nbytes = r.counters
    return f"[{pkts} pkts, {nbytes} B]"


def rule_line(r: RuleRef, tag: str = "") -> Text:
    t = Text("  ")
    if tag:
        t.append(f"{tag:<6} ", "bold")
    t.append(f"{r.table}/{r.chain} #{r.position}: ", "cyan")
    t.append(r.text)
    t.append(f" {_counters(r)}", "dim")
    return t


def _sysctl_lines(title: str, values: dict[str, str]) -> list[Text]:
    if not values:
        return []
    out = [_heading(title)]
    out += [Text(f"  {k} = {v}") for k, v in values.items()]
    return out


def container_details(snapshot: Snapshot, c: Container) -> list[Text]:
    """Interfaces, routes, sockets, sysctls and the rules touching ``c`` (with counters)."""
    doc = show_doc(snapshot, c)["container"]
    head = Text(doc["name"], "bold")
    head.append(f"  {doc['runtime']}, {doc['state']}", "dim")
    if doc["pid"]:
        head.append(f", pid {doc['pid']}", "dim")
    out = [head]
    ns = doc.get("netns")
    if ns is not None:
        line = Text(f"netns {ns['inode']} {ns['path'] or ''}", "dim")
        if ns.get("error"):
            line.append(f" {ns['error']}", "bold red")
        out.append(line)
    out.append(Text(f"mode {doc['network_mode']}", "dim"))
    out.append(_heading("Interfaces"))
    if not doc["interfaces"]:
        out.append(Text("  none but loopback", "dim"))
    for iface in doc["interfaces"]:
        t = Text(f"  {iface['name']}", "bold")
        t.append(f" {iface['kind']} mtu {iface['mtu']} ")
        t.append("up" if iface["up"] else iface["oper_state"], "" if iface["up"] else "bold red")
        out.append(t)
        addrs = [a["cidr"] for a in iface["addresses"] if a["scope"] != "link"]
        out.append(Text(f"    {', '.join(addrs) or 'no address'}"))
        host = iface.get("host_side")
        if host and host.get("peer"):
            peer = host["peer"]
            hs = Text(f"    host side {peer['name']} in {peer['netns_label']}")
            br = host.get("bridge")
            if br:
                hs.append(f", bridge {br['name']}")
            port = host.get("port")
            if port:
                ok = port["state"] == "forwarding"
                hs.append(f", port {port['state']}", "" if ok else "bold red")
            out.append(hs)
    routes = [r for r in doc["routes"] if r["family"] == 4 or not r["dst"].startswith("fe80")]
    out.append(_heading("Routes"))
    for r in routes:
        dst = "default" if r["dst"] in ("0.0.0.0/0", "::/0") else r["dst"]
        via = f" via {r['gateway']}" if r["gateway"] else ""
        dev = f" dev {r['oif']}" if r["oif"] else ""
        kind = "" if r["type"] == "unicast" else f"{r['type']} "
        table = "" if r["table"] == 254 else f" table {r['table']}"
        out.append(Text(f"  {kind}{dst}{via}{dev}{table}"))
    if not routes:
        out.append(Text("  none", "bold red"))
    out.append(_heading("Listening sockets"))
    for s in doc["sockets"]:
        ip = f"[{s['local_ip']}]" if ":" in s["local_ip"] else s["local_ip"]
        t = Text(f"  {s['proto']} {ip}:{s['local_port']} ")
        reach = s["reachable_from"]
        t.append(
            {"loopback": "loopback only", "all": "all interfaces", "address": "this address"}[
                reach
            ],
            "bold yellow" if reach == "loopback" else "dim",
        )
        if s["process"]:
            t.append(f" {s['process']}[{s['pid']}]", "dim")
        out.append(t)
    if not doc["sockets"]:
        out.append(Text("  none (or not read)", "dim"))
    if doc["ports"]:
        out.append(_heading("Published ports"))
        out += [Text(f"  {port_text_doc(p)}") for p in doc["ports"]]
    out += _sysctl_lines("Sysctls (container)", doc["sysctls"]["container"])
    host_label = doc["host_netns"]["label"] if doc.get("host_netns") else "host"
    out += _sysctl_lines(f"Sysctls ({host_label})", doc["sysctls"]["host"])
    nat = netfilter_for(snapshot, c)
    out.append(_heading(f"Rules touching it ({host_label})"))
    if nat.status != "ok":
        out.append(Text(f"  {nat.status}: {nat.reason or ''}", "dim"))
    else:
        for tag, refs in (("dnat", nat.dnat), ("egress", nat.egress), ("filter", nat.filter)):
            out += [rule_line(r, tag) for r in refs]
        if not (nat.dnat or nat.egress or nat.filter):
            out.append(Text("  none", "dim"))
    return out


def _link_rules(snapshot: Snapshot, ns: Netns, link: Link) -> list[Text]:
    out = [_heading("Rules touching it")]
    if ns.ruleset.empty:
        out.append(Text("  no ruleset read in this namespace", "dim"))
        return out
    try:
        from cntrace import netfilter

        nf = netfilter.load(ns.ruleset)
        addrs = [a.address for a in link.addresses if a.scope == "global"]
        by_hook = netfilter.rules_touching(nf, interfaces=[link.name], addresses=addrs)
    except Exception as exc:  # a ruleset the model cannot read must not break the pane
        out.append(Text(f"  unavailable: {type(exc).__name__}: {exc}", "dim"))
        return out
    seen: set[tuple[str, str, str, str, int]] = set()
    found = []
    for refs in by_hook.values():
        for r in refs:
            key = (r.backend, r.family, r.table, r.chain, r.position)
            if key not in seen:
                seen.add(key)
                found.append(rule_line(r))
    out += _capped(found, "rules (r: rules view)") if found else [Text("  none", "dim")]
    return out


def _link_lines(link: Link) -> list[Text]:
    t = Text(link.name, "bold")
    t.append(f"  {link.kind}, ifindex {link.ifindex}, mtu {link.mtu} ")
    t.append("up" if link.is_up else link.oper_state, "" if link.is_up else "bold red")
    out = [t]
    addrs = [a.cidr for a in link.addresses if a.scope != "link"]
    out.append(Text(f"addresses {', '.join(addrs) or 'none'}", "dim"))
    if link.mac:
        out.append(Text(f"mac {link.mac}", "dim"))
    return out


def host_details(snapshot: Snapshot, ns: Netns) -> list[Text]:
    topo = Topology(snapshot)
    out = [Text(topo.label(ns.inode), "bold"), Text(f"netns {ns.inode}", "dim")]
    out.append(_heading("Interfaces"))
    ifaces = []
    # Bridges and uplinks first: on a busy host the veths are most of the list.
    for link in sorted(ns.links, key=lambda lk: (lk.kind == "veth", lk.ifindex)):
        if link.kind == "loopback":
            continue
        addrs = [a.cidr for a in link.addresses if a.scope != "link"]
        t = Text(f"  {link.name} {link.kind}")
        t.append(f" {', '.join(addrs)}", "dim")
        if not link.is_up:
            t.append(" (down)", "bold red")
        ifaces.append(t)
    out += _capped(ifaces, "interfaces")
    out.append(_heading("Routes (main table)"))
    routes = []
    for r in ns.routes:
        if r.table != 254 or r.dst.startswith("fe80"):
            continue
        dst = "default" if r.dst in ("0.0.0.0/0", "::/0") else r.dst
        via = f" via {r.gateway}" if r.gateway else ""
        dev = f" dev {r.oif}" if r.oif else ""
        routes.append(Text(f"  {dst}{via}{dev}"))
    out += _capped(routes, "routes")
    if ns.sockets:
        out.append(_heading("Listening sockets"))
        socks = [Text(f"  {s.proto} {s.local_ip}:{s.local_port}") for s in ns.sockets]
        out += _capped(socks, "sockets")
    from cntrace.render.discovery_json import SYSCTL_KEYS

    out += _sysctl_lines("Sysctls", {k: ns.sysctls[k] for k in SYSCTL_KEYS if k in ns.sysctls})
    out.append(_heading("Netfilter"))
    if ns.ruleset.empty:
        out.append(Text("  no ruleset read", "dim"))
    else:
        try:
            from cntrace import netfilter

            nf = netfilter.load(ns.ruleset)
            for table in nf.tables:
                n = sum(len(c.rules) for c in table.chains.values())
                out.append(Text(f"  {table.label}: {len(table.chains)} chains, {n} rules"))
        except Exception as exc:
            out.append(Text(f"  unavailable: {exc}", "dim"))
    return out


def details(snapshot: Snapshot, ref: NodeRef) -> RenderableType:
    """The details pane for one topology node."""
    topo = Topology(snapshot)
    ns = topo.ns(ref.netns)
    lines: list[Text]
    if ref.kind == "container" and ref.name is not None:
        c = container_by_id(snapshot, ref.name)
        lines = container_details(snapshot, c) if c else [Text("container gone", "dim")]
    elif ref.kind in ("uplink", "bridge", "port") and ns is not None and ref.name:
        link = topo.link_named(ns.inode, ref.name)
        if link is None:
            lines = [Text(f"{ref.name}: gone", "dim")]
        else:
            lines = _link_lines(link)
            lines.append(Text(f"in {topo.label(ns.inode)}", "dim"))
            if ref.kind == "bridge":
                lines.append(_heading("Ports"))
                ports = []
                for p in topo.ports(ns, link):
                    state = p.bridge_port.state if p.bridge_port else "?"
                    ports.append(Text(f"  {p.name} {state}"))
                lines += _capped(ports, "ports")
            if ref.kind == "port" and link.bridge_port is not None:
                bp = link.bridge_port
                lines.append(
                    Text(
                        f"port {bp.state}, learning {'on' if bp.learning else 'off'}, "
                        f"hairpin {'on' if bp.hairpin else 'off'}, "
                        f"isolated {'on' if bp.isolated else 'off'}"
                    )
                )
            lines += _link_rules(snapshot, ns, link)
    elif ref.kind in ("host", "unowned") and ns is not None:
        lines = host_details(snapshot, ns)
        if ns.error:
            lines.insert(1, Text(ns.error, "bold red"))
    else:
        lines = [Text("select a host, bridge, port or container", "dim")]
    return Group(*lines)


# --------------------------------------------------------------------------- path


def hop_columns(path: Path) -> tuple[str, ...]:
    """The LIVE column only when there is something live to show (80 columns are precious)."""
    if path.mode == "live":
        return ("#", "WHERE", "IFACE", "LIVE", "STEP", "PACKET")
    return ("#", "WHERE", "IFACE", "STEP", "PACKET")


def _addr(ip: str, port: int | None) -> str:
    ip = f"[{ip}]" if ":" in ip else ip
    return f"{ip}:{port}" if port is not None else ip


def packet_text(p: Packet, prev: Packet | None) -> Text:
    """The packet's addresses; a NAT rewrite is bold magenta where it happens."""
    text = Text(f"{p.proto} ")
    src_changed = prev is not None and (prev.src, prev.sport) != (p.src, p.sport)
    dst_changed = prev is not None and (prev.dst, prev.dport) != (p.dst, p.dport)
    text.append(_addr(p.src, p.sport), "bold magenta" if src_changed else "")
    text.append(" -> ")
    text.append(_addr(p.dst, p.dport), "bold magenta" if dst_changed else "")
    return text


def live_cell(h: Hop, mode: str) -> Text:
    """Whether live tracing saw this hop: seen +t, not seen, not watched, or pending."""
    if mode != "live" or h.observed is None:
        return Text("")
    if h.watched is False:
        return Text("unwatched", "dim")
    if h.observed:
        t = f"+{h.t_us / 1000:.2f}ms" if h.t_us is not None else "seen"
        return Text(f"✓ {t}", "green")
    return Text("✗ not seen", "bold red" if not h.ok else "yellow")


def hop_rows(path: Path) -> list[tuple[str, tuple[str | Text, ...]]]:
    """(row key, cells) per hop, with a divider row where the reply starts."""
    rows: list[tuple[str, tuple[str | Text, ...]]] = []
    prev: Packet | None = None
    direction = "request"
    deciding = path.verdict.at_hop
    live = path.mode == "live"
    for h in path.hops:
        if h.direction != direction:
            direction = h.direction
            blank: tuple[str | Text, ...] = ("",) * (4 if live else 3)
            rows.append((f"div-{h.index}", ("", Text("reply", "bold dim"), *blank)))
            prev = None
        step = Text(f"{h.kind:<9} ", "cyan")
        step.append(h.summary, "bold red" if not h.ok else "")
        if h.reason:
            step.append(f" [{h.reason}]", "bold red")
        mark = str(h.index)
        idx: Text = Text(mark)
        if h.index == deciding and path.verdict.status != "delivered":
            idx = Text(f"✗{mark}", "bold red reverse")
        elif not h.ok:
            idx = Text(f"!{mark}", "bold red")
        cells: tuple[str | Text, ...] = (idx, h.netns_label, h.interface or "")
        if live:
            cells += (live_cell(h, path.mode),)
        rows.append((f"hop-{h.index}", (*cells, step, packet_text(h.packet, prev))))
        prev = h.packet
    return rows


def hop_detail(path: Path, index: int) -> Text:
    """Everything about one hop, for the line under the timeline (the table crops at 80)."""
    prev: Packet | None = None
    direction = "request"
    for h in path.hops:
        if h.direction != direction:
            direction, prev = h.direction, None
        if h.index == index:
            t = Text(f"#{h.index} ", "bold")
            t.append(f"{h.netns_label} {h.interface or ''} ", "bold")
            t.append(f"{h.kind}: ", "cyan")
            t.append(h.summary, "" if h.ok else "bold red")
            t.append("\n")
            t.append_text(packet_text(h.packet, prev))
            if path.mode == "live" and h.observed is not None:
                t.append("  live: ", "bold")
                t.append_text(live_cell(h, path.mode))
                if h.observed_packet is not None and h.observed_packet != h.packet:
                    t.append(f" as {h.observed_packet}", "bold magenta")
                if h.reason:
                    t.append(f" dropped: {h.reason}", "bold red")
                    if h.location:
                        t.append(f" in {h.location}", "bold red")
            if h.rule is not None:
                t.append(f"\nrule {h.rule.table}/{h.rule.chain} #{h.rule.position}: ", "dim")
                t.append(h.rule.text, "dim")
                t.append("  (enter: rules view)", "dim")
            for e in h.evidence:
                if h.rule is None or e.strip() != h.rule.text.strip():
                    t.append(f"\n{e}", "dim")
            return t
        prev = h.packet
    return Text("")


def deciding_hop(path: Path) -> Hop | None:
    """The hop the verdict names, or None."""
    for h in path.hops:
        if h.index == path.verdict.at_hop:
            return h
    return None


def deciding_rule(path: Path) -> tuple[RuleRef, int | None] | None:
    """The netfilter rule that decided the verdict and the namespace it lives in."""
    hop = deciding_hop(path)
    if path.verdict.rule is not None:
        return path.verdict.rule, hop.netns if hop else None
    if hop is not None and hop.rule is not None:
        return hop.rule, hop.netns
    return None


def path_header(path: Path) -> Text:
    src, dst = path.source, path.destination
    target = dst.name or dst.ip or dst.asked
    if dst.ip and dst.name and dst.ip != dst.name:
        target = f"{dst.name} ({dst.ip})"
    proto = dst.protocol or ""
    port = f"/{dst.port}" if dst.port is not None else ""
    t = Text(f"{src.name or src.asked} -> {target} {proto}{port}", "bold")
    t.append(f"  [{path.mode}]", "dim")
    return t


def verdict_lines(path: Path) -> list[Text]:
    """The verdict in one highlighted line, the deciding rule, then each finding."""
    v = path.verdict
    line = Text(" verdict ", "bold reverse")
    line.append(" ")
    line.append(v.status.upper(), STATUS_STYLE.get(v.status, "bold"))
    at = f" at hop {v.at_hop}" if v.at_hop else ""
    line.append(f"{at}: {v.summary}")
    if v.reason and v.reason != "left-host":
        line.append(f"  [{v.reason}]", "dim")
    out = [line]
    rule = deciding_rule(path)
    if rule is not None:
        r = rule[0]
        t = Text("  rule ", "bold")
        t.append(f"{r.table}/{r.chain} #{r.position}: {r.text}")
        t.append("   (r: open in rules view)", "dim")
        out.append(t)
    for f in path.findings:
        mark, colour = SEVERITY_MARK.get(f.severity, ("-", "white"))
        t = Text(f" {mark} ", f"bold {colour} reverse")
        t.append(f" {f.code}", f"bold {colour}")
        t.append(f"  {f.summary}")
        out.append(t)
        out += [Text(f"     evidence: {e}", "dim") for e in f.evidence]
        if f.fix:
            out.append(Text(f"     fix: {f.fix}", "green"))
    out += [Text(f"note: {n}", "dim") for n in path.notes]
    if path.stats:
        stats = ", ".join(f"{k}={v}" for k, v in sorted(path.stats.items()))
        out.append(Text(f"trace: {stats}", "dim"))
    return out


# --------------------------------------------------------------------------- drops


@dataclass(frozen=True, slots=True)
class DropAttribution:
    """Who a kernel drop belongs to."""

    container: str | None
    where: str  # namespace label and interface


class DropAttributor:
    """Names the container behind a drop, built once per snapshot.

    In order: the namespace is the container's; the device is its host veth; the packet's source
    or destination is its address, as seen from that host namespace (a routed packet dropped in
    FORWARD sits on the bridge, not on the veth). Addresses are keyed by host namespace because
    separate hosts (two labs, Docker in a namespace) reuse the same subnets.
    """

    def __init__(self, snapshot: Snapshot) -> None:
        topo = Topology(snapshot)
        self._topo = topo
        self._by_ns: dict[int, str] = {}
        self._by_port: dict[tuple[int, int], str] = {}
        self._by_ip: dict[tuple[int, str], str] = {}
        for c in snapshot.containers:
            if c.netns is None or c.network_mode == "host" or c.netns == c.host_netns:
                continue
            self._by_ns.setdefault(c.netns, c.name)
            for att in topo.attachments(c):
                if att.peer is not None:
                    key = (att.peer.netns.inode, att.peer.link.ifindex)
                    self._by_port.setdefault(key, c.name)
                    for a in att.interface.link.addresses:
                        if a.scope == "global":
                            self._by_ip.setdefault((att.peer.netns.inode, a.address), c.name)

    def attribute(
        self, netns: int | None, ifindex: int | None, packet: Packet | None = None
    ) -> DropAttribution:
        label = self._topo.label(netns) if netns is not None else "?"
        ifname = None
        if netns is not None and ifindex is not None:
            link = self._topo.link(netns, ifindex)
            ifname = link.name if link else f"if{ifindex}"
        where = f"{label} {ifname}" if ifname else label
        who = None
        if netns is not None:
            who = self._by_ns.get(netns)
            if who is None and ifindex is not None:
                who = self._by_port.get((netns, ifindex))
            if who is None and packet is not None:
                who = self._by_ip.get((netns, packet.src)) or self._by_ip.get((netns, packet.dst))
        return DropAttribution(who, where)


DROP_COLUMNS = ("TIME", "CONTAINER", "WHERE", "REASON", "LOCATION", "PACKET")
