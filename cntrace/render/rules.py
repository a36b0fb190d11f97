"""`cntrace rules`: documents (JSON-ready dicts) and their rich text rendering.

Text and ``--json`` come from the same document, so they never disagree. Schemas:
``cntrace.rules/v1`` (a listing by hook) and ``cntrace.rules.walk/v2`` (one packet's walk);
docs/netfilter.md describes both.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cntrace.codec import to_plain
from cntrace.model import RuleRef
from cntrace.netfilter import Netfilter, Walk
from cntrace.netfilter.model import HOOKS
from cntrace.netfilter.spec import PacketSpec
from cntrace.render.console import console
from cntrace.render.safe import clean

RULES_SCHEMA = "cntrace.rules/v1"
WALK_SCHEMA = "cntrace.rules.walk/v2"

Doc = dict[str, Any]


def _rule(r: RuleRef) -> Doc:
    d: Doc = {
        "backend": r.backend,
        "family": r.family,
        "table": r.table,
        "chain": r.chain,
        "position": r.position,
        "text": r.text,
    }
    if r.handle is not None:
        d["handle"] = r.handle
    if r.verdict:
        d["verdict"] = r.verdict
    if r.counters is not None:
        d["packets"], d["bytes"] = r.counters
    return d


def listing_doc(
    nf: Netfilter,
    by_hook: dict[str, list[RuleRef]],
    *,
    netns: str,
    subject: str | None = None,
    notes: list[str] | None = None,
) -> Doc:
    """Rules grouped by hook, with the base chains (policies) each hook runs."""
    hooks: Doc = {}
    for hook in HOOKS:
        refs = by_hook.get(hook, [])
        bases = []
        for ipver in (4, 6):
            for c in nf.base_chains(hook, ipver):
                entry = {
                    "backend": c.backend,
                    "family": c.family,
                    "table": c.table,
                    "chain": c.name,
                    "priority": c.priority,
                    "type": c.type,
                    "policy": c.policy,
                }
                if c.counters is not None:
                    entry["policy_packets"], entry["policy_bytes"] = c.counters
                if entry not in bases:
                    bases.append(entry)
        if refs or bases:
            hooks[hook] = {"base_chains": bases, "rules": [_rule(r) for r in refs]}
    return {
        "schema": RULES_SCHEMA,
        "netns": netns,
        "subject": subject,
        "backends": list(nf.backends),
        "rule_count": nf.rule_count,
        "warnings": list(nf.warnings),
        "ignored": list(nf.ignored),
        "notes": notes or [],
        "hooks": hooks,
    }


def walk_doc(walk: Walk, spec: PacketSpec, *, netns: str, warnings: list[str]) -> Doc:
    """One packet's walk, as JSON-ready values."""
    return {
        "schema": WALK_SCHEMA,
        "netns": netns,
        "packet": spec.text,
        "certain": walk.certain,
        "warnings": warnings,
        "walk": to_plain(walk),
    }


# --------------------------------------------------------------------------- text


def _counters(d: Doc) -> str:
    if "packets" not in d:
        return ""
    return f"{d['packets']} pkts {d['bytes']} B"


def print_listing(doc: Doc) -> None:
    doc = clean(doc)
    out = console()
    head = Text()
    head.append("netns ", style="dim")
    head.append(str(doc["netns"]), style="bold")
    if doc.get("subject"):
        head.append("  rules touching ", style="dim")
        head.append(str(doc["subject"]), style="bold")
    head.append("  back ends ", style="dim")
    head.append(", ".join(doc["backends"]) or "none")
    head.append(f"  ({doc['rule_count']} rules)", style="dim")
    out.print(head)
    for w in doc["warnings"]:
        out.print(f"[yellow]warning[/] {escape(w)}")
    for i in doc["ignored"]:
        out.print(f"[dim]ignored {escape(i)}[/]")
    for n in doc["notes"]:
        out.print(f"[dim]{escape(n)}[/]")
    if not doc["hooks"]:
        out.print("no netfilter rules")
        return
    for hook, body in doc["hooks"].items():
        out.print()
        out.print(Text(hook.upper(), style="bold cyan"))
        bases = ", ".join(
            f"{b['backend']} {b['family']} {b['table']} {b['chain']} "
            f"(prio {b['priority']}{', ' + b['type'] if b['type'] == 'nat' else ''}, "
            f"policy {b['policy']})"
            for b in body["base_chains"]
        )
        if bases:
            out.print(Text("  base chains: " + bases, style="dim"))
        if not body["rules"]:
            out.print(Text("  (no rules)", style="dim"))
            continue
        t = Table(box=None, show_header=True, header_style="dim", pad_edge=False)
        t.add_column("back end", no_wrap=True)
        t.add_column("table", no_wrap=True)
        t.add_column("chain", no_wrap=True)
        t.add_column("#", justify="right")
        t.add_column("counters", justify="right", no_wrap=True)
        t.add_column("rule")
        for r in body["rules"]:
            t.add_row(
                escape(r["backend"]),
                escape(f"{r['family']} {r['table']}"),
                escape(r["chain"]),
                str(r["position"]) + (f" h{r['handle']}" if "handle" in r else ""),
                _counters(r),
                escape(r["text"]),
            )
        out.print(t)


_VERDICT_STYLE = {"accept": "green", "drop": "red", "reject": "red", "queue": "yellow"}


def _ref_text(r: Doc | None) -> str:
    if not r:
        return ""
    if r.get("policy"):
        return f"{r['backend']} {r['family']} {r['table']} {r['chain']} {r['text']}"
    where = f"{r['backend']} {r['family']} {r['table']} {r['chain']} #{r['position']}"
    if r.get("handle") is not None:
        where += f" (handle {r['handle']})"
    return f"{where}: {r['text']}"


def _pkt(p: Doc) -> str:
    s = f"{p['src']}:{p['sport']}" if p.get("sport") is not None else p["src"]
    d = f"{p['dst']}:{p['dport']}" if p.get("dport") is not None else p["dst"]
    mark = f" mark 0x{p['mark']:x}" if p.get("mark") else ""
    return f"{p['proto']} {s} -> {d}{mark}"


def print_walk(doc: Doc) -> None:
    doc = clean(doc)
    out = console()
    w = doc["walk"]
    head = Text()
    head.append("packet ", style="dim")
    head.append(_pkt(w["packet_before"]), style="bold")
    head.append("  in ", style="dim")
    head.append(str(doc["netns"]))
    head.append("  path ", style="dim")
    devs = []
    if w.get("iif"):
        devs.append(f"in {w['iif']}")
    if w.get("oif"):
        devs.append(f"out {w['oif']}")
    head.append(w["kind"] + (f" ({', '.join(devs)})" if devs else ""))
    out.print(head)
    for warn in doc["warnings"]:
        out.print(f"[yellow]warning[/] {escape(warn)}")
    for hook in w["hooks"]:
        out.print()
        line = Text(hook["hook"].upper(), style="bold cyan")
        devs = []
        if hook.get("iif"):
            devs.append(f"iif {hook['iif']}")
        if hook.get("oif"):
            devs.append(f"oif {hook['oif']}")
        if devs:
            line.append("  " + " ".join(devs), style="dim")
        out.print(line)
        if not hook["chains"]:
            out.print(Text("  no base chains here", style="dim"))
        for v in hook["chains"]:
            label = (
                f"  {v['backend']} {v['family']} {v['table']} {v['chain']} "
                f"(prio {v['priority']}{', nat' if v['type'] == 'nat' else ''})"
            )
            if v.get("skipped"):
                out.print(Text(f"{label}: skipped, {v['skipped']}", style="dim"))
                continue
            verdict = v["verdict"] or "?"
            decided = v.get("rule") or {}
            how = "policy" if decided.get("policy", True) else "by a rule"
            text = Text(label + ": ")
            text.append(verdict.upper(), style=_VERDICT_STYLE.get(verdict, ""))
            text.append(f" ({how})", style="dim")
            out.print(text)
            for r in v["matched"]:
                same = all(r[k] == decided.get(k) for k in ("table", "chain", "position"))
                mark = "->" if same and not decided.get("policy") else "  "
                c = r.get("counters")
                cnt = f"  [{c[0]} pkts {c[1]} B]" if c else ""
                out.print(
                    f"    {mark} {escape(r['chain'])} #{r['position']}  {escape(r['text'])}"
                    f"[dim]{escape(cnt)}[/]"
                )
        if hook.get("nat"):
            n = hook["nat"]
            nt = Text(f"  {n['kind'].upper()} ", style="magenta bold")
            nt.append(f"{_pkt(n['before'])}  =>  {_pkt(n['after'])}")
            if n.get("note"):
                nt.append(f"  ({n['note']})", style="dim")
            out.print(nt)
        for ref, why in hook["uncertain"]:
            out.print(
                f"  [yellow]uncertain[/] {escape(ref['chain'])} #{ref['position']} "
                f"{escape(ref['text'])}: {escape(why)}"
            )
    out.print()
    for note in w["notes"]:
        out.print(f"[dim]{escape(note)}[/]")
    verdict = w["verdict"]
    final = Text("verdict ", style="dim")
    final.append(verdict.upper(), style="bold " + _VERDICT_STYLE.get(verdict, ""))
    if w.get("deciding"):
        final.append(" by " + _ref_text(w["deciding"]))
    elif w.get("policy"):
        final.append(" by " + w["policy"])
    out.print(final)
    if w["packet_after"] != w["packet_before"]:
        out.print(Text("after NAT ", style="dim") + Text(_pkt(w["packet_after"]), style="bold"))
    if w["uncertain"]:
        out.print(
            f"[yellow]uncertain:[/] {len(w['uncertain'])} rule(s) could not be evaluated; the "
            "walk assumes they match (see above)"
        )
