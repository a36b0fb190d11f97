"""Compiled dataclass methods, kept across runs like Python's own bytecode cache.

`@dataclass` writes each class's ``__init__``, ``__repr__``, ``__eq__``, ``__hash__`` and the
frozen ``__setattr__``/``__delattr__`` as source text and compiles it on every import: for the
~80 classes `cntrace path` imports that is ~450 compilations, ~50 ms of every run, the largest
fixed cost after the interpreter itself. The text is the same on every run, so its code object
is too: :func:`install` gives the dataclasses module an ``exec`` that compiles a text once and
keeps the code object in a marshal file beside cntrace's bytecode, keyed by the whole text.
Each code object stays marshalled in the file's dict until a class asks for it: the file holds
the texts of every command (and of older code, until it outgrows its limit), and unmarshalling
all of them was ~10 ms of a run that needs a third.

The cache only ever replaces ``compile(text)`` with the code object of that very text, so a
class is built exactly as without it. A file that is not ours (owner, mode), from another
interpreter, or damaged is ignored; nothing is written when bytecode writing is off.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import marshal
import os
import sys
from types import CodeType
from typing import Any

_MAGIC = b"cntrace-dc2 " + sys.version.encode() + b"\n"
_LIMIT = 4 << 20  # bytes: far above what cntrace's classes need (~0.3 MB)


def cache_path() -> str:
    """Where the cache lives: with cntrace's bytecode (or under PYTHONPYCACHEPREFIX)."""
    here = os.path.dirname(os.path.abspath(__file__))
    tag = sys.implementation.cache_tag or "python"
    if sys.pycache_prefix:
        base = os.path.join(sys.pycache_prefix, here.lstrip(os.sep))
    else:
        base = os.path.join(here, "__pycache__")
    return os.path.join(base, f"dataclasses.{tag}.marshal")


class _Cache:
    def __init__(self, path: str) -> None:
        self.path = path
        self.codes: dict[str, bytes] = _load(path)  # text -> its code object, marshalled
        self.used: set[str] = set()
        self.added = 0

    def exec(self, source: Any, globals_: Any = None, locals_: Any = None) -> None:
        """``exec`` as dataclasses calls it, with the compiled text looked up first."""
        if not isinstance(source, str):
            exec(source, globals_, locals_)
            return
        self.used.add(source)
        code = _code(self.codes.get(source))
        if code is None:
            # dont_inherit: compiled as dataclasses' own exec() would, without this module's
            # `from __future__ import annotations` (which would turn annotations into text)
            code = compile(source, "<string>", "exec", dont_inherit=True)
            self.codes[source] = marshal.dumps(code)
            self.added += 1
        exec(code, globals_, locals_)

    def save(self) -> None:
        if not self.added or sys.dont_write_bytecode:
            return
        blob = _MAGIC + marshal.dumps(self.codes)
        if len(blob) > _LIMIT:  # texts of older code piled up: keep this run's only
            blob = _MAGIC + marshal.dumps({k: v for k, v in self.codes.items() if k in self.used})
            if len(blob) > _LIMIT:
                return
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, self.path)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _code(raw: bytes | None) -> CodeType | None:
    """A cached entry's code object (None: absent or damaged, compiled afresh)."""
    if raw is None:
        return None
    try:
        code = marshal.loads(raw)
    except (EOFError, ValueError, TypeError):
        return None
    return code if isinstance(code, CodeType) else None


def _load(path: str) -> dict[str, bytes]:
    """The cached code objects, or none when the file is absent, foreign or damaged."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022 or st.st_size > _LIMIT:
            return {}  # someone else's file: its code would run as us
        with os.fdopen(fd, "rb") as f:
            fd = -1
            blob = f.read()
    except OSError:
        return {}
    finally:
        if fd >= 0:
            os.close(fd)
    if not blob.startswith(_MAGIC):
        return {}
    try:
        codes = marshal.loads(blob[len(_MAGIC) :])
    except (EOFError, ValueError, TypeError):
        return {}
    if not isinstance(codes, dict):
        return {}
    return {k: v for k, v in codes.items() if isinstance(k, str) and isinstance(v, bytes)}


def install() -> None:
    """Route dataclasses' compilations through the cache (once per process)."""
    if "exec" in vars(dataclasses):
        return  # already installed (or someone else's hook: leave it)
    cache = _Cache(cache_path())
    dataclasses.exec = cache.exec  # type: ignore[attr-defined]  # shadows the builtin there
    atexit.register(cache.save)
