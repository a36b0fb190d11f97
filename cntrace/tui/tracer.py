"""The console's window onto live tracing: a small protocol and the real implementation.

The app talks to a ``Tracer`` only, so tests drive it with recorded data and no kernel, and the
eBPF machinery (cntrace.trace, which pulls in bcc) is imported the first time a live feature is
used, never at start. The real ``EngineTracer`` keeps one ``TraceEngine`` open for the whole run,
so probes are compiled and loaded once and later traces answer quickly, and closes it on exit so
nothing stays attached to the kernel.

Merging a TraceResult into the predicted hops is cntrace.trace.live's job (``trace_path``); the
console calls it with its engine when that function accepts one, else lets it trace one-shot.
"""

from __future__ import annotations

import importlib
import inspect
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cntrace.errors import BadInput, CntraceError, EnvironmentProblem
from cntrace.model import Packet, Path, Snapshot

if TYPE_CHECKING:
    from cntrace.trace.session import DropWatch, TraceEngine


@dataclass(frozen=True, slots=True)
class KernelDrop:
    """One packet the kernel freed as a drop, as the drops panel needs it."""

    t_ns: int  # since the watch started
    reason: str  # the kernel's name, e.g. NETFILTER_DROP
    location: str | None  # the freeing function
    netns: int | None  # namespace inode
    ifindex: int | None
    packet: Packet | None = None


@dataclass(frozen=True, slots=True)
class DropBatch:
    """What arrived since the previous batch, and the running count of lost events."""

    drops: tuple[KernelDrop, ...]
    lost: int = 0


Progress = Callable[[Path], None]  # a partial live path, as observations arrive


class TraceUnavailable(CntraceError):
    """Live tracing cannot run here; the message says why."""


class Tracer(Protocol):
    """Live features of the console."""

    def can_trace(self) -> tuple[bool, str]:
        """Whether ``trace`` can run, and why not (cheap: nothing is compiled or attached)."""
        ...

    def prepare(self) -> None:
        """Compile and load the probes ahead of the first trace (blocking; from a worker)."""
        ...

    def trace(self, snapshot: Snapshot, predicted: Path, progress: Progress | None = None) -> Path:
        """Send one probe along ``predicted`` and return the path with observations merged
        (mode ``live``). Blocking; raises TraceUnavailable or CntraceError."""
        ...

    def can_watch_drops(self) -> tuple[bool, str]: ...

    def drop_batches(self, stop: threading.Event) -> Iterator[DropBatch]:
        """Kernel drops in small batches (about four a second, possibly empty) until ``stop``."""
        ...

    def close(self) -> None:
        """Detach everything; idempotent, safe from any thread."""
        ...


# --------------------------------------------------------------------------- the real one


class EngineTracer:
    """Live tracing through cntrace.trace: one TraceEngine for the run, closed on exit."""

    def __init__(self, *, backend: str = "auto", timeout_s: float = 1.0) -> None:
        self.backend = backend
        self.timeout_s = timeout_s
        self.notices: list[str] = []
        self._engine: TraceEngine | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._watches: set[DropWatch] = set()

    # ------------------------------------------------------------------ tracing

    def _live(self) -> Any:
        """cntrace.trace.live: plans a trace from a prediction and merges what it saw."""
        try:
            live = importlib.import_module("cntrace.trace.live")
        except ImportError as exc:
            raise TraceUnavailable(
                f"live path tracing is not available in this build ({exc.name} is missing)"
            ) from None
        if getattr(live, "trace_path", None) is None:
            raise TraceUnavailable("live path tracing is not available (no trace_path)")
        return live

    def _can(self, doing: str, load: Callable[[], object]) -> tuple[bool, str]:
        """Whether ``doing`` can run: not closed, root, and ``load`` finds what it needs."""
        if self._closed:
            return False, "closed"
        if os.geteuid() != 0:
            return False, f"{doing} needs root"
        try:
            load()
        except TraceUnavailable as exc:
            return False, exc.message
        return True, "ok"

    def can_trace(self) -> tuple[bool, str]:
        return self._can("live tracing", self._live)

    def _engine_locked(self) -> TraceEngine:
        if self._closed:
            raise TraceUnavailable("the console is closing")
        if self._engine is None:
            from cntrace.trace.session import TraceEngine

            self._engine = TraceEngine(self.backend, notice=self.notices.append)  # type: ignore[arg-type]
        return self._engine

    def prepare(self) -> None:
        with self._lock:
            engine = self._engine_locked()
            engine.backend()

    def trace(self, snapshot: Snapshot, predicted: Path, progress: Progress | None = None) -> Path:
        live = self._live()
        with self._lock:
            try:
                result = self._trace_locked(live, snapshot, predicted, progress)
            except CntraceError:
                raise
            except OSError as exc:
                raise TraceUnavailable(f"live trace failed: {exc}") from exc
        path = result[0] if isinstance(result, tuple) else result
        if not isinstance(path, Path):
            raise TraceUnavailable("live trace returned no path")
        return path

    def _trace_locked(
        self,
        live: Any,
        snapshot: Snapshot,
        predicted: Path,
        progress: Progress | None,
    ) -> Any:
        """Through the kept engine when cntrace.trace.live lets us (plan_for + merge), so the
        probes stay loaded between traces; else its one-shot trace_path."""
        params = inspect.signature(live.trace_path).parameters
        one_shot: dict[str, Any] = {"timeout": self.timeout_s, "backend": self.backend}
        if "engine" in params:
            kwargs: dict[str, Any] = {"timeout": self.timeout_s, "engine": self._engine_locked()}
            if "progress" in params and progress is not None:
                kwargs["progress"] = progress
            return live.trace_path(snapshot, predicted, **kwargs)
        plan_for = getattr(live, "plan_for", None)
        merge = getattr(live, "merge", None)
        if plan_for is None or merge is None:
            return live.trace_path(snapshot, predicted, **one_shot)
        plan = plan_for(snapshot, predicted, backend=self.backend, timeout=self.timeout_s)
        engine = self._engine_locked()
        try:
            observed = engine.trace(plan)
        except (EnvironmentProblem, BadInput):
            # e.g. the source's kernel refuses to send the probe: trace_path turns that into
            # an observation (or says why it cannot trace); it is rare, so one-shot is fine.
            return live.trace_path(snapshot, predicted, **one_shot)
        return merge(predicted, observed)

    # ------------------------------------------------------------------ drops

    def can_watch_drops(self) -> tuple[bool, str]:
        return self._can("watching kernel drops", self._session)

    @staticmethod
    def _session() -> None:
        """cntrace.trace.session loads (it pulls in bcc)."""
        try:
            from cntrace.trace import session  # noqa: F401
        except ImportError as exc:
            raise TraceUnavailable(f"the tracing module cannot load: {exc}") from None

    def drop_batches(self, stop: threading.Event) -> Iterator[DropBatch]:
        from cntrace.trace.session import DropWatch

        watch = DropWatch()
        with self._lock:
            if self._closed:
                watch.close()
                return
            self._watches.add(watch)
        self.notices.extend(watch.notices)
        try:
            while not stop.is_set():
                batch = [
                    KernelDrop(
                        t_ns=d.t_ns,
                        reason=d.reason,
                        location=d.location,
                        netns=d.netns_inode,
                        ifindex=d.ifindex,
                        packet=d.packet,
                    )
                    for d in watch.drops(timeout_s=0.25)
                ]
                yield DropBatch(tuple(batch), watch.lost())
        finally:
            with self._lock:
                self._watches.discard(watch)
            watch.close()

    # ------------------------------------------------------------------ teardown

    def close(self) -> None:
        """Detach the engine's tc programs and nft tables; wait for a running trace first."""
        got = self._lock.acquire(timeout=10)
        try:
            self._closed = True
            if self._engine is not None:
                self._engine.close()
                self._engine = None
        finally:
            if got:
                self._lock.release()
