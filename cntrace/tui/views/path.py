"""The path tab: hop rows, one hop's detail, the verdict with its findings, the deciding rule."""

from __future__ import annotations

from rich.text import Text

from cntrace.model import Hop, Packet, Path, RuleRef
from cntrace.render.path import SEVERITY_MARK, STATUS_STYLE


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
                t.append(f"\nrule {h.rule.describe()}", "dim")
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
        t.append(r.describe())
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
