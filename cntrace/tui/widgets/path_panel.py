"""The path panel: source (the selected container), a destination box, hops, verdict."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Static

from cntrace.model import Path
from cntrace.tui.messages import ConsoleMessage
from cntrace.tui.safe import safe_renderable
from cntrace.tui.views.path import path_header
from cntrace.tui.widgets.hop_detail import HopDetail
from cntrace.tui.widgets.hop_timeline import HopTimeline
from cntrace.tui.widgets.verdict_view import VerdictView


class PathPanel(Vertical):
    """Enter in the destination box asks for a path; the path controller answers with show_*.
    `w` and `f` (outside the text box) ask for a what-if on the path shown."""

    BINDINGS = [
        Binding(
            "w",
            "what_if",
            "What-if",
            tooltip="what-if: type a change (iptables, nft, ip route/link, sysctl, docker "
            "network connect...), see the path before and after side by side",
        ),
        Binding(
            "f",
            "check_fix",
            "Check fix",
            tooltip="apply the findings' fixes as a what-if: does the path deliver then?",
        ),
    ]

    DEFAULT_CSS = """
    PathPanel {
        height: 1fr;
    }
    PathPanel #path-query {
        height: 1;
    }
    PathPanel #path-source {
        width: auto;
        max-width: 40%;
        padding: 0 1 0 0;
    }
    PathPanel #path-to {
        width: 3;
    }
    PathPanel #destination {
        height: 1;
        border: none;
        padding: 0 1;
        width: 1fr;
    }
    PathPanel #destination:focus {
        background: $boost;
    }
    PathPanel #path-status {
        height: 1;
        color: $text-muted;
    }
    """

    @dataclass
    class Requested(ConsoleMessage):
        """Predict (and trace, when live) from the source to ``text``."""

        text: str

    class WhatIfAsked(ConsoleMessage):
        """`w`: open the what-if view on the path shown."""

    class FixAsked(ConsoleMessage):
        """`f`: check the findings' fixes as what-ifs."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._path: Path | None = None
        self._source = Static(Text("from: (select a container)", "dim"), id="path-source")
        self.destination = Input(
            placeholder="web:80, 10.0.0.5:443, host:8080, name udp ...", id="destination"
        )
        self._status = Static("", id="path-status")
        self.timeline = HopTimeline()
        self._hop = HopDetail(id="hop-detail")
        self.verdict = VerdictView()

    def compose(self) -> ComposeResult:
        with Horizontal(id="path-query"):
            yield self._source
            yield Static(Text("to:", "dim"), id="path-to")
            yield self.destination
        yield self._status
        yield self.timeline
        yield self._hop
        yield self.verdict

    def set_source(self, name: str | None) -> None:
        label = Text("from: ", "dim")
        if name is None:
            label.append("(select a container)", "dim")
        else:
            label.append(name, "bold")
        self._source.update(safe_renderable(label))

    def set_status(self, text: Text | str) -> None:
        self._status.update(safe_renderable(text))

    def focus_destination(self) -> None:
        self.destination.focus()

    def show_path(self, path: Path, status: Text | str | None = None) -> None:
        self._path = path
        self.timeline.show(path)
        self._hop.show(path, self.timeline.hop_index)
        self.verdict.show(path)
        head = path_header(path)
        if status:
            head.append("  ")
            head.append(status if isinstance(status, Text) else Text(status, "dim"))
        self.set_status(head)

    def show_error(self, text: str) -> None:
        self._path = None
        self.timeline.show(None)
        self._hop.show(None, None)
        self.verdict.message(text, error=True)
        self.set_status("")

    def action_what_if(self) -> None:
        self.post_message(self.WhatIfAsked())

    def action_check_fix(self) -> None:
        self.post_message(self.FixAsked())

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table is self.timeline:
            self._hop.show(self._path, self.timeline.hop_index)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "destination":
            event.stop()
            self.post_message(self.Requested(event.value))
