"""The host as a tree: hosts, uplinks, bridges, ports, containers and published ports."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import Tree
from textual.widgets.tree import TreeNode as UINode

from cntrace.tui.views import NodeRef, TreeNode


class TopologyTree(Tree[NodeRef]):
    """Rebuilt on every snapshot; the highlighted node survives a refresh when it still exists."""

    DEFAULT_CSS = """
    TopologyTree {
        width: 2fr;
        min-width: 30;
        height: 1fr;
    }
    """

    def __init__(self) -> None:
        super().__init__("topology", data=NodeRef("info"), id="topology-tree")
        self.show_root = False
        self.auto_expand = False

    def show(self, nodes: Sequence[TreeNode]) -> None:
        keep = self.cursor_node.data if self.cursor_node is not None else None
        self.clear()
        found: UINode[NodeRef] | None = None

        def add(parent: UINode[NodeRef], node: TreeNode) -> None:
            nonlocal found
            if node.children:
                ui = parent.add(node.label, data=node.ref, expand=node.expand)
                for child in node.children:
                    add(ui, child)
            else:
                ui = parent.add_leaf(node.label, data=node.ref)
            if keep is not None and found is None and node.ref == keep and keep.kind != "info":
                found = ui

        for n in nodes:
            add(self.root, n)
        self.root.expand()
        if found is not None:
            self.move_cursor(found)
        else:
            self.cursor_line = 0
