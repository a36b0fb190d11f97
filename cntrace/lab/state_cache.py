"""A lab's checked state, kept beside its JSON file so the next command need not check it again.

Every discovery on a lab host reads the lab's state file; for a lab of 1,000 containers parsing,
decoding and checking it (state.load) is ~25 ms of every `path`, `show`, `ls` and console start,
spent before the path can be read. The result is the same until the file changes, so the first
load after a change writes the checked LabState as a pickle (~5 ms to read back), keyed by the
JSON text (its length and CRC-32: a rewrite within one clock tick keeps size and mtime) and by
the state classes' fields (state.py).

A pickle runs code when read, so only one this user wrote is read: owned by the effective user,
writable by nobody else, in a directory nobody else can write, not a symlink. Anything else
(foreign, stale, damaged, another cntrace's classes) is ignored and the JSON is read instead.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import stat
from pathlib import Path
from typing import Any

LIMIT = 64 << 20  # bytes: far above a lab of the largest size the spec allows


def path_of(json_path: Path) -> Path:
    return json_path.with_suffix(".pickle")


def read(json_path: Path, key: tuple[Any, ...]) -> Any | None:
    """The state pickled for ``key``, or None (absent, not trusted, stale or damaged)."""
    path = path_of(json_path)
    if not _trusted_dir(path.parent):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not _trusted(st) or st.st_size > LIMIT:
            return None
        with os.fdopen(fd, "rb") as f:
            fd = -1
            blob = f.read()
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)
    try:
        got = pickle.loads(blob)  # our own file, checked above
    except Exception:  # any damage: the JSON is read instead
        return None
    if not (isinstance(got, tuple) and len(got) == 2 and got[0] == key):
        return None
    return got[1]


def write(json_path: Path, key: tuple[Any, ...], state: object) -> None:
    """Keep ``state`` for ``key``; a directory or file that cannot be written is left be."""
    path = path_of(json_path)
    if not _trusted_dir(path.parent):
        return
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            pickle.dump((key, state), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def remove(json_path: Path) -> None:
    path_of(json_path).unlink(missing_ok=True)


def _trusted(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _trusted_dir(path: Path) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022
