"""The dataclass compile cache (cntrace.dccache) builds classes exactly as dataclasses does."""

from __future__ import annotations

import dataclasses
import marshal
import os
from pathlib import Path

import pytest

from cntrace import dccache


def _build(cache: dccache._Cache) -> type:
    """A frozen, slotted dataclass built with ``cache`` standing in for dataclasses' exec."""
    saved = vars(dataclasses).get("exec")
    dataclasses.exec = cache.exec  # type: ignore[attr-defined]
    try:

        @dataclasses.dataclass(frozen=True, slots=True)
        class Point:
            x: int
            y: int = 2
            tags: tuple[str, ...] = ()

        return Point
    finally:
        if saved is None:
            del dataclasses.exec  # type: ignore[attr-defined]
        else:
            dataclasses.exec = saved  # type: ignore[attr-defined]


def _check(cls: type) -> None:
    p = cls(1)
    assert (p.x, p.y, p.tags) == (1, 2, ())
    assert p == cls(1, 2) and p != cls(1, 3) and hash(p) == hash(cls(1))
    assert repr(p).endswith("Point(x=1, y=2, tags=())")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 5  # type: ignore[misc]
    # compiled as dataclasses compiles, not under this test's `from __future__ import
    # annotations`: the generated __init__ carries the real return annotation, not text
    assert cls.__init__.__annotations__["return"] is None


def test_a_class_from_a_saved_cache_behaves_as_a_fresh_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.dont_write_bytecode", False)
    path = str(tmp_path / "dc.marshal")
    first = dccache._Cache(path)
    _check(_build(first))
    assert first.added > 0
    first.save()
    second = dccache._Cache(path)
    assert second.codes.keys() == first.codes.keys()
    _check(_build(second))
    assert second.added == 0  # every method came from the file


@pytest.mark.parametrize("damage", ["foreign-mode", "garbage", "other-python"])
def test_a_file_not_ours_or_damaged_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    monkeypatch.setattr("sys.dont_write_bytecode", False)
    path = tmp_path / "dc.marshal"
    cache = dccache._Cache(str(path))
    _build(cache)
    cache.save()
    if damage == "foreign-mode":
        os.chmod(path, 0o666)  # anyone could have written code into it
    elif damage == "garbage":
        path.write_bytes(dccache._MAGIC + b"\x00not marshal")
    else:
        path.write_bytes(b"cntrace-dc2 2.7.18\n" + path.read_bytes()[len(dccache._MAGIC) :])
    again = dccache._Cache(str(path))
    assert again.codes == {}
    _check(_build(again))


def test_a_damaged_entry_is_compiled_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.dont_write_bytecode", False)
    path = tmp_path / "dc.marshal"
    cache = dccache._Cache(str(path))
    _build(cache)
    cache.save()
    codes = {k: b"\x00damaged" for k in cache.codes}
    path.write_bytes(dccache._MAGIC + marshal.dumps(codes))
    again = dccache._Cache(str(path))
    assert again.codes == codes  # read: each entry is looked at only when a class asks
    _check(_build(again))
    assert again.added == len(codes)


def test_nothing_is_written_when_bytecode_writing_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.dont_write_bytecode", True)
    path = tmp_path / "dc.marshal"
    cache = dccache._Cache(str(path))
    _build(cache)
    cache.save()
    assert not path.exists()


def test_installed_once_for_the_package() -> None:
    assert "exec" in vars(dataclasses)  # cntrace/__init__ installed it
    hook = dataclasses.exec  # type: ignore[attr-defined]
    dccache.install()
    assert dataclasses.exec is hook  # type: ignore[attr-defined]
