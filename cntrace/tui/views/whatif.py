"""The what-if screen's text: a change's two paths side by side, what differs, and how a
finding's fix fared. Computed from cntrace.whatif's Comparison and FixCheck, the same objects
`cntrace path --what-if` prints."""

from __future__ import annotations

from rich.text import Text

from cntrace.model import Hop, Path
from cntrace.render.path import SEVERITY_MARK, STATUS_STYLE
from cntrace.render.whatif import where
from cntrace.whatif import Applied
from cntrace.whatif.compare import Comparison, HopRow
from cntrace.whatif.fixes import FixCheck

WHATIF_COLUMNS = ("", "BEFORE", "AFTER")

# (mark, style) of a row: the same hop, added, gone, changed
ROW_MARKS = {"same": ("=", "dim"), "added": ("+", "bold green"), "gone": ("-", "bold red")}
CHANGED_MARK = ("~", "bold yellow")

FIX_STYLE = {"delivers": "bold green", "does-not-deliver": "bold red", "not-verified": "yellow"}


def row_mark(row: HopRow) -> Text:
    if row.same:
        mark, style = ROW_MARKS["same"]
    elif row.before is None:
        mark, style = ROW_MARKS["added"]
    elif row.after is None:
        mark, style = ROW_MARKS["gone"]
    else:
        mark, style = CHANGED_MARK
    return Text(mark, style)


def hop_cell(h: Hop | None) -> Text:
    """One hop in one column: index, kind, what happened, where (two lines, wrapped)."""
    if h is None:
        return Text("")
    t = Text(f"{h.index:>2} ", "dim")
    t.append(f"{h.kind} ", "cyan")
    t.append(h.summary, "" if h.ok else "bold red")
    t.append(f"\n   {h.netns_label}" + (f" {h.interface}" if h.interface else ""), "dim")
    return t


def comparison_rows(c: Comparison) -> list[tuple[Text, Text, Text]]:
    """(mark, before, after) per aligned hop."""
    return [(row_mark(r), hop_cell(r.before), hop_cell(r.after)) for r in c.rows]


def change_lines(applied: list[Applied]) -> list[Text]:
    """Each change and the namespace it went to (cntrace chose the path's host, or it was named)."""
    out = []
    for n, a in enumerate(applied, 1):
        t = Text(f"change {n}: ", "bold")
        t.append(a.change.text, "yellow")
        t.append(f"  ({a.change.kind} {where(a)})", "dim")
        out.append(t)
    return out


def _verdict(p: Path) -> Text:
    v = p.verdict
    t = Text(v.status.upper(), STATUS_STYLE.get(v.status, "bold"))
    at = f" at hop {v.at_hop}" if v.at_hop else ""
    t.append(f"{at}: {v.summary}")
    return t


def difference_lines(c: Comparison) -> list[Text]:
    """Verdict before -> after, the decisive rules when they differ, findings gone and left."""
    line = Text(" before ", "bold reverse")
    line.append(" ")
    line.append_text(_verdict(c.before))
    out = [line]
    line = Text(" after  ", "bold reverse")
    line.append(" ")
    line.append_text(_verdict(c.after))
    out.append(line)
    if c.rule_changed:
        for label, p in (("before", c.before), ("after", c.after)):
            r = p.verdict.rule
            text = f"{r.table}/{r.chain} #{r.position}: {r.text}" if r else "none"
            out.append(Text(f"  decisive rule {label}: {text}", "dim"))
    if c.findings_gone:
        out.append(Text(f"  gone: {', '.join(c.findings_gone)}", "green"))
    for f in c.after.findings:
        mark, colour = SEVERITY_MARK.get(f.severity, ("-", "white"))
        t = Text(f" {mark} ", f"bold {colour}")
        t.append(f.code + (" (new)" if f.code in c.findings_new else ""), f"bold {colour}")
        t.append(f"  {f.summary}")
        out.append(t)
        if f.fix:
            out.append(Text(f"     fix: {f.fix}", "green"))
    if not c.changed:
        out.append(Text("the change makes no difference to this path", "bold"))
    return out


def fix_lines(checks: list[FixCheck]) -> list[Text]:
    """One line per finding's fix: whether, applied as a what-if, it makes the path deliver."""
    if not checks:
        return [Text("no finding on this path has a fix to check", "dim")]
    out = []
    for check in checks:
        word = {"delivers": "REPAIRS", "does-not-deliver": "DOES NOT REPAIR"}.get(
            check.status, "NOT VERIFIED"
        )
        t = Text(f" {word} ", f"{FIX_STYLE.get(check.status, 'bold')} reverse")
        t.append(f" {check.code}: ", "bold")
        if check.status == "delivers":
            t.append("applied as a what-if, the path delivers")
        else:
            t.append(check.why)
        out.append(t)
        for change in check.changes:
            out.append(Text(f"     change: {change}", "yellow"))
    return out
