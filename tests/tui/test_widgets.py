"""Widgets on their own, at sizes the lab fixtures do not reach (a thousand containers)."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult

from cntrace.tui.views.containers import ContainerRow
from cntrace.tui.views.topology import NodeRef, TreeNode
from cntrace.tui.widgets.containers_table import ContainersTable
from cntrace.tui.widgets.topology_tree import LAZY_CHILDREN, TopologyTree


class _One(App[None]):
    def __init__(self, widget: object) -> None:
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget  # type: ignore[misc]


def _bridge(n: int) -> list[TreeNode]:
    ports = [
        TreeNode(
            Text(f"veth{i}"),
            NodeRef("port", 1, f"veth{i}"),
            [TreeNode(Text(f"c{i}"), NodeRef("container", 100 + i, f"id{i}"))],
        )
        for i in range(n)
    ]
    return [
        TreeNode(
            Text("host"),
            NodeRef("host", 1),
            [TreeNode(Text("br0"), NodeRef("bridge", 1, "br0"), ports)],
        )
    ]


async def test_big_bridges_are_filled_in_on_expand() -> None:
    tree = TopologyTree()
    async with _One(tree).run_test(size=(80, 24)) as pilot:
        tree.show(_bridge(LAZY_CHILDREN + 10))
        await pilot.pause()
        host = tree.root.children[0]
        bridge = host.children[0]
        assert not bridge.is_expanded and len(bridge.children) == 0
        bridge.expand()
        await pilot.pause()
        assert len(bridge.children) == LAZY_CHILDREN + 10
        assert bridge.children[3].children[0].data == NodeRef("container", 103, "id3")
        # a refresh keeps the cursor on a node inside a big bridge (built eagerly then)
        tree.move_cursor(bridge.children[3])
        await pilot.pause()
        tree.show(_bridge(LAZY_CHILDREN + 10))
        await pilot.pause()
        assert tree.cursor_node is not None
        assert tree.cursor_node.data == NodeRef("port", 1, "veth3")


async def test_small_bridges_are_built_at_once() -> None:
    tree = TopologyTree()
    async with _One(tree).run_test(size=(80, 24)) as pilot:
        tree.show(_bridge(3))
        await pilot.pause()
        assert len(tree.root.children[0].children[0].children) == 3


def _rows(n: int) -> list[ContainerRow]:
    return [
        ContainerRow(
            f"id{i}",
            f"c{i:04d}",
            "lab",
            f"10.0.{i // 250}.{i % 250}/16",
            f"v{i}",
            "br0",
            "-",
            "running" if i % 7 else "gone",
        )
        for i in range(n)
    ]


async def test_containers_table_scales_and_keeps_the_cursor() -> None:
    table = ContainersTable()
    async with _One(table).run_test(size=(100, 20)) as pilot:
        table.show_rows(_rows(10_000))
        await pilot.pause()
        assert table.row_count == 10_000
        await pilot.press("end")
        assert table.selected_key == "id9999"
        assert table.scroll_y > 9_000, "the cursor's row is scrolled into view"
        await pilot.press("pageup", "up")
        key = table.selected_key
        assert key is not None and key != "id9999"
        table.show_rows(list(reversed(_rows(10_000))))
        assert table.selected_key == key, "a refresh keeps the cursor on the same container"
        assert "gone" in table.row_text(10_000 - 1 - 7)  # stopped containers say so
        await pilot.press("home")
        assert table.selected_key == "id9999" and table.scroll_y == 0
        table.show_rows([])
        assert table.selected_key is None
