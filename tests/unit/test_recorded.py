"""Saved snapshots: round trip, and one clear BadInput line for every kind of bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cntrace import codec
from cntrace.errors import BadInput
from cntrace.model import Container, Link, Netns, Snapshot
from cntrace.sources import recorded


def small() -> Snapshot:
    return Snapshot(
        netns=(Netns(7, name="x", links=(Link(1, "lo", kind="loopback"),), sysctls={"a": "1"}),),
        containers=(Container("id", "c", "netns", netns=7),),
        taken_at="2026-01-01T00:00:00+00:00",
    )


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    recorded.save(small(), str(path))
    assert recorded.load(str(path)) == small()
    assert path.stat().st_mode & 0o044  # readable like any file the user writes


@pytest.mark.parametrize(
    "content,message",
    [
        ("{nope", "invalid JSON"),
        ("[1, 2]", "no schema field"),
        ('{"schema": "something/v1"}', "not a cntrace snapshot"),
        ('{"schema": "cntrace.snapshot/v9", "netns": []}', "not supported"),
        ('{"schema": "cntrace.snapshot/v1"}', "damaged snapshot"),
        ('{"schema": "cntrace.snapshot/v1", "netns": [{"inode": "x"}]}', "damaged snapshot"),
    ],
)
def test_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(BadInput) as exc:
        recorded.load(str(path))
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_missing_file() -> None:
    with pytest.raises(BadInput, match="no such file"):
        recorded.load("/nonexistent/snap.json")


def test_unknown_keys_from_newer_writers_are_ignored(tmp_path: Path) -> None:
    data = codec.to_plain(small())
    data["future_field"] = {"x": 1}
    data["netns"][0]["another"] = 3
    path = tmp_path / "newer.json"
    path.write_text(json.dumps(data))
    assert recorded.load(str(path)) == small()
