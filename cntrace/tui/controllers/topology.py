"""The topology tab: the host as a tree, the details of the highlighted node, its rules."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from rich.text import Text

from cntrace.model import Snapshot
from cntrace.tui.controllers.base import Controller, Reading, cancelled, handles
from cntrace.tui.screens.main import MainScreen
from cntrace.tui.views.containers import container_by_id
from cntrace.tui.views.details import details
from cntrace.tui.views.rules import RuleKey, rule_key
from cntrace.tui.views.topology import NodeRef, TreeNode, topology_nodes
from cntrace.tui.widgets.topology_tree import TopologyTree

if TYPE_CHECKING:
    from cntrace.tui.app import CntraceApp


class TopologyController(Controller):
    """Builds the tree once per reading, and only while its tab is shown (or when it is next)."""

    tab = "topology"

    def __init__(self, app: CntraceApp) -> None:
        super().__init__(app)
        self.node: NodeRef | None = None  # the highlighted node
        self._dirty = True  # the tree is older than the snapshot

    @property
    def tree(self) -> TopologyTree:
        return self.main.topo_tree

    def snapshot_changed(self, reading: Reading) -> None:
        self._dirty = True
        if self.app.active_tab == self.tab:
            self._build()

    def shown(self) -> None:
        if self._dirty:
            self._build()
            return
        ref = self._selected_ref()
        cur = self.tree.cursor_node
        if ref is not None and (cur is None or cur.data != ref):
            self.tree.reveal(ref)

    def _build(self) -> None:
        """Build the tree's nodes in a worker (a thousand containers take a fifth of a second),
        then hand them to the tree."""
        snap = self.app.snapshot
        if snap is None:
            return
        self._dirty = False

        def build() -> None:
            nodes = topology_nodes(snap)
            if not cancelled():
                self.post(self._built, snap, nodes)

        self.run(build, group="discovery", name="topology")

    def _selected_ref(self) -> NodeRef | None:
        """The tree node of the container selected in the table (the path's source)."""
        snap, key = self.app.snapshot, self.app.source_key
        c = container_by_id(snap, key) if snap and key else None
        return NodeRef("container", c.netns, c.id) if c is not None else None

    def _built(self, snap: Snapshot, nodes: list[TreeNode]) -> None:
        if snap is not self.app.snapshot:
            return  # a newer snapshot is on its way to the tree
        self.tree.show(nodes, prefer=self._selected_ref())
        node = self.tree.cursor_node
        if node is not None and node.data is not None:
            self._highlight(node.data)

    @handles(TopologyTree.Highlighted)
    def _highlighted(self, message: TopologyTree.Highlighted) -> None:
        self._highlight(message.ref)

    def _highlight(self, ref: NodeRef) -> None:
        self.node = ref
        snap = self.app.snapshot
        if snap is None:
            return
        if ref.kind == "container" and ref.name:
            self.app.select(ref.name)
        try:
            self.main.details.show(details(snap, ref))
        except Exception as exc:  # one odd namespace must not break the pane
            self.main.details.show(Text(f"cannot show details: {exc}", "bold red"))

    @handles(MainScreen.NodeRulesAsked)
    def _rules_asked(self, message: MainScreen.NodeRulesAsked) -> None:
        """`r` on this tab: the rules touching the highlighted node, marked."""
        from cntrace.topology import Topology, netfilter_for
        from cntrace.tui.screens.rules import RulesScreen

        snap, ref = self.app.snapshot, self.node
        if snap is None or ref is None:
            self.app.post_message(MainScreen.DecidingRuleAsked())  # as on the other tabs
            return
        marked: set[RuleKey] = set()
        netns = ref.netns
        what = ref.name
        c = container_by_id(snap, ref.name) if ref.kind == "container" and ref.name else None
        if c is not None:
            nat = netfilter_for(snap, c)
            netns = nat.netns if nat.netns is not None else c.host_netns
            marked = {rule_key(r) for r in (*nat.dnat, *nat.egress, *nat.filter)}
            what = c.name
        elif ref.kind == "container":
            what = "the container"
        elif ref.kind in ("bridge", "port", "uplink") and ref.name and netns is not None:
            ns = Topology(snap).ns(netns)
            if ns is not None and not ns.ruleset.empty:
                with contextlib.suppress(Exception):
                    from cntrace import netfilter

                    nf = netfilter.load(ns.ruleset)
                    for refs in netfilter.rules_touching(nf, interfaces=[ref.name]).values():
                        marked |= {rule_key(r) for r in refs}
        if netns is None:
            self.app.notify("no namespace for this node", timeout=3)
            return
        self.app.push_screen(RulesScreen(snap, netns, marked, f"rules touching {what}"))
