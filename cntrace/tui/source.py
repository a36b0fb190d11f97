"""Where the console gets its Snapshots: the live host, or a saved file for a post-mortem.

The app only sees the ``SnapshotSource`` protocol, so tests build it from recorded data and the
live reader is never imported unless the console runs live. ``read(detail=False)`` is the cheap
read behind the first frame (links and addresses, what ``cntrace ls`` shows); ``detail=True``
adds routes, sockets, sysctls and rulesets, which path prediction and the details pane need.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Protocol

from cntrace.model import Snapshot
from cntrace.topology import Topology

if TYPE_CHECKING:
    from cntrace.sources.watch import ChangeWatch


class SnapshotSource(Protocol):
    """What the console reads discovery from."""

    live: bool  # False: a saved snapshot; live features are disabled
    description: str  # how the status bar names it

    def read(self, *, detail: bool) -> Snapshot:
        """A Snapshot; may block (call it from a worker)."""
        ...

    def changed(self) -> bool:
        """Cheap and non-blocking: did containers start or stop since the last call?"""
        ...

    def watch(self, snapshot: Snapshot) -> None:
        """Aim the change detector at the host namespaces of ``snapshot``."""
        ...

    def close(self) -> None: ...


class RecordedSource:
    """A saved snapshot: always the same, already detailed, never changes."""

    live = False

    def __init__(self, snapshot: Snapshot, origin: str = "snapshot") -> None:
        self._snapshot = snapshot
        self.description = f"post-mortem: {origin}"

    @classmethod
    def load(cls, path: str) -> RecordedSource:
        from cntrace.sources import recorded

        return cls(recorded.load(path), path)

    def read(self, *, detail: bool) -> Snapshot:
        return self._snapshot

    def changed(self) -> bool:
        return False

    def watch(self, snapshot: Snapshot) -> None:
        return None

    def close(self) -> None:
        return None


class LiveSource:
    """The live host through cntrace.sources.live, with a link-event change detector."""

    live = True
    description = "live"

    def __init__(self) -> None:
        self._watch: ChangeWatch | None = None

    def read(self, *, detail: bool) -> Snapshot:
        from cntrace.sources import live

        return live.read_snapshot(detail=detail, sockets=detail, rulesets=detail)

    def _watcher(self) -> ChangeWatch:
        if self._watch is None:
            from cntrace.sources.watch import ChangeWatch

            self._watch = ChangeWatch()
        return self._watch

    def watch(self, snapshot: Snapshot) -> None:
        paths = []
        for ns in Topology(snapshot).hosts():
            if ns.is_root:
                paths.append("/proc/1/ns/net")
            elif ns.paths:
                paths.append(ns.paths[0])
        with contextlib.suppress(OSError):
            self._watcher().watch_namespaces(paths)

    def changed(self) -> bool:
        return self._watcher().poll()

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
