"""What-if on the path tab: `w` predicts the path on screen again after a typed change, `f`
checks the findings' fixes the same way; both show the two paths side by side.

The same machinery as `cntrace path --what-if` (cntrace.whatif: parse, apply_all, host_of_path,
compare; cntrace.whatif.fixes.check): a change without a namespace goes to the namespace acting
as the host on the path, and the screen says which one it used. The comparison is made against
the prediction (a live path's sightings cannot be replayed on a changed snapshot).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Input

from cntrace.errors import CntraceError
from cntrace.model import Path, Snapshot
from cntrace.tui.controllers.base import Controller, cancelled, handles
from cntrace.tui.query import PathQuery
from cntrace.tui.screens.whatif import WhatIfScreen
from cntrace.tui.views.whatif import change_lines, comparison_rows, difference_lines, fix_lines
from cntrace.tui.widgets.path_panel import PathPanel

if TYPE_CHECKING:
    from cntrace.tui.app import CntraceApp
    from cntrace.whatif.compare import Comparison
    from cntrace.whatif.fixes import FixCheck


class WhatIfController(Controller):
    """``requests``/``answers`` count what-ifs asked and answered (tests wait on them);
    ``comparison`` and ``checks`` are the last answers."""

    def __init__(self, app: CntraceApp) -> None:
        super().__init__(app)
        self.screen: WhatIfScreen | None = None
        self.comparison: Comparison | None = None
        self.checks: list[FixCheck] = []
        self.requests = 0
        self.answers = 0

    def _question(self) -> tuple[Path, Snapshot, PathQuery] | None:
        path = self.app.path
        before, snap, query = path.predicted, path.snapshot, path.query
        if before is None or snap is None or query is None:
            self.app.notify("no path yet: 3, type a destination, Enter", timeout=4)
            return None
        return before, snap, query

    def _open(self, before: Path, change: str = "") -> WhatIfScreen:
        src, dst = before.source, before.destination
        title = Text("what-if ", "bold reverse")
        title.append(f" {src.name or src.asked} -> {dst.name or dst.ip or dst.asked}", "bold")
        title.append("   nothing on the host is changed", "dim")
        self.screen = WhatIfScreen(title, change)
        self.app.push_screen(self.screen)
        return self.screen

    # ------------------------------------------------------------------ w: a typed change

    @handles(PathPanel.WhatIfAsked)
    def _asked(self, message: PathPanel.WhatIfAsked) -> None:
        found = self._question()
        if found is not None:
            self._open(found[0])

    @handles(WhatIfScreen.Submitted)
    def _submitted(self, message: WhatIfScreen.Submitted) -> None:
        found = self._question()
        screen = self.screen
        if found is None or screen is None:
            return
        before, snap, query = found
        self.requests += 1
        text = message.text
        self.run(lambda: self._what_if(screen, before, snap, query, text), group="whatif",
                 exclusive=True)  # fmt: skip

    def _what_if(
        self, screen: WhatIfScreen, before: Path, snap: Snapshot, query: PathQuery, text: str
    ) -> None:
        from cntrace import whatif
        from cntrace.whatif.compare import compare

        try:
            try:
                changes = [whatif.parse(line) for line in _changes(text)]
                after_snap, applied = whatif.apply_all(
                    snap, changes, whatif.host_of_path(snap, before)
                )
                after = _predict(after_snap, query)
            except CntraceError as exc:
                self.post(screen.show_error, str(exc))
                return
            except Exception as exc:  # a what-if bug is shown, never a traceback
                self.post(screen.show_error, f"what-if failed: {type(exc).__name__}: {exc}")
                return
            if cancelled():
                return
            c = compare(before, after)
            self.post(self._show, screen, c, change_lines(applied))
        finally:
            self.post(self._answered)

    def _show(self, screen: WhatIfScreen, c: Comparison, head: list[Text]) -> None:
        self.comparison = c
        screen.set_status(*head)
        screen.show_rows(comparison_rows(c), difference_lines(c))

    def _answered(self) -> None:
        self.answers += 1

    # ------------------------------------------------------------------ f: the findings' fixes

    @handles(PathPanel.FixAsked)
    def _fix_asked(self, message: PathPanel.FixAsked) -> None:
        found = self._question()
        if found is None:
            return
        before, snap, query = found
        if not any(f.fix for f in before.findings):
            self.app.notify("no finding on this path has a fix to check", timeout=4)
            return
        screen = self._open(before)
        self.requests += 1
        self.run(lambda: self._check(screen, before, snap, query), group="whatif", exclusive=True)

    def _check(self, screen: WhatIfScreen, before: Path, snap: Snapshot, query: PathQuery) -> None:
        from cntrace.whatif import fixes
        from cntrace.whatif.compare import compare

        try:
            try:
                checks = fixes.check_all(snap, before, lambda s: _predict(s, query))
            except Exception as exc:  # CntraceError included: shown, never a traceback
                self.post(screen.show_error, f"checking the fixes failed: {exc}")
                return
            if cancelled():
                return
            shown = next((ch for ch in checks if ch.after is not None), None)
            c = compare(before, shown.after) if shown is not None and shown.after else None
            self.post(self._checked, screen, checks, c)
        finally:
            self.post(self._answered)

    def _checked(self, screen: WhatIfScreen, checks: list[FixCheck], c: Comparison | None) -> None:
        self.checks = checks
        changes = next((ch.changes for ch in checks if ch.changes), ())
        if changes:  # editable: Enter runs it (or the edited text) as a what-if
            screen.query_one("#change", Input).value = " ; ".join(changes)
        screen.set_status(*fix_lines(checks))
        if c is None:
            screen.show_rows([], [])
            return
        self.comparison = c
        screen.show_rows(comparison_rows(c), difference_lines(c))


def _changes(text: str) -> list[str]:
    """Several changes in one line, separated by `` ; `` (applied in order)."""
    return [part for part in (p.strip() for p in text.split(" ; ")) if part] or [text]


def _predict(snap: Snapshot, query: PathQuery) -> Path:
    from cntrace.path import predict

    return predict(snap, query.source, query.destination, proto=query.proto)
