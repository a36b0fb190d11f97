"""The main screen: containers, topology, path and drops as numbered tabs over one status line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, TabbedContent, TabPane

from cntrace.tui.messages import ConsoleMessage
from cntrace.tui.widgets.containers_table import ContainersTable
from cntrace.tui.widgets.details_pane import DetailsPane
from cntrace.tui.widgets.drops_panel import DropsPanel
from cntrace.tui.widgets.filter_input import FilterInput
from cntrace.tui.widgets.key_bar import KeyBar
from cntrace.tui.widgets.path_panel import PathPanel
from cntrace.tui.widgets.status_bar import StatusBar
from cntrace.tui.widgets.topology_tree import TopologyTree


class MainScreen(Screen[None]):
    """Lays the tabs out and moves the focus; what a key asks for goes out as a message to the
    tabs' controllers (cntrace.tui.controllers), which drive the widgets."""

    @dataclass
    class TabShown(Message):
        """Tab ``name`` became the active one."""

        name: str

    class RefreshAsked(ConsoleMessage):
        """`R`: read discovery again now."""

    class ExportAsked(ConsoleMessage):
        """`e`: write the path on screen as a bug report."""

    class DecidingRuleAsked(ConsoleMessage):
        """`r` outside the topology tab: the rule that decided the path's verdict."""

    class NodeRulesAsked(ConsoleMessage):
        """`r` on the topology tab: the rules touching the highlighted node."""

    BINDINGS = [
        Binding("1", "tab('containers')", "Containers", show=False, tooltip="containers tab"),
        Binding(
            "2",
            "tab('topology')",
            "Topology",
            show=False,
            tooltip="topology tab: the host as a tree, details of the selected node",
        ),
        Binding(
            "3",
            "tab('path')",
            "Path",
            show=False,
            tooltip="path tab: from the selected container to a destination you type",
        ),
        Binding(
            "4",
            "tab('drops')",
            "Drops",
            show=False,
            tooltip="drops tab: kernel drops attributed to containers (live only)",
        ),
        Binding(
            "p",
            "path",
            "Path",
            tooltip="path from the selected container: type the destination",
        ),
        Binding("slash", "filter", "Filter", tooltip="filter containers as you type"),
        Binding(
            "r",
            "open_rule",
            "Rule",
            tooltip="rules view: the path's deciding rule (path tab), or the rules touching "
            "the selected node (topology tab)",
        ),
        Binding(
            "e",
            "export",
            "Export",
            tooltip="write the path on screen with its snapshot as a JSON bug report; "
            "the file name is shown",
        ),
        Binding("R", "rediscover", "Refresh now", show=False, tooltip="re-read discovery now"),
        Binding("escape", "leave_input", "Leave the box", show=False, tooltip="leave a text box"),
    ]

    DEFAULT_CSS = """
    MainScreen #tabs, MainScreen #tabs > ContentSwitcher {
        height: 1fr;
    }
    MainScreen TabPane {
        padding: 0;
        height: 1fr;
    }
    MainScreen #topology-split {
        height: 1fr;
    }
    """

    def __init__(self, on_ready: Callable[[], None]) -> None:
        """``on_ready`` runs once the screen is mounted, before its first frame is painted (so
        a snapshot already in memory is in that frame)."""
        super().__init__()
        self._on_ready = on_ready
        self.status = StatusBar("starting…", id="status")
        self.tabs = TabbedContent(initial="containers", id="tabs")
        self.filter_box = FilterInput()
        self.table = ContainersTable(id="containers-table")
        self.topo_tree = TopologyTree()
        self.details = DetailsPane()
        self.path_panel = PathPanel(id="path-panel")
        self.drops = DropsPanel()
        self._want_destination = False  # `p` from another tab: into the box once shown
        self._want_filter = False  # `/` from another tab: into the filter once shown

    def compose(self) -> ComposeResult:
        yield self.status
        with self.tabs:
            with TabPane("1 Containers", id="containers"), Vertical(id="containers-column"):
                # The filter box, hidden until `/`, is mounted after the first frame too.
                yield self.table
            # The hidden tabs' widgets are mounted after the first frame (mount_hidden_tabs):
            # they exist from the start, so the controllers fill them before that.
            yield TabPane("2 Topology", id="topology")
            yield TabPane("3 Path", id="path")
            yield TabPane("4 Drops", id="drops")
        yield KeyBar()

    def mount_hidden_tabs(self) -> None:
        """Mount what the first frame does not show: the hidden tabs' widgets (a tenth of the
        first frame's work) and the filter box, hidden until `/` (an Input: ~20 ms more)."""
        if self.filter_box.parent is not None:
            return
        self.query_one("#containers-column", Vertical).mount(self.filter_box, before=self.table)
        self.query_one("#topology", TabPane).mount(
            Horizontal(self.topo_tree, self.details, id="topology-split")
        )
        self.query_one("#path", TabPane).mount(self.path_panel)
        self.query_one("#drops", TabPane).mount(self.drops)

    # ------------------------------------------------------------------ actions

    def action_tab(self, name: str) -> None:
        self.tabs.active = name

    def action_path(self) -> None:
        self.open_path()

    def open_path(self) -> None:
        """Show the path tab with the cursor in the destination box."""
        if self.tabs.active == "path":
            self.path_panel.focus_destination()
        else:
            self._want_destination = True
            self.tabs.active = "path"

    def action_filter(self) -> None:
        if self.filter_box.parent is None:  # `/` before the first frame was out
            self.mount_hidden_tabs()
            self.call_after_refresh(self.action_filter)
        elif self.tabs.active == "containers":
            self.filter_box.open()
        else:
            self._want_filter = True  # opened once the tab is shown (it takes the focus)
            self.tabs.active = "containers"

    def action_open_rule(self) -> None:
        if self.tabs.active == "topology":
            self.post_message(self.NodeRulesAsked())
        else:
            self.post_message(self.DecidingRuleAsked())

    def action_export(self) -> None:
        self.post_message(self.ExportAsked())

    def action_rediscover(self) -> None:
        self.post_message(self.RefreshAsked())

    def action_leave_input(self) -> None:
        focused = self.focused
        if isinstance(focused, Input):
            if self.tabs.active == "path":
                self.path_panel.timeline.focus()
            else:
                self.table.focus()

    # ------------------------------------------------------------------ events

    def on_mount(self) -> None:
        self.table.focus()
        self._on_ready()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        name = event.pane.id or ""
        self.post_message(self.TabShown(name))
        if name == "containers":
            if self._want_filter:
                self._want_filter = False
                self.filter_box.open()
            else:
                self.table.focus()
        elif name == "topology":
            self.topo_tree.focus()
        elif name == "path":
            # Only `p` (or enter on a container) lands in the destination box: after `3` the
            # number keys must keep switching tabs.
            if self._want_destination:
                self._want_destination = False
                self.path_panel.focus_destination()
            else:
                self.path_panel.timeline.focus()
        elif name == "drops":
            self.drops.table.focus()

    def on_filter_input_done(self, event: FilterInput.Done) -> None:
        self.table.focus()

    def on_containers_table_chosen(self, event: ContainersTable.Chosen) -> None:
        self.open_path()
