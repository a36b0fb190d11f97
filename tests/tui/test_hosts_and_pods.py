"""The console on shapes beyond one Docker host: Kubernetes pods grouped in the containers list
(issue 18) and a host inside a host in the topology tree (issue 12), on recorded snapshots."""

from __future__ import annotations

from pathlib import Path as FsPath

from test_pilot import _plain
from textual.widgets.tree import TreeNode as UINode
from tuikit import settle, type_text, wait_for

from cntrace.sources import recorded
from cntrace.tui.app import CntraceApp, build_app
from cntrace.tui.source import RecordedSource
from cntrace.tui.views.topology import NodeRef

FIXTURES = FsPath(__file__).resolve().parents[2] / "fixtures"
SIZE = (120, 30)


def _app(path: FsPath) -> CntraceApp:
    return build_app(RecordedSource(recorded.load(str(path)), path.name), None)


async def test_pods_are_grouped_with_their_containers() -> None:
    app = _app(FIXTURES / "k8s" / "node-bridge-iptables.json")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.main.table
        lines = [table.row_text(i).strip() for i in range(table.row_count)]
        names = [ln.split("  ")[0] for ln in lines]
        at = names.index("pod default/hp")
        assert names[at + 1] == "└ web", "the pod's container right under its sandbox"
        assert names[at + 2] == "pod default/hp-clash"
        assert names.index("pod tools/client") + 1 == names.index("└ shell")
        pods = [r for r in app.containers.rows if r.pod == "default/web-a"]
        assert [r.name for r in pods] == ["pod default/web-a", "  └ web"]
        # the pod's name finds its containers too
        await pilot.press("slash")
        await type_text(pilot, "web-a")
        await wait_for(pilot, lambda: table.row_count == 2)
        assert "└ web" in table.row_text(1)
        # a container row is a path source like any other
        await pilot.press("enter", "down", "p")
        await pilot.pause()
        assert "default/web-a/web" in _plain(app.main.path_panel.query_one("#path-source"))


def _find(node: UINode[NodeRef], kind: str, label: str) -> UINode[NodeRef] | None:
    ref = node.data
    if ref is not None and ref.kind == kind and str(node.label).startswith(label):
        return node
    for child in node.children:
        found = _find(child, kind, label)
        if found is not None:
            return found
    return None


async def test_a_nested_node_is_a_host_inside_its_host() -> None:
    app = _app(FIXTURES / "snapshots" / "nested" / "healthy.json")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        root = app.main.topo_tree.root
        outer = _find(root, "host", "cntrace-lab.host")
        node = _find(root, "host", "node")
        assert outer is not None and node is not None
        assert node.parent is outer, "the node's host sits under the host holding its uplink"
        assert "host inside cntrace-lab.host" in str(node.label)
        assert [str(c.label) for c in root.children] == [str(outer.label)]
        # the nested host's own bridge and containers are under it
        bridge = _find(node, "bridge", "bridge cni0")
        assert bridge is not None
        assert _find(bridge, "container", "web") is not None
        assert _find(bridge, "container", "client") is not None
        # and its details are the nested namespace's
        app.main.topo_tree.move_cursor(node)
        await settle(pilot)
        await wait_for(pilot, lambda: app.topology.node == node.data)
        assert "10.230.0.2" in _plain(app.main.details), "the nested host's own uplink"
