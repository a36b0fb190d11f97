"""Kernel addresses to function names, from /proc/kallsyms.

Reading and parsing kallsyms costs ~0.2 s, most of a warm trace's budget, so the sorted table of
text symbols is kept per boot (addresses move with KASLR on every boot) in
/run/cntrace/kallsyms-<boot id>.bin, a file only root can read, and loaded from there in a few
milliseconds afterwards.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import tempfile
import threading
from array import array
from pathlib import Path

KALLSYMS = "/proc/kallsyms"
_TEXT = re.compile(rb"^([0-9a-f]+) [tT] (\S+)", re.M)


def _cache_path() -> Path | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
    except OSError:
        return None
    base = Path(os.environ.get("CNTRACE_RUN_DIR", "/run/cntrace/trace")).parent
    return base / f"kallsyms-{boot}.bin"


class Kallsyms:
    """Resolve a kernel text address to ``function+0xoff``."""

    def __init__(self, path: str = KALLSYMS, use_cache: bool = True) -> None:
        self._path = path
        self._cache = _cache_path() if use_cache and path == KALLSYMS else None
        self._addrs: array[int] = array("Q")
        self._names: list[bytes] = []
        self._lock = threading.Lock()
        self._loaded = False

    def prewarm(self) -> None:
        """Load in a background thread (when the table is not cached yet)."""
        threading.Thread(target=self._ensure, name="cntrace-kallsyms", daemon=True).start()

    def _ensure(self) -> None:
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def _load(self) -> None:
        if self._cache is not None and self._load_cache(self._cache):
            return
        try:
            with open(self._path, "rb") as fh:
                text = fh.read()
        except OSError:
            return
        pairs = sorted((int(a, 16), n) for a, n in _TEXT.findall(text) if a.strip(b"0"))
        self._addrs = array("Q", (a for a, _ in pairs))
        self._names = [n for _, n in pairs]
        if self._cache is not None and self._addrs:
            self._save_cache(self._cache)

    def _load_cache(self, path: Path) -> bool:
        try:
            data = path.read_bytes()
        except OSError:
            return False
        try:
            count = int.from_bytes(data[:8], "little")
            addrs = array("Q")
            addrs.frombytes(data[8 : 8 + 8 * count])
            names = data[8 + 8 * count :].split(b"\0")
        except (ValueError, IndexError):
            return False
        if len(addrs) != count or len(names) != count:
            return False
        self._addrs, self._names = addrs, names
        return True

    def _save_cache(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(len(self._addrs).to_bytes(8, "little"))
                fh.write(self._addrs.tobytes())
                fh.write(b"\0".join(self._names))
            os.replace(tmp, path)

    @property
    def usable(self) -> bool:
        """False when addresses are hidden (kptr_restrict, no privilege): all read as 0."""
        self._ensure()
        return bool(self._addrs)

    def resolve(self, addr: int) -> str | None:
        if not addr:
            return None
        self._ensure()
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0:
            return None
        off = addr - self._addrs[i]
        name = self._names[i].decode(errors="replace")
        return f"{name}+{off:#x}" if off else name

    def function(self, addr: int) -> str | None:
        """Just the function name, without the offset."""
        sym = self.resolve(addr)
        return sym.split("+", 1)[0] if sym else None
