"""The main screen: containers, topology, path and drops as numbered tabs over one status line."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, TabbedContent, TabPane, Tree

from cntrace.tui.views import NodeRef
from cntrace.tui.widgets.containers_table import ContainersTable
from cntrace.tui.widgets.details_pane import DetailsPane
from cntrace.tui.widgets.drops_panel import DropsPanel
from cntrace.tui.widgets.filter_input import FilterInput
from cntrace.tui.widgets.hop_timeline import HopTimeline
from cntrace.tui.widgets.path_panel import PathPanel
from cntrace.tui.widgets.status_bar import StatusBar
from cntrace.tui.widgets.topology_tree import TopologyTree

if TYPE_CHECKING:
    from cntrace.tui.app import CntraceApp

TABS = ("containers", "topology", "path", "drops")


class MainScreen(Screen[None]):
    """Widgets only; the app owns the data and the workers and calls back in here."""

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

    @property
    def cntrace(self) -> CntraceApp:
        return cast("CntraceApp", self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar("starting…", id="status")
        with TabbedContent(initial="containers", id="tabs"):
            with TabPane("1 Containers", id="containers"), Vertical():
                yield FilterInput()
                yield ContainersTable(id="containers-table")
            with TabPane("2 Topology", id="topology"), Horizontal(id="topology-split"):
                yield TopologyTree()
                yield DetailsPane()
            with TabPane("3 Path", id="path"):
                yield PathPanel(id="path-panel")
            with TabPane("4 Drops", id="drops"):
                yield DropsPanel()
        yield Footer()

    # ------------------------------------------------------------------ widget access

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    @property
    def table(self) -> ContainersTable:
        return self.query_one(ContainersTable)

    @property
    def filter_box(self) -> FilterInput:
        return self.query_one(FilterInput)

    @property
    def topo_tree(self) -> TopologyTree:
        return self.query_one(TopologyTree)

    @property
    def details(self) -> DetailsPane:
        return self.query_one(DetailsPane)

    @property
    def path_panel(self) -> PathPanel:
        return self.query_one(PathPanel)

    @property
    def drops(self) -> DropsPanel:
        return self.query_one(DropsPanel)

    @property
    def tabs(self) -> TabbedContent:
        return self.query_one(TabbedContent)

    # ------------------------------------------------------------------ actions

    def action_tab(self, name: str) -> None:
        self.tabs.active = name

    _want_destination = False

    def action_path(self) -> None:
        self.open_path()

    def open_path(self) -> None:
        """Show the path tab with the cursor in the destination box."""
        if self.tabs.active == "path":
            self.path_panel.focus_destination()
        else:
            self._want_destination = True
            self.tabs.active = "path"

    _want_filter = False

    def action_filter(self) -> None:
        if self.tabs.active == "containers":
            self.filter_box.open()
        else:
            self._want_filter = True  # opened once the tab is shown (it takes the focus)
            self.tabs.active = "containers"

    def action_open_rule(self) -> None:
        self.cntrace.open_deciding_rule()

    def action_export(self) -> None:
        self.cntrace.export_report()

    def action_rediscover(self) -> None:
        self.cntrace.rediscover(reason="asked")

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
        self.cntrace.screen_ready()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        name = event.pane.id or ""
        self.cntrace.tab_shown(name)
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

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.cntrace.set_filter(event.value)

    def on_filter_input_done(self, event: FilterInput.Done) -> None:
        self.table.focus()

    def on_containers_table_chosen(self, event: ContainersTable.Chosen) -> None:
        self.cntrace.choose_source(event.key, go=True)

    def on_containers_table_highlighted(self, event: ContainersTable.Highlighted) -> None:
        self.cntrace.choose_source(event.key, go=False)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[NodeRef]) -> None:
        ref = event.node.data
        if ref is not None:
            self.cntrace.node_highlighted(ref)

    def on_path_panel_requested(self, event: PathPanel.Requested) -> None:
        self.cntrace.request_path(event.text)

    def on_hop_timeline_open_rule(self, event: HopTimeline.OpenRule) -> None:
        self.cntrace.open_hop_rule(event.index)

    def on_drops_panel_settings(self, event: DropsPanel.Settings) -> None:
        self.cntrace.drop_settings(paused=event.paused, everything=event.everything)
