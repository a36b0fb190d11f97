"""The console driven by keys (textual pilot), built from recorded lab snapshots via the factory."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path as FsPath

import jsonschema
import pytest
from clirun import run_json
from rich.style import Style
from textual.geometry import Region
from textual.widget import Widget
from tuikit import (
    LAB,
    LiveRecordedSource,
    ScriptedTracer,
    lab_drops,
    lab_snapshot,
    path_to,
    settle,
    to_container_node,
    type_text,
    wait_for,
)

from cntrace import codec
from cntrace.model import REPORT_SCHEMA
from cntrace.render.path import to_document
from cntrace.tui.app import CntraceApp, build_app
from cntrace.tui.screens.help import HelpScreen, help_sections, key_label
from cntrace.tui.screens.rules import RulesScreen
from cntrace.tui.source import RecordedSource
from cntrace.tui.tracer import KernelDrop
from cntrace.tui.widgets.rules_table import RulesTable

MakeApp = Callable[..., CntraceApp]
REPO = FsPath(__file__).resolve().parents[2]
SIZE = (80, 24)


# --------------------------------------------------------------------------- containers


async def test_containers_table_lists_the_lab(make_app: MakeApp) -> None:
    app = make_app("healthy")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        names = [r.name for r in app.main.table.shown]
        assert names == ["api", "client", "db", "upstream", "web"]
        web = next(r for r in app.main.table.shown if r.name == "web")
        assert web.ports == "0.0.0.0:8080->80/tcp"
        assert web.bridge == "lab0"
        assert web.host_veth.startswith("veth-web@")
        assert app.main.table.row_count == 5


async def test_filter_narrows_incrementally_and_escape_clears(make_app: MakeApp) -> None:
    app = make_app("healthy")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        assert app.focused is app.main.filter_box
        await pilot.press("l", "a", "b", "1")
        await pilot.pause()
        assert [r.name for r in app.main.table.shown] == ["api", "db"]
        await pilot.press("backspace", "0")
        await pilot.pause()
        assert [r.name for r in app.main.table.shown] == ["client", "web"]
        assert "matching 'lab0'" in _plain(app.main.status)
        await pilot.press("enter")  # keep the filter, back to the table
        assert app.focused is app.main.table
        assert app.main.table.row_count == 2
        await pilot.press("slash", "escape")
        await pilot.pause()
        assert app.containers.filter_text == ""
        assert app.main.table.row_count == 5


async def test_slash_from_another_tab_lands_in_the_filter(make_app: MakeApp) -> None:
    app = make_app("healthy")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for tab in ("2", "3", "4"):
            await pilot.press(tab, "slash")
            await wait_for(pilot, lambda: app.focused is app.main.filter_box)
            assert app.main.tabs.active == "containers"
            await pilot.press("escape")
        await pilot.press("2", "slash", "w", "e", "b")
        await wait_for(pilot, lambda: app.main.table.row_count == 1)


async def test_filter_matches_every_word_anywhere(make_app: MakeApp) -> None:
    app = make_app("healthy")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await type_text(pilot, "8080 lab")
        await pilot.pause()
        assert [r.name for r in app.main.table.shown] == ["web"]
        await type_text(pilot, " nosuch")
        await pilot.pause()
        assert app.main.table.row_count == 0


# --------------------------------------------------------------------------- keys


async def test_number_keys_switch_tabs_and_q_quits(make_app: MakeApp) -> None:
    app = make_app("healthy")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for key, tab in (("2", "topology"), ("3", "path"), ("4", "drops"), ("1", "containers")):
            await pilot.press(key)
            await pilot.pause()
            assert app.main.tabs.active == tab
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_ctrl_c_quits_too(make_app: MakeApp) -> None:
    app = make_app("healthy")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+c")
        await pilot.pause()
    assert app.return_code == 0


async def test_help_lists_every_key(make_app: MakeApp) -> None:
    app = make_app("healthy")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        body = app.screen.query_one("#help-body")
        text = _plain(body)
        for _section, bindings in help_sections():
            for b in bindings:
                assert b.tooltip, f"binding {b.key} has no help text"
                assert b.tooltip in text, b.tooltip
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


def test_docs_list_every_key() -> None:
    """docs/tui.md names every key the help screen lists."""
    doc = (LAB.parents[2] / "docs" / "tui.md").read_text()
    for _section, bindings in help_sections():
        for b in bindings:
            for key in key_label(b.key).split(", "):
                assert f"`{key}`" in doc, f"docs/tui.md does not mention `{key}`"


async def test_theme_toggle(make_app: MakeApp) -> None:
    app = make_app("healthy")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.theme == "textual-dark"
        await pilot.press("T")
        assert app.theme == "textual-light"


# --------------------------------------------------------------------------- topology


async def test_topology_details_follow_the_cursor(make_app: MakeApp) -> None:
    app = make_app("healthy")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await pilot.pause()
        tree = app.main.topo_tree
        await wait_for(pilot, lambda: tree.cursor_node is not None)
        assert tree.cursor_node is not None and tree.cursor_node.data is not None
        assert tree.cursor_node.data.kind == "container", "opens on the selected container"
        tree.cursor_line = 0
        await wait_for(pilot, lambda: "Routes (main table)" in _plain(app.main.details))
        await to_container_node(pilot, "web")
        await pilot.pause()
        text = _plain(app.main.details)
        for needle in (
            "Interfaces",
            "10.210.0.2/16",
            "Listening sockets",
            "tcp 0.0.0.0:80",
            "Sysctls (container)",
            "net.ipv4.ip_forward = 0",
            "Rules touching it",
            "--dport 8080 -j DNAT --to-destination 10.210.0.2:80",
        ):
            assert needle in text, needle
        # r on the topology tab: rules touching the container, marked
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, RulesScreen)
        table = app.screen.query_one(RulesTable)
        marked = [table.rules[k] for k in table.rules if _row_of(table, k) in table.marked_rows]
        assert any("DNAT --to-destination 10.210.0.2:80" in r.text for r in marked)


# --------------------------------------------------------------------------- path


async def test_path_run_shows_drop_finding_and_rule(make_app: MakeApp) -> None:
    app = make_app("forward-drop")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await path_to(pilot, "client", "203.0.113.10:80")
        assert app.path.current is not None
        assert app.path.current.verdict.status == "dropped"
        assert [f.code for f in app.path.current.findings] == ["forward-drop"]
        verdict = _plain(app.main.path_panel.verdict)
        assert "DROPPED at hop 6" in verdict
        assert "forward-drop" in verdict
        assert "fix: remove or narrow the rule" in verdict
        timeline = app.main.path_panel.timeline
        assert timeline.hop_index == 6, "the cursor sits on the deciding hop"
        assert "live off" in _plain(app.main.status)
        assert "post-mortem" in _plain(app.main.path_panel.query_one("#path-status"))
        # r opens the deciding rule, marked
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, RulesScreen)
        table = app.screen.query_one(RulesTable)
        assert len(table.marked_rows) == 1
        rule = table.rules[_key_at(table, table.cursor_row)]
        assert (rule.table, rule.chain, rule.position) == ("filter", "DOCKER-USER", 1)
        assert "-A DOCKER-USER -d 203.0.113.0/24 -j DROP" in _plain(
            app.screen.query_one("#rule-detail")
        )
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, RulesScreen)
        # enter on a hop with a rule opens that rule too
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RulesScreen)


async def test_bad_destination_is_one_line_not_a_crash(make_app: MakeApp) -> None:
    app = make_app("healthy")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await path_to(pilot, "client", "nosuchthing:80")
        assert app.path.current is None
        text = _plain(app.main.path_panel.verdict)
        assert text.strip() and "\n" not in text.strip()
        await pilot.press("escape")
        app.main.path_panel.destination.value = ""
        app.main.path_panel.focus_destination()
        await type_text(pilot, "web:80 sctp")
        await pilot.press("enter")
        await settle(pilot)
        assert "DEST [tcp|udp|icmp]" in _plain(app.main.path_panel.verdict)


async def test_udp_and_refused_paths(make_app: MakeApp) -> None:
    app = make_app("no-listener")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await path_to(pilot, "client", "web:80")
        assert app.path.current is not None and app.path.current.verdict.status == "refused"
        assert [f.code for f in app.path.current.findings] == ["no-listener"]
    app = make_app("healthy")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await path_to(pilot, "client", "web:9000 udp")
        assert app.path.current is not None and app.path.current.verdict.status == "delivered"
        assert app.path.current.destination.protocol == "udp"


async def test_live_path_fills_in_observations(make_app: MakeApp) -> None:
    tracer = ScriptedTracer()
    app = make_app("forward-drop", live=True, tracer=tracer)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await path_to(pilot, "client", "203.0.113.10:80")
        assert tracer.traces == 1
        assert tracer.prepared, "opening the path tab warms the probes up"
        assert app.path.current is not None and app.path.current.mode == "live"
        timeline = app.main.path_panel.timeline
        assert "LIVE" in [str(c.label) for c in timeline.columns.values()]
        assert "live trace" in _plain(app.main.path_panel.query_one("#path-status"))
        detail = _plain(app.main.path_panel.query_one("#hop-detail"))
        assert "live: ✓" in detail and "dropped: NETFILTER_DROP" in detail


async def test_path_waits_for_full_discovery(make_app: MakeApp) -> None:
    """A path asked while only the cheap first read is in is run once details arrive."""
    app = make_app("healthy", live=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.detailed = False
        await path_to(pilot, "client", "web:80")
        assert app.path.current is None
        assert "waiting for full discovery" in _plain(app.main.path_panel.query_one("#path-status"))
        app.feed.rediscover("test")
        await wait_for(pilot, lambda: app.path.current is not None)
        assert app.path.current is not None and app.path.current.verdict.status == "delivered"
        assert app.path.answers == app.path.requests == 1


# --------------------------------------------------------------------------- export


async def test_export_writes_a_report_that_replays(make_app: MakeApp, tmp_path: FsPath) -> None:
    app = make_app("forward-drop")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("e")
        await pilot.pause()
        assert app.last_report is None, "nothing to export before a path"
        await path_to(pilot, "client", "203.0.113.10:80")
        await pilot.press("e")
        await wait_for(pilot, lambda: app.last_report is not None)
        assert app.last_report is not None
        assert app.last_report in _plain(app.main.path_panel.query_one("#path-status"))
        shown = app.path.current
    report = FsPath(app.last_report)
    assert report.parent == tmp_path
    assert report.name.startswith("cntrace-report-client-to-203.0.113.10_80-")
    doc = json.loads(report.read_text())
    assert doc["schema"] == REPORT_SCHEMA
    # built by cntrace.report, like `cntrace report`: the path as shown, and what made it
    assert shown is not None and doc["path"] == codec.to_plain(shown)
    assert doc["command"] == ["cntrace", "tui"] and doc["redacted"] is False
    assert doc["snapshot"]["schema"] == "cntrace.snapshot/v1"
    jsonschema.validate(doc, json.loads((REPO / "docs/schemas/report.schema.json").read_text()))
    # The embedded snapshot replays with the CLI, to the same path.
    argv = doc["replay"]["argv"]
    assert argv[:4] == ["cntrace", "path", "--snapshot", str(report)]
    assert run_json(*argv[1:], "--json", rc=1) == to_document(shown)  # the path fails: exit 1
    # and `cntrace tui --snapshot REPORT` opens a post-mortem on it
    assert RecordedSource.load(str(report)).read(detail=True) == lab_snapshot("forward-drop")


async def test_export_of_a_live_path_keeps_it(make_app: MakeApp) -> None:
    app = make_app("healthy", live=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await path_to(pilot, "client", "web:80")
        await pilot.press("e")
        await wait_for(pilot, lambda: app.last_report is not None)
    assert app.last_report is not None
    doc = json.loads(FsPath(app.last_report).read_text())
    assert doc["path"]["mode"] == "live"
    assert doc["prediction"]["mode"] == "predicted"
    assert doc["prediction"]["verdict"] == doc["path"]["verdict"]
    assert doc["origin"].startswith("live host")


# --------------------------------------------------------------------------- post-mortem and live


async def test_post_mortem_says_live_features_are_off(make_app: MakeApp) -> None:
    app = make_app("healthy")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        status = _plain(app.main.status)
        assert "post-mortem" in status and "live off" in status
        await pilot.press("4")
        await pilot.pause()
        assert "live drops are disabled" in _plain(app.main.drops.query_one("#drops-status"))
        await pilot.press("R")
        await pilot.pause()
        assert app.source.live is False


async def test_drops_are_attributed_to_containers(make_app: MakeApp) -> None:
    app = make_app("healthy", live=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("4")
        table = app.main.drops.table
        for _ in range(100):
            await pilot.pause(0.02)
            if table.row_count:
                break
        assert table.row_count == 2, "the drop in an unknown namespace is hidden"
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows[0][1:5] == ["web", "web eth0", "NO_SOCKET", "tcp_v4_rcv"]
        assert rows[1][1] == "web" and rows[1][2].endswith("veth-web")
        status = _plain(app.main.drops.query_one("#drops-status"))
        assert "2 shown, 3 seen, 0 lost" in status
        await pilot.press("a")
        assert "all drops" in _plain(app.main.drops.query_one("#drops-status"))


async def test_benign_drops_are_hidden_and_counted_and_the_summary_counts(
    make_app: MakeApp,
) -> None:
    snap = lab_snapshot("healthy")
    web = next(c for c in snap.containers if c.name == "web")
    noise = [
        KernelDrop(1_500_000 + i, "NOT_SPECIFIED", "ip6_mc_input+0x1b2", web.netns, 2)
        for i in range(3)
    ]
    app = make_app("healthy", live=True, tracer=ScriptedTracer([*lab_drops(snap), *noise]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("4")
        table = app.main.drops.table
        status = app.main.drops.query_one("#drops-status")
        await wait_for(pilot, lambda: "seen" in _plain(status), timeout=5)
        assert table.row_count == 2, "MLD noise in web's namespace is hidden"
        assert "2 shown, 6 seen, 0 lost, 3 benign hidden" in _plain(status)
        await pilot.press("s")
        await pilot.pause()
        summary = _plain(app.main.drops.query_one("#drops-summary"))
        assert "2 drops (3 benign hidden)" in summary
        assert "NO_SOCKET" in summary and "nf_hook_slow" in summary and "web" in summary
        assert app.main.drops.query_one("#drops-summary").display
        await pilot.press("s")
        await pilot.pause()
        assert not app.main.drops.query_one("#drops-summary").display


async def test_refreshes_when_containers_change(make_app: MakeApp) -> None:
    healthy = lab_snapshot("healthy")
    fewer = healthy.__class__(
        netns=healthy.netns,
        containers=tuple(c for c in healthy.containers if c.name != "db"),
        taken_at=healthy.taken_at,
        hostname=healthy.hostname,
    )
    source = LiveRecordedSource(healthy, fewer)
    app = build_app(source, ScriptedTracer(), poll_s=0.05, refresh_s=0)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.main.table.row_count == 5
        assert source.watched, "the change detector is aimed at the snapshot's hosts"
        reads = source.reads
        source.change.set()
        await pilot.pause(0.5)
        assert source.reads == reads, "change reads keep a gap (>= 2 s) after the last read"
        await wait_for(pilot, lambda: app.main.table.row_count == 4, timeout=10)
        assert [r.name for r in app.main.table.shown] == ["api", "client", "upstream", "web"]
        assert source.reads == reads + 1


async def test_quit_stops_the_drop_stream(make_app: MakeApp) -> None:
    tracer = ScriptedTracer()
    app = make_app("healthy", live=True, tracer=tracer)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await pilot.pause(0.1)
        drops = [w for w in app.workers if w.group == "drops"]
        assert drops and not drops[0].is_finished
        await pilot.press("q")
    assert app.stopping.is_set()


async def test_no_color_keeps_every_cue(make_app: MakeApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under NO_COLOR the terminal gets no colour, so what cntrace marks must stand out by a
    mark, a word or bold/reverse video: the deciding hop, the verdict, the finding and the
    post-mortem status (whose banner colour is gone)."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app("forward-drop")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await path_to(pilot, "client", "203.0.113.10:80")
        panel = app.main.path_panel
        hops = _painted(panel.timeline)
        verdict = _painted(panel.verdict.query_one("#verdict-body"))
        status = _painted(app.main.status)
    painted = hops + verdict + status
    assert all(_hueless(style) for _text, style in painted), "a colour got through"
    deciding = _attrs(_cell(hops, "✗6"))
    assert {"bold", "reverse"} <= deciding
    assert deciding != _attrs(_cell(hops, "5")), "the deciding hop looks like any other"
    assert "reverse" in _attrs(_cell(verdict, " verdict "))
    assert "bold" in _attrs(_cell(verdict, "DROPPED"))
    assert "reverse" in _attrs(_cell(verdict, " x "))  # the error finding's mark
    assert "bold" in _attrs(_cell(verdict, " forward-drop"))
    assert "bold" in _attrs(_cell(status, "■ post-mortem"))
    assert "bold" in _attrs(_cell(status, "live off"))


# --------------------------------------------------------------------------- helpers


def _plain(widget: object) -> str:
    """The text a widget shows (its Static bodies included)."""
    from rich.console import Console
    from textual.widget import Widget

    assert isinstance(widget, Widget)
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    parts = []
    for w in [widget, *widget.query("*")]:
        content = getattr(w, "content", None) or getattr(w, "renderable", None)
        if content is None:
            continue
        if isinstance(content, str):
            parts.append(content)
            continue
        try:
            console.print(content)
        except Exception:
            parts.append(str(content))
    parts.append(console.export_text())
    return "\n".join(parts)


Painted = list[tuple[str, Style]]


def _painted(widget: Widget) -> Painted:
    """Every (text, style) a widget sends to the terminal, after the app's filters."""
    lines = widget.render_lines(Region(0, 0, widget.size.width, widget.size.height))
    return [(seg.text, seg.style or Style()) for line in lines for seg in line]


def _cell(painted: Painted, text: str) -> Style:
    """The style of the first painted run that is ``text`` (surrounding blanks ignored)."""
    for got, style in painted:
        if got.strip() and got.strip() == text.strip():
            return style
    raise AssertionError(f"{text!r} is not on screen: {[t for t, _ in painted if t.strip()]}")


def _attrs(style: Style) -> set[str]:
    """What sets a run apart without colour."""
    return {a for a in ("bold", "dim", "italic", "underline", "reverse") if getattr(style, a)}


def _hueless(style: Style) -> bool:
    for colour in (style.color, style.bgcolor):
        if colour is None or colour.is_default:
            continue
        r, g, b = colour.get_truecolor()
        if not r == g == b:
            return False
    return True


def _key_at(table: RulesTable, row: int) -> str:
    return str(table.coordinate_to_cell_key((row, 0)).row_key.value)


def _row_of(table: RulesTable, key: str) -> int:
    return table.get_row_index(key)


async def test_topology_opens_on_the_selected_container(make_app: MakeApp) -> None:
    app = make_app("healthy")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        db = next(r.key for r in app.containers.rows if r.name == "db")
        app.main.table.select_key(db)
        await pilot.press("2")
        await wait_for(pilot, lambda: app.main.topo_tree.cursor_node is not None)
        await wait_for(pilot, lambda: app.main.topo_tree.cursor_node.data.name == db)  # type: ignore[union-attr]
        assert "db" in _plain(app.main.details)
        web = next(r.key for r in app.containers.rows if r.name == "web")
        await pilot.press("1")
        app.main.table.select_key(web)
        await pilot.press("2")
        await wait_for(pilot, lambda: app.main.topo_tree.cursor_node.data.name == web)  # type: ignore[union-attr]
