"""A what-if as text (the two paths side by side, then what differs) and as JSON
(``cntrace.whatif/v1``: docs/schemas/whatif.schema.json)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cntrace.model import Hop, Path
from cntrace.render.path import SEVERITY_MARK, STATUS_STYLE, to_document
from cntrace.whatif import Applied
from cntrace.whatif.compare import Comparison, document

WHATIF_SCHEMA = "cntrace.whatif/v1"


def where(a: Applied) -> str:
    if a.netns is None:
        return "on the runtime's networks"
    return f"in {a.netns}" + (", the path's host" if a.default else "")


def to_json(c: Comparison, applied: list[Applied]) -> str:
    doc: dict[str, Any] = {
        "schema": WHATIF_SCHEMA,
        "changes": [
            {"text": a.change.text, "kind": a.change.kind, "netns": a.netns, "default": a.default}
            for a in applied
        ],
        "before": to_document(c.before),
        "after": to_document(c.after),
        "differences": document(c),
    }
    return json.dumps(doc, indent=2) + "\n"


def _cell(h: Hop | None) -> Text:
    if h is None:
        return Text("")
    t = Text(f"{h.index:>2} ", style="dim")
    t.append(f"{h.kind:<9} ", style="cyan")
    t.append(h.summary, style="" if h.ok else "red")
    t.append(f"\n   {h.netns_label}" + (f" {h.interface}" if h.interface else ""), style="dim")
    if h.rule is not None and h.kind in ("netfilter", "nat"):
        t.append(f"\n   {h.rule.text}", style="dim")
    return t


def _verdict(p: Path) -> Text:
    v = p.verdict
    t = Text(v.status.upper(), style=STATUS_STYLE.get(v.status, "bold"))
    t.append(f" {v.summary}")
    return t


def render(c: Comparison, applied: list[Applied], console: Console) -> None:
    src, dst = c.before.source, c.before.destination
    head = Text("cntrace path ", style="bold")
    head.append(f"{src.name or src.asked} -> {dst.name or dst.ip or dst.asked}")
    head.append("   [what-if: nothing on the host was changed]", style="dim")
    console.print(head)
    for n, a in enumerate(applied, 1):
        line = Text(f"  change {n}: ", style="bold")
        line.append(a.change.text, style="yellow")
        line.append(f"  ({a.change.kind} {where(a)})", style="dim")
        console.print(line)
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", expand=False)
    table.add_column("")
    table.add_column("before")
    table.add_column("after")
    for row in c.rows:
        if row.same:
            mark = Text("=", style="dim")
        elif row.before is None:
            mark = Text("+", style="bold green")
        elif row.after is None:
            mark = Text("-", style="bold red")
        else:
            mark = Text("~", style="bold yellow")
        table.add_row(mark, _cell(row.before), _cell(row.after))
    console.print(table)
    line = Text("\nverdict: ", style="bold")
    line.append_text(_verdict(c.before))
    line.append("\n   ->    ", style="bold")
    line.append_text(_verdict(c.after))
    console.print(line)
    if c.rule_changed:
        for label, p in (("before", c.before), ("after", c.after)):
            r = p.verdict.rule
            text = r.describe() if r else "none"
            console.print(Text(f"  decisive rule {label}: {text}", style="dim"))
    if c.findings_gone:
        console.print(Text(f"  gone: {', '.join(c.findings_gone)}", style="green"))
    for f in c.after.findings:
        sign, color = SEVERITY_MARK.get(f.severity, ("-", "white"))
        new = " (new)" if f.code in c.findings_new else ""
        t = Text(f"\n {sign} ", style=f"bold {color}")
        t.append(f.code + new, style=f"bold {color}")
        t.append(f"  {f.summary}")
        console.print(t)
        if f.fix:
            console.print(Text(f"     fix: {f.fix}", style="green"))
    if not c.changed:
        console.print(Text("\nthe change makes no difference to this path", style="bold"))
