"""What the console draws, made safe: names from the kernel, a runtime or a stranger's snapshot
are never markup and never reach the terminal as control characters.

Two dangers (issue 14): textual parses a plain ``str`` given to a DataTable cell, a Tree label, a
Static or a notification as markup (a container named ``[reverse]x`` restyles the screen, one
named ``[/]`` raises), and rich passes ESC, C1 controls, bidi overrides and lone surrogates
through to the terminal (they retitle, clear or reorder it). Every widget hands what it shows
through here: a ``str`` becomes a Text (never parsed), and every Text's characters go through
cntrace.render.safe.term, with its styles kept on the same characters.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Span, Text

from cntrace.render.safe import term, unsafe


def safe_text(text: Text) -> Text:
    """``text`` with every unsafe character escaped, styles kept; the same object when clean.

    A newline stays: the views break their own lines with it, and rich draws it as a line
    break, never as a control sequence (a name cannot carry one into the terminal).
    """
    plain = text.plain
    if not unsafe(plain.replace("\n", " ")):
        return text
    # new offset of every old one, so the spans cover the same characters once escaped
    offsets = [0]
    pieces = []
    for ch in plain:
        piece = ch if ch == "\n" else term(ch)
        pieces.append(piece)
        offsets.append(offsets[-1] + len(piece))
    out = Text(
        "".join(pieces),
        style=text.style,
        justify=text.justify,
        overflow=text.overflow,
        no_wrap=text.no_wrap,
        end=text.end,
    )
    out.spans = [Span(offsets[s.start], offsets[s.end], s.style) for s in text.spans]
    return out


def safe_cell(value: object) -> object:
    """A DataTable cell or Tree label: a ``str`` as literal text, a Text escaped."""
    if isinstance(value, str):
        return Text(term(value))
    if isinstance(value, Text):
        return safe_text(value)
    return value


def safe_renderable(value: RenderableType) -> RenderableType:
    """What a Static or a ScrollText shows: a ``str`` as literal text, Texts (in a Group too)
    escaped; other renderables (tables built from safe cells) as they are."""
    if isinstance(value, str):
        return Text(term(value))
    if isinstance(value, Text):
        return safe_text(value)
    if isinstance(value, Group):
        return Group(*(safe_renderable(r) for r in value.renderables))
    return value


def safe_message(text: str) -> str:
    """A notification's text (shown with ``markup=False``): control characters escaped."""
    return term(text)
