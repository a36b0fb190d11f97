"""The host as a tree: hosts, uplinks, bridges, ports, containers and published ports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text, TextType
from textual.widgets import Tree
from textual.widgets.tree import TreeNode as UINode

from cntrace.render.safe import term
from cntrace.tui.messages import ConsoleMessage
from cntrace.tui.safe import safe_text
from cntrace.tui.views.topology import NodeRef, TreeNode

LAZY_CHILDREN = 40  # a bridge with more ports than this is filled in when it is expanded


def _holds(node: TreeNode, ref: NodeRef) -> bool:
    return node.ref == ref or any(_holds(c, ref) for c in node.children)


class TopologyTree(Tree[NodeRef]):
    """Rebuilt on every snapshot; the highlighted node survives a refresh when it still exists.

    Big subtrees (a bridge with a thousand ports) start collapsed and get their nodes when first
    expanded, so building the tree never stalls the screen.
    """

    DEFAULT_CSS = """
    TopologyTree {
        width: 2fr;
        min-width: 30;
        height: 1fr;
    }
    """

    @dataclass
    class Highlighted(ConsoleMessage):
        """The cursor moved to the node of ``ref``."""

        ref: NodeRef

    def __init__(self) -> None:
        super().__init__("topology", data=NodeRef("info"), id="topology-tree")
        self.show_root = False
        self.auto_expand = False
        self._pending: dict[int, list[TreeNode]] = {}  # UI node id -> children not built yet

    def process_label(self, label: TextType) -> Text:
        """Every label is literal text (never markup), escaped: names come from the kernel."""
        return super().process_label(
            safe_text(label) if isinstance(label, Text) else Text(term(label))
        )

    def show(self, nodes: Sequence[TreeNode], prefer: NodeRef | None = None) -> None:
        """Replace the tree; the cursor stays on its node, else goes to ``prefer``."""
        keep = self.cursor_node.data if self.cursor_node is not None else None
        if keep is None or keep.kind == "info" or self.cursor_line <= 0:
            keep = prefer or keep
        if keep is not None and keep.kind == "info":
            keep = None
        self.clear()
        self._pending.clear()
        found: UINode[NodeRef] | None = None

        def add(parent: UINode[NodeRef], node: TreeNode) -> None:
            nonlocal found
            if node.children:
                lazy = len(node.children) > LAZY_CHILDREN and not (keep and _holds(node, keep))
                ui = parent.add(node.label, data=node.ref, expand=node.expand and not lazy)
                if lazy:
                    self._pending[ui.id] = list(node.children)
                else:
                    for child in node.children:
                        add(ui, child)
            else:
                ui = parent.add_leaf(node.label, data=node.ref)
            if keep is not None and found is None and node.ref == keep:
                found = ui

        for n in nodes:
            add(self.root, n)
        self.root.expand()
        if found is not None:
            self.call_after_refresh(self.move_cursor, found)  # once its line is laid out
        else:
            self.cursor_line = 0

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[NodeRef]) -> None:
        if event.node.data is not None:
            self.post_message(self.Highlighted(event.node.data))

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[NodeRef]) -> None:
        self._fill(event.node)

    def _fill(self, node: UINode[NodeRef]) -> None:
        children = self._pending.pop(node.id, None)
        if children is None:
            return
        for child in children:
            self._add_all(node, child)

    def reveal(self, ref: NodeRef) -> bool:
        """Put the cursor on ``ref``'s node, filling in and expanding what hides it."""

        def find(node: UINode[NodeRef]) -> UINode[NodeRef] | None:
            if node.data == ref:
                return node
            pending = self._pending.get(node.id)
            if pending is not None and any(_holds(c, ref) for c in pending):
                self._fill(node)
            for child in node.children:
                hit = find(child)
                if hit is not None:
                    return hit
            return None

        hit = find(self.root)
        if hit is None:
            return False
        parent = hit.parent
        while parent is not None:
            parent.expand()
            parent = parent.parent
        self.call_after_refresh(self.move_cursor, hit)
        return True

    def _add_all(self, parent: UINode[NodeRef], node: TreeNode) -> None:
        if node.children:
            ui = parent.add(node.label, data=node.ref, expand=node.expand)
            for child in node.children:
                self._add_all(ui, child)
        else:
            parent.add_leaf(node.label, data=node.ref)
