"""Tracepoint facts read from tracefs: ids, record layouts and symbolic value names.

The kernel publishes each tracepoint's record layout and the names of its enum values (for
skb:kfree_skb, every drop reason) in ``events/<system>/<event>/format``. cntrace reads both from
the running kernel, so it never carries a copy of the drop-reason table that would drift from the
kernel it runs on.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field

TRACEFS = "/sys/kernel/tracing"
_LEGACY = "/sys/kernel/debug/tracing"

_FIELD = re.compile(r"field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);")
_SYMBOL = re.compile(r"\{\s*(-?(?:0x[0-9a-fA-F]+|\d+))\s*,\s*\"([^\"]*)\"\s*\}")


class TracefsError(Exception):
    """tracefs is missing or a tracepoint does not exist on this kernel."""


@dataclass(frozen=True, slots=True)
class TracepointFormat:
    """A tracepoint's id, record fields (name -> (offset, size)) and symbolic tables."""

    system: str
    event: str
    id: int
    fields: dict[str, tuple[int, int]]
    symbols: dict[str, dict[int, str]] = field(default_factory=dict)  # field -> value -> name
    text: str = ""


def parse_format(system: str, event: str, text: str) -> TracepointFormat:
    """Parse a tracefs ``format`` file."""
    m = re.search(r"^ID:\s*(\d+)", text, re.M)
    if not m:
        raise TracefsError(f"{system}:{event}: format has no ID")
    fields: dict[str, tuple[int, int]] = {}
    for fm in _FIELD.finditer(text):
        decl = fm.group("decl").strip()
        name = re.sub(r"\[.*\]$", "", decl.split()[-1]).lstrip("*")
        fields[name] = (int(fm.group("off")), int(fm.group("size")))
    symbols: dict[str, dict[int, str]] = {}
    for sm in re.finditer(r"__print_symbolic\(\s*REC->(\w+)\s*,", text):
        body = _balanced(text, sm.end())
        symbols[sm.group(1)] = {int(v, 0): name for v, name in _SYMBOL.findall(body)}
    return TracepointFormat(system, event, int(m.group(1)), fields, symbols, text)


def _balanced(text: str, start: int) -> str:
    """The text from ``start`` to the parenthesis closing the call opened just before it."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return text[start:]


def ensure_mounted() -> tuple[str, str | None]:
    """The tracefs root, mounting it when missing. Returns (root, notice or None)."""
    for root in (TRACEFS, _LEGACY):
        if os.path.isdir(os.path.join(root, "events")):
            return root, None
    if not os.path.isdir(TRACEFS):
        raise TracefsError(f"{TRACEFS} does not exist (kernel without tracefs?)")
    res = subprocess.run(
        ["mount", "-t", "tracefs", "nodev", TRACEFS], capture_output=True, text=True, check=False
    )
    if res.returncode != 0 or not os.path.isdir(os.path.join(TRACEFS, "events")):
        why = res.stderr.strip() or "events/ still missing"
        raise TracefsError(f"tracefs is not mounted and mounting it failed: {why}")
    return TRACEFS, f"mounted tracefs at {TRACEFS}"


def read_format(system: str, event: str, root: str | None = None) -> TracepointFormat:
    base = root or ensure_mounted()[0]
    path = os.path.join(base, "events", system, event, "format")
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError as exc:
        raise TracefsError(f"tracepoint {system}:{event} does not exist on this kernel") from exc
    except OSError as exc:
        raise TracefsError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_format(system, event, text)
