"""A lab's checked state is kept beside its file (lab.state_cache) and read back only when it is
the state of that very text, written by this user, in a directory nobody else can write."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from cntrace import codec
from cntrace.lab import build, spec, state, state_cache


@pytest.fixture
def labs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    tmp_path.chmod(0o755)
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)
    monkeypatch.setattr(state, "_LOADED", {})
    yield tmp_path


def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a new process: nothing parsed in memory."""
    monkeypatch.setattr(state, "_LOADED", {})


def _no_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object) -> object:
        raise AssertionError("the JSON was decoded")

    monkeypatch.setattr(codec, "from_plain", refuse)


def test_the_next_load_reads_the_kept_state(labs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = build._initial_state(spec.plan("cntrace-kept", 3))
    state.save(good)
    assert state.load("cntrace-kept") == good
    kept = labs / "cntrace-kept.pickle"
    assert kept.exists() and kept.stat().st_mode & 0o077 == 0
    _fresh(monkeypatch)
    with monkeypatch.context() as m:
        _no_parse(m)
        assert state.load("cntrace-kept") == good
    state.remove("cntrace-kept")
    assert not list(labs.iterdir())


def test_a_rewritten_file_is_read_again(labs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = build._initial_state(spec.plan("cntrace-kept", 3))
    state.save(good)
    state.load("cntrace-kept")
    path = labs / "cntrace-kept.json"
    text = path.read_text()
    st = path.stat()
    changed = text.replace('"status": "building"', '"status": "up"      ')  # same length
    assert len(changed) == len(text) and changed != text
    path.write_text(changed)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime
    _fresh(monkeypatch)
    assert state.load("cntrace-kept").status == "up"


@pytest.mark.parametrize("damage", ["foreign-mode", "symlink", "garbage", "other-shape", "dir"])
def test_an_untrusted_or_stale_pickle_is_ignored(
    labs: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    good = build._initial_state(spec.plan("cntrace-kept", 2))
    state.save(good)
    state.load("cntrace-kept")
    kept = labs / "cntrace-kept.pickle"
    key, value = pickle.loads(kept.read_bytes())
    if damage == "foreign-mode":
        kept.chmod(0o666)
    elif damage == "symlink":
        other = labs / "elsewhere"
        kept.rename(other)
        kept.symlink_to(other)
    elif damage == "garbage":
        kept.write_bytes(b"\x80\x05not a pickle")
    elif damage == "other-shape":
        kept.write_bytes(pickle.dumps(((key[0], key[1], ()), value)))
    else:
        labs.chmod(0o777)  # anyone could have put it there
    assert state_cache.read(labs / "cntrace-kept.json", key) is None
    _fresh(monkeypatch)
    assert state.load("cntrace-kept") == good  # from the JSON
