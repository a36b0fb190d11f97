"""Readable text for ``ls``, ``show`` and ``topo``, drawn from the same documents as --json."""

from __future__ import annotations

import sys
from typing import Any

from rich.markup import escape
from rich.tree import Tree

from cntrace.render.console import console
from cntrace.render.safe import clean, term

Doc = dict[str, Any]
DEFAULT_RULE_PRIORITIES = {0, 32766, 32767}


def _warnings(doc: Doc) -> None:
    err = console(stderr=True)
    for w in doc.get("warnings", []):
        err.print(f"[yellow]warning:[/] {escape(term(w))}")


def _markup_safe(value: Any) -> Any:
    """Every string of a document made safe for the terminal and for rich markup (names from a
    snapshot may hold escape sequences or ``[tags]``): show and topo put them in markup."""
    if isinstance(value, str):
        return escape(term(value))
    if isinstance(value, dict):
        return {_markup_safe(k): _markup_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_markup_safe(v) for v in value]
    return value


def _ports(ports: list[Doc]) -> str:
    out = []
    for p in ports:
        host = f"[{p['host_ip']}]" if ":" in p["host_ip"] else p["host_ip"]
        out.append(f"{host}:{p['host_port']}->{p['container_port']}/{p['proto']}")
    return ", ".join(out)


def ls_lines(doc: Doc) -> list[str]:
    """The ls table as plain aligned text: a thousand rows print in milliseconds (a rich Table
    takes seconds), and piped output greps cleanly."""
    header = ("NAME", "RUNTIME", "PID", "IPS", "HOST VETH", "BRIDGE", "PORTS", "MODE")
    rows = [header]
    for row in doc["containers"]:
        name = row["name"] if row["state"] == "running" else f"{row['name']} ({row['state']})"
        veths = ", ".join(
            v["name"] if v["netns_label"] == "host" else f"{v['name']}@{v['netns_label']}"
            for v in row["host_veths"]
        )
        rows.append(
            (
                name,
                row["runtime"],
                str(row["pid"] or "-"),
                ", ".join(row["ips"]) or "-",
                veths or "-",
                ", ".join(row["bridges"]) or "-",
                _ports(row["ports"]) or "-",
                row["network_mode"],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    ]


def print_ls(doc: Doc) -> None:
    doc = clean(doc)
    if doc["containers"]:
        sys.stdout.write("\n".join(ls_lines(doc)) + "\n")
    else:
        sys.stdout.write("no containers found\n")
    _warnings(doc)


def _onoff(value: bool | None) -> str:
    return "on" if value else "off"


def _host_side(node: Tree, iface: Doc) -> None:
    host = iface.get("host_side")
    if host is None:
        node.add("[dim]no host side (not a veth or macvlan)[/]")
        return
    peer = host.get("peer")
    bridge = host.get("bridge")
    if peer is not None:
        state = "" if host.get("peer_up") else " [red](down)[/]"
        kind = "lower device" if host["kind"] != "veth" else "host veth"
        line = (
            f"{kind}: [bold]{peer['name']}[/] (ifindex {peer['ifindex']}) in "
            f"{peer['netns_label']}{state}"
        )
    else:
        line = "host side: unknown (peer namespace not readable)"
    hs = node.add(line)
    if bridge is not None:
        addrs = ", ".join(bridge["addresses"]) or "no address"
        down = "" if bridge["up"] else " [red](down)[/]"
        hs.add(f"bridge: [bold]{bridge['name']}[/] ({addrs}){down}")
        port = host.get("port")
        if port is not None:
            colour = "green" if port["state"] == "forwarding" else "red"
            hs.add(
                f"port: [{colour}]{port['state']}[/], learning {_onoff(port['learning'])}, "
                f"flood {_onoff(port['flood'])}, hairpin {_onoff(port['hairpin'])}, "
                f"isolated {_onoff(port['isolated'])}"
            )
        fdb = host.get("fdb")
        if fdb is not None:
            kind = "static" if fdb["static"] else "learnt"
            hs.add(f"fdb: {fdb['mac']} {kind} on {fdb['port']}")
        elif iface.get("mac"):
            hs.add(f"fdb: [yellow]no entry for {iface['mac']}[/] (not learnt yet, or aged out)")


def print_show(doc: Doc) -> None:
    raw, doc = doc, _markup_safe(doc)
    c = doc["container"]
    cid = c["id"]
    hexid = len(cid) == 64 and all(ch in "0123456789abcdef" for ch in cid)
    ident = cid[:12] if hexid else ("" if cid.startswith(("netns:", "pid:")) else cid)
    head = f"[bold]{c['name']}[/] ({c['runtime']}{' ' + ident if ident else ''})"
    state = c["state"] if c["state"] == "running" else f"[red]{c['state']}[/]"
    tree = Tree(f"{head} {state}" + (f", pid {c['pid']}" if c["pid"] else ""))
    ns = c.get("netns")
    if ns is None:
        tree.add("[red]network namespace unknown[/]")
    else:
        line = f"netns: {ns['inode']} {ns['path'] or ''}"
        if ns["shared_with"]:
            line += f" (shared with {', '.join(ns['shared_with'])})"
        if ns.get("error"):
            line += f" [red]{ns['error']}[/]"
        tree.add(line)
    host = c.get("host_netns")
    tree.add(
        f"mode: {c['network_mode']}"
        + (f"; host: {host['label']} (netns {host['inode']})" if host else "")
    )
    ifaces = tree.add("interfaces")
    if not c["interfaces"]:
        ifaces.add("[dim]none but loopback[/]")
    for iface in c["interfaces"]:
        up = "up" if iface["up"] else f"[red]{iface['oper_state']}[/]"
        node = ifaces.add(
            f"[bold]{iface['name']}[/] ({iface['kind']}, ifindex {iface['ifindex']}) "
            f"{iface['mac'] or ''} mtu {iface['mtu']} {up}"
        )
        addrs = [a["cidr"] for a in iface["addresses"]]
        node.add("addresses: " + (", ".join(addrs) if addrs else "[yellow]none[/]"))
        _host_side(node, iface)
    gw = c.get("default_gateway")
    if gw is not None:
        tree.add(f"default gateway: {gw['gateway'] or 'on-link'} via {gw['oif']}")
    elif ns is not None:
        tree.add("default gateway: [yellow]none[/]")
    routes = [r for r in c["routes"] if r["family"] == 4 or not r["dst"].startswith("fe80")]
    if routes:
        node = tree.add("routes")
        for r in routes:
            table = "" if r["table"] == 254 else f" table {r['table']}"
            via = f" via {r['gateway']}" if r["gateway"] else ""
            dev = f" dev {r['oif']}" if r["oif"] else ""
            kind = "" if r["type"] == "unicast" else f"{r['type']} "
            node.add(f"{kind}{r['dst']}{via}{dev}{table}")
    rules = [r for r in c["rules"] if r["priority"] not in DEFAULT_RULE_PRIORITIES]
    if rules:
        node = tree.add("policy rules")
        for r in rules:
            sel = " ".join(
                f"{k} {r[k]}" for k in ("src", "dst", "iif", "oif", "fwmark") if r[k] is not None
            )
            node.add(
                f"{r['priority']}: {'not ' if r['invert'] else ''}{sel or 'all'} "
                f"{r['action']} {r['table']}"
            )
    res = c.get("resolver")
    if res is not None:
        tree.add(
            "resolver: "
            + (", ".join(res["nameservers"]) or "[yellow]no nameserver[/]")
            + (f" (search {' '.join(res['search'])})" if res["search"] else "")
        )
    if c["sockets"]:
        node = tree.add("listening sockets")
        for s in c["sockets"]:
            reach = {
                "loopback": "[yellow]loopback only[/]",
                "all": "all interfaces",
                "address": "this address only",
            }[s["reachable_from"]]
            ip = f"[{s['local_ip']}]" if ":" in s["local_ip"] else s["local_ip"]
            who = f" {s['process']}[{s['pid']}]" if s["process"] else ""
            node.add(f"{s['proto']} {ip}:{s['local_port']} ({reach}){who}")
    if c["ports"]:
        tree.add("published: " + _ports(c["ports"]))
    nf = c["netfilter"]
    node = tree.add("netfilter")
    if nf["status"] == "ok":
        for title, key in (
            ("published ports (DNAT)", "dnat"),
            ("egress (SNAT/MASQUERADE)", "egress"),
        ):
            sub = node.add(title)
            for r in nf[key]:
                sub.add(f"{r['backend']} {r['table']}/{r['chain']} #{r['position']}: {r['text']}")
            if not nf[key]:
                sub.add("[dim]none[/]")
    else:
        node.add(f"[dim]{nf['status']}: {nf['reason'] or ''}[/]")
    sysctls = c["sysctls"]
    for where in ("container", "host"):
        if sysctls[where]:
            sub = tree.add(f"sysctls ({where})")
            for k, v in sysctls[where].items():
                sub.add(f"{k} = {v}")
    console().print(tree)
    _warnings(raw)


def print_topo(doc: Doc) -> None:
    raw, doc = doc, _markup_safe(doc)
    root = Tree(f"[bold]{doc['host']['hostname']}[/] (kernel {doc['host']['kernel']})")
    for host in doc["hosts"]:
        ns = host["netns"]
        node = root.add(f"[bold]{ns['label']}[/] (netns {ns['inode']})")
        fwd = host["sysctls"].get("net.ipv4.ip_forward")
        if fwd is not None:
            node.add(
                f"ip_forward={fwd}, bridge-nf-call-iptables="
                f"{host['sysctls'].get('net.bridge.bridge-nf-call-iptables', '-')}"
            )
        for up in host["uplinks"]:
            node.add(f"uplink [bold]{up['name']}[/] {', '.join(up['addresses'])}")
        for br in host["bridges"]:
            bnode = node.add(
                f"bridge [bold]{br['name']}[/] {', '.join(br['addresses'])}"
                + ("" if br["up"] else " [red](down)[/]")
            )
            for port in br["ports"]:
                _topo_port(bnode, port)
            if not br["ports"]:
                bnode.add("[dim]no ports[/]")
        for veth in host["veths"]:
            _topo_port(node, veth, prefix="veth ")
        for name in host["host_mode_containers"]:
            node.add(f"{name} (host network)")
    if doc["unowned"]:
        node = root.add("namespaces no runtime owns")
        for ns in doc["unowned"]:
            links = ", ".join(ln for ln in ns["links"] if ln != "lo") or "only lo"
            node.add(f"{ns['label']} (netns {ns['inode']}): {links}")
    console().print(root)
    _warnings(raw)


def _topo_port(parent: Tree, port: Doc, prefix: str = "") -> None:
    state = port["state"]
    st = "" if state in (None, "forwarding") else f" [red]{state}[/]"
    down = "" if port["up"] else " [red](down)[/]"
    who = ", ".join(port["containers"])
    peer = port.get("peer")
    target = who if who else (peer["netns_label"] if peer else "?")
    ports = (
        f"  {port['ports'][0]}"
        if len(port["ports"]) == 1
        else (f"  {', '.join(port['ports'])}" if port["ports"] else "")
    )
    parent.add(f"{prefix}{port['name']} -> [bold]{target}[/]{st}{down}{ports}")
