"""Widgets on their own, at sizes the lab fixtures do not reach (a thousand containers)."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widget import Widget

from cntrace.tui.views.containers import ContainerRow
from cntrace.tui.views.topology import NodeRef, TreeNode
from cntrace.tui.widgets.containers_table import ContainersTable
from cntrace.tui.widgets.key_bar import KeyBar
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


class _Focusable(Widget, can_focus=True):
    BINDINGS = [Binding("w", "app.mark('w')", "Widget key")]


class _Keys(App[None]):
    """Two shown bindings (one disabled by check_action) and one hidden, and a focusable widget
    whose own binding joins the bar while it has the focus."""

    BINDINGS = [
        Binding("x", "mark('x')", "Mark"),
        Binding("y", "mark('y')", "Never"),
        Binding("z", "mark('z')", "Hidden", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.pressed: list[str] = []
        self.allow_y = False
        self.bar = KeyBar()

    def compose(self) -> ComposeResult:
        yield _Focusable()
        yield self.bar

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return None if parameters == ("y",) and not self.allow_y else True  # None: dimmed

    def action_mark(self, what: str) -> None:
        self.pressed.append(what)


def _line(bar: KeyBar) -> str:
    return "".join(s.text for s in bar.render_line(0))


def _dimmed(bar: KeyBar, text: str) -> bool:
    (seg,) = [s for s in bar.render_line(0) if s.text == text]
    return bool(seg.style and seg.style.dim)


async def test_key_bar_lists_the_shown_keys_and_presses_a_clicked_one() -> None:
    app = _Keys()
    async with app.run_test(size=(60, 5)) as pilot:
        app.set_focus(None)
        await pilot.pause()
        shown = [(k, d, on) for k, _s, d, on in app.bar.entries()]
        assert ("x", "Mark", True) in shown and ("y", "Never", False) in shown
        assert {"z", "w"}.isdisjoint(k for k, _d, _on in shown)  # hidden; not focused
        line = _line(app.bar)
        assert " x Mark " in line and " y Never " in line and "Hidden" not in line
        await pilot.click(KeyBar, offset=(line.index(" x Mark ") + 1, 0))
        await pilot.click(KeyBar, offset=(line.index(" y Never ") + 1, 0))
        await pilot.pause()
        assert app.pressed == ["x"]  # y is disabled: clicking it presses nothing
        assert _dimmed(app.bar, " y ") and not _dimmed(app.bar, " x ")
        app.allow_y = True
        app.refresh_bindings()  # nothing else changes: the bar must redraw on its own
        await pilot.pause()
        assert not _dimmed(app.bar, " y ")
        app.query_one(_Focusable).focus()  # the bindings change: the bar is drawn again
        await pilot.pause()
        assert " w Widget key " in _line(app.bar)
