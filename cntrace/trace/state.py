"""The ledger of host changes a tracing process has made, so a killed run can be undone.

Before cntrace adds anything to the host (a clsact qdisc, a tc filter, an nftables trace table)
it records it in /run/cntrace/trace/<pid>.json, and removes the record once the object is gone.
The file is written before the object exists, so a SIGKILL at any point leaves a record of
everything that may be there. `cntrace cleanup` (and the next tracing run) reads the records of
dead processes and removes what they list. The objects also carry their owner in their names
(tc filter ``cntrace:<pid>:<n>``, nft table ``cntrace_<pid>_<n>``), so a scan can recognise them
even without the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILTER_PREFIX = "cntrace:"
TABLE_PREFIX = "cntrace_"
FILTER_PRIO = 0xC7  # tc pref of cntrace's filters: early, so foreign filters cannot hide packets


def run_dir() -> Path:
    return Path(os.environ.get("CNTRACE_RUN_DIR", "/run/cntrace/trace"))


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def alive(pid: int, start: int | None) -> bool:
    now = process_start(pid)
    return now is not None and (start is None or now == start)


@dataclass(frozen=True, slots=True)
class Record:
    """One object on the host: kind is clsact | filter | nft_table."""

    kind: str
    netns_path: str
    netns_inode: int
    ifindex: int = 0
    ifname: str = ""
    parent: int = 0
    prio: int = 0
    protocol: int = 0
    handle: int = 0
    name: str = ""
    family: str = ""
    created: bool | None = None  # clsact: True when cntrace added it, None while unknown

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


_FIELDS = tuple(Record.__dataclass_fields__)


class Ledger:
    """This process's records (one file per process; thread-safe).

    Writes are batched per step (a target's qdisc and filters together) because every write
    rewrites the file; each happens before the objects it lists are created."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid or os.getpid()
        self.start = process_start(self.pid)
        self._lock = threading.Lock()
        self._records: dict[int, Record] = {}
        self._next = 1

    @property
    def path(self) -> Path:
        return run_dir() / f"{self.pid}.json"

    def add(self, rec: Record) -> int:
        return self.add_many([rec])[0]

    def add_many(self, recs: list[Record]) -> list[int]:
        with self._lock:
            ids = []
            for rec in recs:
                ids.append(self._next)
                self._records[self._next] = rec
                self._next += 1
            self._write()
            return ids

    def update(self, rid: int, rec: Record) -> None:
        with self._lock:
            self._records[rid] = rec
            self._write()

    def remove(self, rid: int) -> None:
        self.remove_many([rid])

    def remove_many(self, rids: list[int]) -> None:
        with self._lock:
            for rid in rids:
                self._records.pop(rid, None)
            self._write()

    def records(self) -> dict[int, Record]:
        with self._lock:
            return dict(self._records)

    def _write(self) -> None:
        path = self.path
        if not self._records:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        doc = {
            "pid": self.pid,
            "start": self.start,
            "records": [{f: getattr(r, f) for f in _FIELDS} for r in self._records.values()],
        }
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w") as fh:
            fh.write(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp, path)


_LEDGER: Ledger | None = None
_LEDGER_LOCK = threading.Lock()


def ledger() -> Ledger:
    """The ledger of this process (re-created after a fork)."""
    global _LEDGER
    with _LEDGER_LOCK:
        if _LEDGER is None or _LEDGER.pid != os.getpid():
            _LEDGER = Ledger()
        return _LEDGER


@dataclass(frozen=True, slots=True)
class Leftover:
    """Another process's ledger file."""

    path: Path
    pid: int
    start: int | None
    records: tuple[Record, ...]

    @property
    def owner_alive(self) -> bool:
        return alive(self.pid, self.start)


def leftovers() -> list[Leftover]:
    """Every ledger file but this process's own."""
    out = []
    base = run_dir()
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return []
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        path = base / name
        try:
            doc = json.loads(path.read_text())
            pid = int(doc["pid"])
            recs = tuple(Record.from_dict(r) for r in doc.get("records", []))
            start = doc.get("start")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid == os.getpid():
            continue
        out.append(Leftover(path, pid, int(start) if start is not None else None, recs))
    return out


def owner_of(name: str) -> int | None:
    """The pid in a cntrace object name (``cntrace:<pid>:<n>`` or ``cntrace_<pid>_<n>``)."""
    for prefix, sep in ((FILTER_PREFIX, ":"), (TABLE_PREFIX, "_")):
        if name.startswith(prefix):
            head = name[len(prefix) :].split(sep, 1)[0]
            return int(head) if head.isdigit() else None
    return None
