"""Byte-identical predictions: every recorded snapshot, many pairs of endpoints, JSON and text.

Refactors must not change an answer. The recorded documents live in fixtures/golden/; a change that
means to alter predictions regenerates them (``CNTRACE_REGOLD=1 pytest tests/unit/test_golden.py``)
and the diff shows what changed in the answers.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from functools import cache
from pathlib import Path

import pytest
from rich.console import Console

from cntrace.errors import BadInput
from cntrace.model import Snapshot
from cntrace.path import predict
from cntrace.render import path as render_path
from cntrace.sources import recorded

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "fixtures" / "golden"
SNAPSHOTS = sorted((REPO / "fixtures" / "snapshots" / "lab").glob("*.json")) + sorted(
    (REPO / "fixtures" / "discovery").glob("*.json")
)
EXTERNAL = ("203.0.113.10:80", "198.51.100.2:80", "host:8080", "10.210.0.2:80")


@cache
def snap(path: Path) -> Snapshot:
    return recorded.load(str(path))


def _names(s: Snapshot) -> list[str]:
    return sorted({c.name for c in s.containers if c.name})


def cases(s: Snapshot) -> list[tuple[str, str, dict[str, object]]]:
    """Every container to every other (TCP 80, UDP 9000, ICMP), and to a few fixed destinations."""
    names = _names(s)
    out: list[tuple[str, str, dict[str, object]]] = []
    for src in names:
        for dst in names:
            out.append((src, f"{dst}:80", {}))
            out.append((src, f"{dst}:9000", {"proto": "udp"}))
            out.append((src, dst, {}))
        for dst in EXTERNAL:
            out.append((src, dst, {}))
        out.append((src, f"{names[0]}:9000", {"proto": "udp", "size": 1400}))
    return out


def answer(s: Snapshot, src: str, dst: str, opts: dict[str, object]) -> dict[str, object]:
    try:
        result = predict(s, src, dst, **opts)  # type: ignore[arg-type]
    except BadInput as e:
        return {"error": str(e)}
    buf = io.StringIO()
    console = Console(file=buf, width=120, color_system=None, force_terminal=False)
    render_path.render(result, console)
    return {"json": render_path.to_document(result), "text": buf.getvalue()}


def compute(path: Path) -> dict[str, object]:
    s = snap(path)
    return {
        f"{src} -> {dst} {json.dumps(opts, sort_keys=True)}": answer(s, src, dst, opts)
        for src, dst, opts in cases(s)
    }


def golden_file(path: Path) -> Path:
    return GOLDEN / f"{path.parent.name}-{path.stem}.json.gz"


@pytest.mark.parametrize("path", SNAPSHOTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_predictions_unchanged(path: Path) -> None:
    got = compute(path)
    target = golden_file(path)
    if os.environ.get("CNTRACE_REGOLD"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        data = json.dumps(got, indent=1, sort_keys=True).encode()
        target.write_bytes(gzip.compress(data, mtime=0))
    want = json.loads(gzip.decompress(target.read_bytes()))
    assert len(got) > 20
    for key, value in want.items():
        assert got.get(key) == value, f"prediction changed: {key}"
    assert sorted(got) == sorted(want)
