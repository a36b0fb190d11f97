"""A Path as text a person reads during an incident, and as versioned JSON.

The text reads like the seeds' diagram: numbered hops with the namespace, the interface and the
packet's addresses as they are at that hop (a NAT rewrite is highlighted where it happens), then
the verdict in one sentence and each finding with its evidence and fix.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cntrace import codec
from cntrace.model import Hop, Packet, Path
from cntrace.render import safe

if TYPE_CHECKING:  # rich is imported where text is drawn: `path --json` never loads it
    from rich.console import Console
    from rich.text import Text

STATUS_STYLE = {
    "delivered": "bold green",
    "refused": "bold red",
    "dropped": "bold red",
    "no-route": "bold red",
    "unreachable": "bold red",
    "timeout": "bold red",
    "unknown": "bold yellow",
}
LIVE_EVIDENCE = "live: "  # hop evidence a live trace added (ARP/NDP frames, why not watched)
SEVERITY_MARK = {"error": ("x", "red"), "warning": ("!", "yellow"), "info": ("i", "blue")}


def to_json(path: Path) -> str:
    return json.dumps(to_document(path), indent=2) + "\n"


def to_document(path: Path) -> dict[str, Any]:
    """The `cntrace.path/v2` document (docs/schemas/path.schema.json)."""
    doc: dict[str, Any] = codec.to_plain(path)
    # The Kubernetes keys are present only where they say something (schema: optional).
    if doc.get("service") is None:
        doc.pop("service", None)
    if not doc.get("branches"):
        doc.pop("branches", None)
    for end in (doc["source"], doc["destination"]):
        for key in ("pod", "namespace"):
            if end.get(key) is None:
                end.pop(key, None)
    return doc


def _addr(ip: str, port: int | None) -> str:
    ip = f"[{ip}]" if ":" in ip else ip
    return f"{ip}:{port}" if port is not None else ip


def _packet_text(p: Packet, prev: Packet | None) -> Text:
    from rich.text import Text  # noqa: PLC0415

    src, dst = _addr(p.src, p.sport), _addr(p.dst, p.dport)
    text = Text(f"{p.proto} ")
    changed_src = prev is not None and (prev.src, prev.sport) != (p.src, p.sport)
    changed_dst = prev is not None and (prev.dst, prev.dport) != (p.dst, p.dport)
    text.append(src, style="bold magenta" if changed_src else "")
    text.append(" -> ")
    text.append(dst, style="bold magenta" if changed_dst else "")
    return text


def _observed(h: Hop) -> Text:
    from rich.text import Text  # noqa: PLC0415

    if h.observed is None:
        return Text("")
    if h.watched is False:
        return Text("not watched", style="dim")
    if h.observed:
        if h.t_us is None and h.kind == "netfilter" and h.watched:
            return Text("traced", style="green")  # nftables tracing saw this rule decide
        if h.t_us is None:  # nothing watches this step itself: the packet was seen beyond it
            return Text("passed", style="dim green")
        return Text(f"seen +{h.t_us / 1000:.3f}ms", style="green")
    return Text("not seen", style="red" if not h.ok else "yellow")


def _safe(path: Path) -> Path:
    """``path`` with its strings escaped for the terminal (the very same object when clean)."""
    plain = codec.to_plain(path)
    if not safe.any_unsafe(plain):
        return path
    return codec.from_plain(Path, safe.tree(plain))


def render(path: Path, console: Console) -> None:
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    path = _safe(path)
    src, dst = path.source, path.destination
    target = dst.name or dst.ip or dst.asked
    if dst.ip and dst.name and dst.ip != dst.name:
        target = f"{dst.name} ({dst.ip})"
    proto = dst.protocol or ""
    port = f"/{dst.port}" if dst.port is not None else ""
    head = Text()
    head.append("cntrace path ", style="bold")
    head.append(f"{src.name or src.asked} -> {target} {proto}{port}")
    head.append(f"   [{path.mode}]", style="dim")
    console.print(head)

    live = path.mode == "live"
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("where", no_wrap=True)
    table.add_column("step")
    if live:
        table.add_column("live", no_wrap=True)
    prev: Packet | None = None  # the packet as last shown
    prev_predicted: Packet | None = None
    direction = "request"
    for h in path.hops:
        if h.direction != direction:
            direction = h.direction
            table.add_row("", Text("reply", style="bold dim"), "", *([""] if live else []))
            prev = prev_predicted = None
        step = Text(f"{h.kind:<9} ", style="cyan")
        step.append(h.summary, style="" if h.ok else "red")
        # Seen packets win; an unseen hop that predicts no change keeps what was last seen.
        if h.observed_packet is not None:
            packet = h.observed_packet
        elif prev is not None and h.packet == prev_predicted:
            packet = prev
        else:
            packet = h.packet
        prev_predicted = h.packet
        if prev is None or packet != prev:
            # The packet is shown where it starts and wherever it changes (NAT, reply).
            step.append("\n          ")
            step.append_text(_packet_text(packet, prev))
        if h.rule is not None and h.kind in ("netfilter", "nat") and not h.rule.policy:
            step.append(f"\n          {h.rule.text}", style="dim")  # a policy: in the summary
        if h.reason:
            step.append(
                f"\n          kernel: {h.reason}" + (f" in {h.location}" if h.location else ""),
                style="bold red",
            )
        for said in h.evidence if live else ():  # what the trace saw here, or why it could not
            if said.startswith(LIVE_EVIDENCE):
                step.append(f"\n          {said[len(LIVE_EVIDENCE) :]}", style="yellow")
        where = h.netns_label + (f" {h.interface}" if h.interface else "")
        row: list[str | Text] = [str(h.index), Text(where), step]
        if live:
            row.append(_observed(h))
        table.add_row(*row)
        prev = packet
    console.print(table)

    v = path.verdict
    line = Text("\nverdict: ", style="bold")
    line.append(v.status.upper(), style=STATUS_STYLE.get(v.status, "bold"))
    at = f" at hop {v.at_hop}" if v.at_hop else ""
    line.append(f"{at}: {v.summary}")
    if v.reason and v.reason not in ("left-host",):
        line.append(f"  [{v.reason}]", style="dim")
    console.print(line)
    if v.rule is not None:
        console.print(Text(f"  rule: {v.rule.describe()}", style="dim"))
    _service(path, console)
    for f in path.findings:
        mark, color = SEVERITY_MARK.get(f.severity, ("-", "white"))
        t = Text(f"\n {mark} ", style=f"bold {color}")
        t.append(f.code, style=f"bold {color}")
        t.append(f"  {f.summary}")
        console.print(t)
        for e in f.evidence:
            console.print(Text(f"     evidence: {e}", style="dim"))
        if f.fix:
            console.print(Text(f"     fix: {f.fix}", style="green"))
    for note in path.notes:
        console.print(Text(f"note: {note}", style="dim"))
    if path.stats:
        stats = ", ".join(f"{k}={v}" for k, v in sorted(path.stats.items()))
        console.print(Text(f"trace: {stats}", style="dim"))


def _fork_hop(path: Path) -> int | None:
    """The first hop where the branches part (the random choice)."""
    if len(path.branches) < 2:
        return None
    a, b = path.branches[0].hops, path.branches[1].hops
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i + 1
    return min(len(a), len(b)) or None


def _service(path: Path, console: Console) -> None:
    """The Kubernetes Service and, when the walk forked, every endpoint with its verdict."""
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    svc = path.service
    if svc is not None:
        count = f", {svc.endpoints} endpoint{'s' if svc.endpoints != 1 else ''}"
        console.print(
            Text(
                f"service: {svc.ref} ({svc.kind} {_addr(svc.address, svc.port)}/{svc.protocol}, "
                f"kube-proxy {svc.proxy} mode{count})",
                style="bold",
            )
        )
    if not path.branches:
        return
    at = _fork_hop(path)
    console.print(
        Text(
            f"fork{f' at hop {at}' if at else ''}: the kernel picks one way per connection "
            f"at random; the hops above are branch 1's",
            style="dim",
        )
    )
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for col in ("", "chance", "endpoint", "pod", "verdict"):
        table.add_column(col, no_wrap=col != "verdict")
    for i, b in enumerate(path.branches, 1):
        verdict = Text(b.verdict.status.upper(), style=STATUS_STYLE.get(b.verdict.status, "bold"))
        verdict.append(f": {b.verdict.summary}")
        if b.chosen:
            verdict.append("  <- the kernel chose this", style="bold green")
        elif b.chosen is False:
            verdict.append("  (not taken)", style="dim")
        table.add_row(f"  {i}", f"{b.probability:.0%}", b.endpoint or "-", b.pod or "-", verdict)
    console.print(table)
