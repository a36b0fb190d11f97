"""The one base of every message the console's controllers answer.

Widgets and the main screen post their own subclasses (defined next to them, as textual's own
widgets do); the messages bubble up to the app, which hands each to the controllers that
declared it with ``@handles`` (cntrace.tui.controllers.base). Nothing here knows a controller.
"""

from __future__ import annotations

from textual.message import Message


class ConsoleMessage(Message):
    """Something the user asked or did that a tab's controller acts on."""
