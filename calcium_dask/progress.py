"""Computing dask graphs with a progress bar per pass (terminal) or plain lines (logs)."""

from __future__ import annotations

import sys
import time
from typing import Any, Sequence

import dask

__all__ = ["compute", "set_quiet"]

_QUIET = False
RETRIES = 3  # attempts after a task's first failure


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) progress output for this process."""
    global _QUIET
    _QUIET = quiet


def is_quiet() -> bool:
    """Whether progress output is silenced in this process."""
    return _QUIET


def _client() -> Any:
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


class _Reporter:
    """A rich bar on a terminal; otherwise one line per 25% (readable in CI logs)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self.t0 = label, total, 0, time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._next = 0.25
        self._bar = None
        if self.tty and not _QUIET:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._bar = Progress("[bold]{task.description}", BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)

    def step(self) -> None:
        self.done += 1
        if _QUIET:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif self.done / max(self.total, 1) >= self._next or self.done == self.total:
            pct = 100 * self.done // max(self.total, 1)
            print(f"{self.label}: {self.done}/{self.total} tasks ({pct}%, "
                  f"{time.perf_counter() - self.t0:.1f} s)", file=sys.stderr, flush=True)
            while self._next <= self.done / max(self.total, 1):
                self._next += 0.25

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def compute(objs: Sequence[Any], *, label: str, urgent: int = 0) -> list[Any]:
    """Compute dask collections/delayed objects, reporting progress as each one finishes.

    On a ``distributed`` client the objects run as futures (results gathered once); without
    one, the local scheduler runs them in order. The first ``urgent`` objects (e.g. a
    template the others wait for) are submitted first, ahead of the others' tasks: a task
    of theirs that is ready runs before any other ready task.
    """
    objs = list(objs)
    rep = _Reporter(label, len(objs))
    try:
        client = _client()
        if client is None:
            out = list(dask.compute(*objs))
            for _ in out:
                rep.step()
            return out
        from distributed import as_completed

        # a task that fails (a connection reset reading object storage, a lost worker) runs
        # again: every task reads its inputs and writes whole chunks, so a retry is safe
        futures = client.compute(objs[:urgent], retries=RETRIES, priority=1) if urgent else []
        futures += client.compute(objs[urgent:], retries=RETRIES)
        for _ in as_completed(futures):
            rep.step()
        return client.gather(futures)
    finally:
        rep.close()
