"""Where the console gets its Snapshots: the live host, or a saved file for a post-mortem.

The app only sees the ``SnapshotSource`` protocol, so tests build it from recorded data and the
live reader is never imported unless the console runs live. ``read(detail=False)`` is the cheap
read behind the first frame (links and addresses, what ``cntrace ls`` shows); ``detail=True``
adds routes, sockets, sysctls and rulesets, which path prediction and the details pane need.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
from typing import TYPE_CHECKING, Protocol

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


class LiveSource:
    """The live host through cntrace.sources.live, with a link-event change detector."""

    live = True
    description = "live"

    def __init__(self) -> None:
        self._watch: ChangeWatch | None = None
        self._child: tuple[int, int] | None = None  # prefetching process: pid, pipe
        self.first_rows: list[ContainerRow] | None = None  # the prefetched Snapshot's rows

    def prefetch(self) -> None:
        """Start the cheap read now in a child process, so it runs on another core while this
        one loads the UI toolkit (a thread would only take turns with it on the GIL). The first
        ``read(detail=False)`` takes it; call before any thread is started."""
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: read, hand the Snapshot over, leave without cleanup
            code = 0
            try:
                os.close(rfd)
                try:
                    from cntrace.tui.views.containers import container_rows

                    snap = self._read(detail=False)
                    # The table's rows too: computing them here keeps them off the UI's core.
                    payload = b"ok" + pickle.dumps((snap, container_rows(snap)), protocol=5)
                except CntraceError as exc:
                    payload = b"er" + pickle.dumps((int(exc.exit_code), str(exc)))
                with os.fdopen(wfd, "wb") as out:
                    out.write(payload)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(wfd)
        self._child = (pid, rfd)

    def _take_prefetched(self) -> Snapshot | None:
        """The prefetched Snapshot; None when the child failed unexpectedly (read again)."""
        assert self._child is not None
        pid, rfd = self._child
        self._child = None
        with os.fdopen(rfd, "rb") as pipe:
            data = pipe.read()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        if data.startswith(b"ok"):
            snap, self.first_rows = pickle.loads(data[2:])
            assert isinstance(snap, Snapshot)
            return snap
        if data.startswith(b"er"):
            code, message = pickle.loads(data[2:])
            err = CntraceError(message)
            err.exit_code = Exit(code)
            raise err
        return None

    def _read(self, *, detail: bool) -> Snapshot:
        from cntrace.sources import live

        return live.read_snapshot(detail=detail, sockets=detail, rulesets=detail)

    def read(self, *, detail: bool) -> Snapshot:
        if not detail and self._child is not None:
            got = self._take_prefetched()
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
        if self._child is not None:  # never collected (the console quit first)
            pid, rfd = self._child
            self._child = None
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
            os.close(rfd)
        if self._watch is not None:
            self._watch.close()
            self._watch = None
