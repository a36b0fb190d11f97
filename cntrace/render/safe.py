"""Text from a snapshot or from the kernel, made safe to write to a terminal.

Names, labels, rule text and process names come from other people's machines (a snapshot attached
to a bug report) or from unprivileged users (a process may call itself anything). Written raw, an
escape sequence in one retitles, clears or rewrites the reader's terminal, and a lone surrogate
makes the write itself fail. Every text renderer passes its strings through :func:`term` (a whole
document through :func:`tree`); clean strings, which is all of them on a normal host, come back
unchanged and uncopied.
"""

from __future__ import annotations

import re
from typing import Any

# C0 and C1 controls (newline and tab included: one value, one line), DEL, the line and paragraph
# separators, the bidirectional overrides and isolates (they reorder what a reader sees), and lone
# surrogates (not encodable; only a hostile JSON writer produces them).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def term(text: str) -> str:
    """``text`` with every control character, override and lone surrogate shown as an escape."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape, text)


def unsafe(text: str) -> bool:
    return _UNSAFE.search(text) is not None


def tree(value: Any) -> Any:
    """A document (dicts, lists, tuples, strings) with :func:`term` applied to every string, keys
    included."""
    if isinstance(value, str):
        return term(value)
    if isinstance(value, dict):
        return {tree(k): tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [tree(v) for v in value]
    return value


def any_unsafe(value: Any) -> bool:
    """Whether :func:`tree` would change anything (so a clean document is never copied)."""
    if isinstance(value, str):
        return _UNSAFE.search(value) is not None
    if isinstance(value, dict):
        return any(any_unsafe(k) or any_unsafe(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(any_unsafe(v) for v in value)
    return False


def clean(value: Any) -> Any:
    """:func:`tree`, but the very same object when nothing needs escaping."""
    return tree(value) if any_unsafe(value) else value
