"""The details pane of the topology tab: everything about the selected node."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from cntrace.model import Container, Link, Netns, RuleRef, Snapshot
from cntrace.render.discovery_json import show_doc
from cntrace.topology import Topology, netfilter_for
from cntrace.tui.views.containers import container_by_id, port_text_doc
from cntrace.tui.views.rules import RuleKey, rule_key
from cntrace.tui.views.topology import NodeRef


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
    if r.policy:
        t.append(r.name, "cyan")
    else:
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
    seen: set[RuleKey] = set()
    found = []
    for refs in by_hook.values():
        for r in refs:
            key = rule_key(r)
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
