"""A run's context: where ``compute()`` reports its progress, and how a run is cancelled.

A caller that runs the pipeline on behalf of someone else (the service's runner) enters a
:class:`RunContext` in the thread that calls :func:`~calcium_dask.pipeline.run_pipeline`.
Every pass of the compute engine in that thread then reports each finished task to it and
registers the futures it submitted, so that :meth:`RunContext.cancel`, called from any
thread, cancels them on the cluster and makes the pass raise :class:`RunCancelled`.
Without a context (the CLI, a notebook) nothing changes.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from .errors import CalciumDaskError

__all__ = ["RunCancelled", "RunContext", "run_context", "current_run"]

#: (pass label, tasks done, tasks in the pass) -> None
ProgressCallback = Callable[[str, int, int], None]


class RunCancelled(CalciumDaskError):
    """The run was cancelled while a pass was computing (its tasks were cancelled)."""


class RunContext:
    """Progress sink and cancellation switch of one run (thread-safe).

    Parameters
    ----------
    on_progress : callable, optional
        Called as ``on_progress(label, done, total)`` in the run's thread after each task
        of a pass finishes; it must be quick (it runs between two results).
    """

    def __init__(self, on_progress: ProgressCallback | None = None) -> None:
        self.on_progress = on_progress
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._client: Any = None
        # held weakly: a future the pass has let go of (its result taken) is not kept alive
        self._futures: weakref.WeakSet[Any] = weakref.WeakSet()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Cancel the run: the futures of the current pass now, every later pass at its start."""
        self._cancelled.set()
        with self._lock:
            client, futures = self._client, list(self._futures)
        if client is not None and futures:
            client.cancel(futures)

    def check(self) -> None:
        """Raise :class:`RunCancelled` once the run is cancelled."""
        if self._cancelled.is_set():
            raise RunCancelled("the run was cancelled")

    def report(self, label: str, done: int, total: int) -> None:
        """Pass ``done`` of ``total`` tasks of the pass ``label`` to ``on_progress``, then
        raise :class:`RunCancelled` if the run was cancelled."""
        if self.on_progress is not None:
            self.on_progress(label, done, total)
        self.check()  # between two results: a cancelled pass stops waiting at once

    def track(self, client: Any, futures: Sequence[Any]) -> None:
        """Add futures the current pass submitted (a pass may submit in several waves)."""
        with self._lock:
            self._client = client
            self._futures.update(futures)
        if self._cancelled.is_set():  # cancelled while they were being submitted
            client.cancel(list(futures))
            self.check()

    def untrack(self) -> None:
        """The pass is over: forget its futures."""
        with self._lock:
            self._client = None
            self._futures.clear()


_CURRENT: ContextVar[RunContext | None] = ContextVar("calcium_dask_run", default=None)


def current_run() -> RunContext | None:
    """The run context entered in this thread, if any."""
    return _CURRENT.get()


@contextmanager
def run_context(ctx: RunContext) -> Iterator[RunContext]:
    """Make ``ctx`` the current run context of this thread for the ``with`` block."""
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)
