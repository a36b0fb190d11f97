"""A stranger's snapshot in the console (issue 14): names full of terminal escapes, bidi
overrides and rich markup are drawn as visible text on every screen, never obeyed."""

from __future__ import annotations

import re
from dataclasses import replace

from rich.segment import Segment
from textual.pilot import Pilot
from textual.strip import Strip
from tuikit import lab_snapshot, path_to, settle, to_container_node, type_text, wait_for

from cntrace.model import Link, Netns, Snapshot
from cntrace.tui.app import CntraceApp, build_app
from cntrace.tui.screens.rules import RulesScreen
from cntrace.tui.screens.whatif import WhatIfScreen
from cntrace.tui.source import RecordedSource

SIZE = (120, 40)
# ESC ] 0 (retitle), BEL, CSI 2J (clear), a bidi override, and markup that would restyle or raise
EVIL = "\x1b]0;owned\x07\x1b[2J[reverse]\u202e"
MARKUP = "[bold red]x[/]"
# What must never reach the terminal inside a text segment (textual's own control segments,
# cursor moves and the like, are not text and are left out below).
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _hostile(snap: Snapshot) -> Snapshot:
    """The lab snapshot with its client renamed, the host's bridge and a veth renamed too."""
    containers = tuple(
        replace(c, name=f"client{MARKUP}{EVIL}") if c.name == "client" else c
        for c in snap.containers
    )

    def link(ln: Link) -> Link:
        if ln.name == "veth-client":
            return replace(ln, name=f"veth{EVIL}")
        return ln

    def ns(n: Netns) -> Netns:
        return replace(n, links=tuple(link(ln) for ln in n.links))

    netns = tuple(ns(n) for n in snap.netns)
    return replace(snap, containers=containers, netns=netns, hostname=f"vm{EVIL}")


def _screen_text(app: CntraceApp) -> str:
    """Every text segment the screen paints (all of it, not only what changed)."""
    update = app.screen._compositor.render_full_update()
    texts = []
    for line in update.strips:
        for strip in line if not isinstance(line, Strip) else [line]:
            for seg in strip:
                assert isinstance(seg, Segment)
                if not seg.control:
                    texts.append(seg.text)
            texts.append("\n")
    return "".join(texts)


def _assert_safe(app: CntraceApp, where: str) -> str:
    text = _screen_text(app)
    bad = UNSAFE.search(text)
    assert bad is None, f"{where}: {bad.group()!r} painted raw"
    return text


async def _walk(pilot: Pilot[int], app: CntraceApp, name: str) -> None:
    text = _assert_safe(app, "containers")
    assert "\\x1b]0;owned\\x07" in text, "the escape is shown, escaped"
    assert MARKUP in text, "markup in a name is literal text"
    await pilot.press("2")
    await settle(pilot)
    await to_container_node(pilot, "client")
    text = _assert_safe(app, "topology")
    assert MARKUP in text
    await path_to(pilot, name, "203.0.113.10:80")
    assert app.path.current is not None and app.path.current.verdict.status == "dropped"
    text = _assert_safe(app, "path")
    assert "veth\\x1b]0;owned" in text, "the renamed veth, escaped, in the hop timeline"
    await pilot.press("r")
    await pilot.pause()
    assert isinstance(app.screen, RulesScreen)
    _assert_safe(app, "rules view")
    await pilot.press("escape")
    await pilot.pause()
    await pilot.press("w")
    await pilot.pause()
    assert isinstance(app.screen, WhatIfScreen)
    await type_text(pilot, "iptables -D DOCKER-USER -d 203.0.113.0/24 -j DROP")
    asked = app.whatif.answers
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.whatif.answers > asked)
    assert app.whatif.comparison is not None
    text = _assert_safe(app, "what-if view")
    assert MARKUP in text
    await pilot.press("escape")
    await pilot.pause()
    app.notify(f"a toast naming {name}")
    await pilot.pause()
    _assert_safe(app, "notification")
    await pilot.press("question_mark")
    await pilot.pause()
    _assert_safe(app, "help")


async def test_hostile_names_are_drawn_escaped_everywhere() -> None:
    snap = _hostile(lab_snapshot("forward-drop"))
    name = next(c.name for c in snap.containers if c.name.startswith("client"))
    app = build_app(RecordedSource(snap, "hostile.json"), None)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await _walk(pilot, app, name)
