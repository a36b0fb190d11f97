"""The footer: the keys the screen offers, drawn by one widget.

textual's Footer makes a widget per key and composes them all again whenever the bindings
change (every focus move); on the console's first frame that was ~10% of the UI's CPU time up
to the frame (docs/performance.md, round 6). This bar draws the same line (key, then what it
does, in the footer's colours) as one Text, redrawn when the bindings change, and a click on a
key presses it, as on textual's.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widget import Widget

DIM = Style(dim=True)  # a key that is bound but not available now


class KeyBar(Widget):
    """The active bindings marked ``show``, one entry per action, as textual's Footer lists them."""

    ALLOW_SELECT = False
    COMPONENT_CLASSES = {"key-bar--key", "key-bar--description"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        width: 1fr;
        height: 1;
        text-wrap: nowrap;
        text-overflow: clip;
        color: $footer-foreground;
        background: $footer-background;
        & > .key-bar--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        & > .key-bar--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self._spans: list[tuple[int, int, str]] = []  # (first cell, end, key) of each entry

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def _bindings_changed(self, _screen: Screen[object]) -> None:
        self.refresh()

    def entries(self) -> list[tuple[str, str, str, bool]]:
        """(key, how it is shown, description, enabled) of each key the bar shows."""
        out: list[tuple[str, str, str, bool]] = []
        actions: set[str] = set()
        for _node, binding, enabled, _tooltip in self.screen.active_bindings.values():
            if not binding.show or binding.action in actions:
                continue
            actions.add(binding.action)
            shown = self.app.get_key_display(binding)
            out.append((binding.key, shown, binding.description, enabled))
        return out

    def render(self) -> Text:
        key_style = self.get_component_rich_style("key-bar--key")
        description_style = self.get_component_rich_style("key-bar--description")
        text = Text(no_wrap=True, overflow="crop", end="")
        spans = []
        for key, shown, description, enabled in self.entries():
            start = text.cell_len
            extra = None if enabled else DIM
            text.append(f" {shown} ", key_style + extra)
            if description:
                text.append(f"{description} ", description_style + extra)
            spans.append((start, text.cell_len, key))
        self._spans = spans
        return text

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._spans:
            if start <= event.x < end:
                event.stop()
                self.app.simulate_key(key)
                return
