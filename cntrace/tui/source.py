"""Where the console gets its Snapshots: the live host, or a saved file for a post-mortem.

The app only sees the ``SnapshotSource`` protocol, so tests build it from recorded data and the
live reader is never imported unless the console runs live. ``read(detail=False)`` is the cheap
read behind the first frame (links and addresses, what ``cntrace ls`` shows); ``detail=True``
adds routes, sockets, sysctls and rulesets, which path prediction and the details pane need.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, Protocol

from cntrace.errors import CntraceError, Exit
from cntrace.model import Snapshot
from cntrace.topology import Topology

if TYPE_CHECKING:
    from cntrace.sources.watch import ChangeWatch
    from cntrace.tui.views.containers import ContainerRow


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


class _Prefetch:
    """A read done in a forked child, handed back in two pickles over a pipe: first the header
    (the Snapshot without its namespaces and containers) with the table's rows, then the whole
    Snapshot. The first frame needs only the first, a few kilobytes; the second (up to seconds
    of unpickling on a big host) is taken by a worker after that frame is painted."""

    def __init__(self, read: Callable[[], Snapshot]) -> None:
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: read, hand it over, leave without cleanup
            code = 0
            try:
                os.close(rfd)
                with os.fdopen(wfd, "wb") as out:
                    try:
                        from cntrace.tui.views.containers import container_rows

                        snap = read()
                        # The rows too: computing them here keeps them off the UI's core.
                        first: tuple[object, ...] = ("ok", header_of(snap), container_rows(snap))
                    except CntraceError as exc:
                        first, snap = ("er", int(exc.exit_code), str(exc)), None
                    pickle.dump(first, out, protocol=5)
                    out.flush()
                    if snap is not None:
                        pickle.dump(snap, out, protocol=5)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(wfd)
        self.pid = pid
        self._pipe: BinaryIO | None = os.fdopen(rfd, "rb")
        self._first: tuple[Snapshot, list[ContainerRow]] | None = None

    def first(self) -> tuple[Snapshot, list[ContainerRow]] | None:
        """(header, rows), waiting for the child's read; None when the child failed
        unexpectedly. A CntraceError the child met is raised here."""
        if self._first is None and self._pipe is not None:
            try:
                got = pickle.load(self._pipe)
            except (EOFError, pickle.UnpicklingError):
                self.close()
                return None
            if got[0] == "er":
                self.close()
                err = CntraceError(got[2])
                err.exit_code = Exit(got[1])
                raise err
            self._first = (got[1], got[2])
        return self._first

    def snapshot(self) -> Snapshot | None:
        """The whole Snapshot (blocks while it is unpickled); None when the child failed."""
        if self.first() is None or self._pipe is None:
            return None
        try:
            snap = pickle.load(self._pipe)
        except (EOFError, pickle.UnpicklingError):
            snap = None
        self.close()
        return snap if isinstance(snap, Snapshot) else None

    def close(self) -> None:
        """Reap the child (killed if it still runs: the console quit first)."""
        if self._pipe is None:
            return
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(self.pid, 0)
        self._pipe.close()
        self._pipe = None


def header_of(snap: Snapshot) -> Snapshot:
    """``snap`` without namespaces or containers: what the status line says of it."""
    return dataclasses.replace(
        snap, netns=(), containers=(), stopped=(), runtime_networks=(), port_proxies=()
    )


class PrefetchedFile:
    """A saved snapshot read by a child while the parent loads the UI toolkit
    (``cntrace tui --snapshot FILE``); afterwards a RecordedSource.

    ``first_view()`` (the header and the rows) is all the first frame waits for; a bad file
    raises there, before the UI starts. ``read`` gives the whole Snapshot."""

    live = False

    def __init__(self, path: str) -> None:
        from cntrace.sources import recorded

        self.description = f"post-mortem: {path}"
        self._prefetch: _Prefetch | None = _Prefetch(lambda: recorded.load(path))
        self._snapshot: Snapshot | None = None
        self._path = path

    def first_view(self) -> tuple[Snapshot, list[ContainerRow]] | None:
        return self._prefetch.first() if self._prefetch is not None else None

    def read(self, *, detail: bool) -> Snapshot:
        if self._snapshot is None:
            got = self._prefetch.snapshot() if self._prefetch is not None else None
            self._prefetch = None
            if got is None:  # the child died: read it here
                from cntrace.sources import recorded

                got = recorded.load(self._path)
            self._snapshot = got
        return self._snapshot

    def changed(self) -> bool:
        return False

    def watch(self, snapshot: Snapshot) -> None:
        return None

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None


class LiveSource:
    """The live host through cntrace.sources.live, with a link-event change detector."""

    live = True
    description = "live"

    def __init__(self) -> None:
        self._watch: ChangeWatch | None = None
        self._prefetch: _Prefetch | None = None

    def prefetch(self) -> None:
        """Start the cheap read now in a child process, so it runs on another core while this
        one loads the UI toolkit (a thread would only take turns with it on the GIL). The first
        ``read(detail=False)`` takes it; call before any thread is started."""
        self._prefetch = _Prefetch(lambda: self._read(detail=False))

    def first_view(self) -> tuple[Snapshot, list[ContainerRow]] | None:
        """The prefetched read's header and rows (what the first frame shows); None without a
        prefetch or when its child failed."""
        return self._prefetch.first() if self._prefetch is not None else None

    def _read(self, *, detail: bool) -> Snapshot:
        from cntrace.sources import live

        return live.read_snapshot(detail=detail, sockets=detail, rulesets=detail)

    def read(self, *, detail: bool) -> Snapshot:
        if not detail and self._prefetch is not None:
            prefetch, self._prefetch = self._prefetch, None
            got = prefetch.snapshot()
            if got is not None:
                return got
        return self._read(detail=detail)

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
        if self._prefetch is not None:  # never collected (the console quit first)
            self._prefetch.close()
            self._prefetch = None
        if self._watch is not None:
            self._watch.close()
            self._watch = None
