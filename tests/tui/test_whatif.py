"""What-if in the console (issue 16): `w` predicts the path again after a typed change, `f` checks
the findings' fixes; both side by side, on the recorded forward-drop lab snapshot."""

from __future__ import annotations

from collections.abc import Callable

from test_pilot import SIZE, _plain
from textual.pilot import Pilot
from textual.widgets import Input
from tuikit import path_to, settle, type_text, wait_for

from cntrace.tui.app import CntraceApp
from cntrace.tui.screens.whatif import WhatIfScreen

MakeApp = Callable[..., CntraceApp]
DROP_RULE = "-d 203.0.113.0/24 -j DROP"
REMOVE = f"iptables -D DOCKER-USER {DROP_RULE}"


async def _answer(pilot: Pilot[int], app: CntraceApp, asked: int) -> None:
    await wait_for(pilot, lambda: app.whatif.answers > asked)


def _screen(app: CntraceApp) -> WhatIfScreen:
    assert isinstance(app.screen, WhatIfScreen), type(app.screen)
    return app.screen


async def test_w_shows_the_change_side_by_side(make_app: MakeApp) -> None:
    app = make_app("forward-drop")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("3", "w")
        await pilot.pause()
        assert not isinstance(app.screen, WhatIfScreen), "no path yet: nothing to change"
        await path_to(pilot, "client", "203.0.113.10:80")
        await pilot.press("w")
        await pilot.pause()
        screen = _screen(app)
        assert isinstance(app.focused, Input) and app.focused.id == "change"
        await type_text(pilot, REMOVE)
        asked = app.whatif.answers
        await pilot.press("enter")
        await _answer(pilot, app, asked)
        c = app.whatif.comparison
        assert c is not None
        assert c.before.verdict.status == "dropped" and c.after.verdict.status == "delivered"
        assert c.findings_gone == ("forward-drop",)
        assert screen.hops.row_count == len(c.rows) > len(c.before.hops)
        text = _plain(screen)
        assert f"change 1: {REMOVE}" in text
        assert "in cntrace-fx.host, the path's host" in text, "says where the change went"
        assert "DROPPED at hop 6" in text and "DELIVERED" in text
        assert "gone: forward-drop" in text
        assert app.path.current is not None and app.path.current.verdict.status == "dropped", (
            "the path on screen (and the snapshot) are left as they were"
        )
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, WhatIfScreen)


async def test_a_bad_change_is_one_line(make_app: MakeApp) -> None:
    app = make_app("forward-drop")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await path_to(pilot, "client", "203.0.113.10:80")
        await pilot.press("w")
        await pilot.pause()
        screen = _screen(app)
        for bad in ("frobnicate the firewall", "iptables -D NOSUCHCHAIN -j DROP", "'"):
            screen.query_one("#change", Input).value = bad
            screen.query_one("#change", Input).focus()
            asked = app.whatif.answers
            await pilot.press("enter")
            await _answer(pilot, app, asked)
            shown = _plain(screen.query_one("#whatif-changes")).strip().splitlines()
            assert len([line for line in shown if line.strip()]) == 1, shown
            assert "what-if" in shown[0] or "iptables" in shown[0], shown
            assert screen.hops.row_count == 0


async def test_f_checks_the_fix_and_it_repairs_the_path(make_app: MakeApp) -> None:
    app = make_app("forward-drop")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await path_to(pilot, "client", "203.0.113.10:80")
        asked = app.whatif.answers
        await pilot.press("f")
        await _answer(pilot, app, asked)
        screen = _screen(app)
        [check] = app.whatif.checks
        assert (check.code, check.status) == ("forward-drop", "delivers")
        assert check.changes == (REMOVE,)
        text = _plain(screen)
        assert "REPAIRS" in text and "forward-drop" in text
        assert app.whatif.comparison is not None
        assert app.whatif.comparison.after.verdict.status == "delivered"
        # the fix is in the change box, editable: Enter runs it as a what-if
        box = screen.query_one("#change", Input)
        assert box.value == REMOVE
        box.focus()
        asked = app.whatif.answers
        await pilot.press("enter")
        await _answer(pilot, app, asked)
        assert app.whatif.comparison.after.verdict.status == "delivered"


async def test_f_without_a_fix_says_so(make_app: MakeApp) -> None:
    app = make_app("healthy")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await path_to(pilot, "client", "web:80")
        await pilot.press("f")
        await pilot.pause()
        assert not isinstance(app.screen, WhatIfScreen)


async def test_w_in_the_destination_box_is_a_letter(make_app: MakeApp) -> None:
    app = make_app("healthy")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await path_to(pilot, "client", "web:80")
        await pilot.press("p")
        app.main.path_panel.destination.value = ""
        await type_text(pilot, "wf")
        assert app.main.path_panel.destination.value == "wf"
        assert not isinstance(app.screen, WhatIfScreen)
