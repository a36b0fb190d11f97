"""What every controller is: one tab's state, its workers and the messages it answers.

A controller drives the widgets of its tab (the screen only lays them out) and hears of the rest
of the console through three calls the app makes on every controller: a new Reading, a new
source container, its tab shown. Messages reach it through ``@handles``; slow work runs in
thread workers started with ``run`` and comes back through ``post``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from textual.worker import get_current_worker

from cntrace.model import Snapshot
from cntrace.tui.messages import ConsoleMessage
from cntrace.tui.views.containers import ContainerRow

if TYPE_CHECKING:
    from cntrace.tui.app import CntraceApp
    from cntrace.tui.screens.main import MainScreen

Handler = TypeVar("Handler", bound=Callable[..., None])
Route = tuple[type[ConsoleMessage], Callable[[Any], None]]


def handles(*kinds: type[ConsoleMessage]) -> Callable[[Handler], Handler]:
    """Mark a controller method as the answer to messages of ``kinds``."""

    def mark(method: Handler) -> Handler:
        setattr(method, "console_messages", kinds)  # noqa: B010 (a function attribute)
        return method

    return mark


def cancelled() -> bool:
    """Whether the worker running this thread was cancelled (superseded or the app exits)."""
    return get_current_worker().is_cancelled


@dataclass(frozen=True, slots=True)
class Reading:
    """One discovery read: the Snapshot, whether it is the detailed read, the table's rows
    (computed off the UI thread)."""

    snapshot: Snapshot
    detailed: bool
    rows: list[ContainerRow]


class Controller:
    """Base of the console's controllers; ``tab`` names the TabPane it drives (or None)."""

    tab: ClassVar[str | None] = None

    def __init__(self, app: CntraceApp) -> None:
        self.app = app

    @property
    def main(self) -> MainScreen:
        return self.app.main

    def routes(self) -> Iterator[Route]:
        """(message class, bound method) for every ``@handles`` method."""
        for name in dir(type(self)):
            kinds = getattr(getattr(type(self), name), "console_messages", ())
            for kind in kinds:
                yield kind, getattr(self, name)

    # ------------------------------------------------------------------ what the app tells it

    def snapshot_changed(self, reading: Reading) -> None:
        """A discovery read arrived (``app.snapshot`` is already ``reading.snapshot``)."""

    def source_changed(self) -> None:
        """The selected container (``app.source_key``, the path's source) changed."""

    def shown(self) -> None:
        """Its tab became the active one."""

    # ------------------------------------------------------------------ workers

    def run(
        self,
        work: Callable[[], None],
        *,
        group: str,
        name: str | None = None,
        exclusive: bool = False,
    ) -> None:
        """``work`` in a thread worker (named after its group unless ``name``); an error in it
        never kills the console."""
        self.app.run_worker(
            work,
            thread=True,
            group=group,
            name=name or group,
            exclusive=exclusive,
            exit_on_error=False,
        )

    def post(self, fn: Callable[..., object], *args: object) -> bool:
        """Run ``fn`` on the app's loop from a worker thread; False when the app is gone."""
        return self.app.post(fn, *args)
