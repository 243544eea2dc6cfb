"""Computing dask graphs with a progress bar per pass (terminal) or plain lines (logs)."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Sequence

import dask

from .run_context import RunCancelled, current_run

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
        self.run = current_run()  # a service's run: told of every task, may cancel the pass
        if self.run is not None:
            self.run.report(label, 0, total)
        if self.tty and not _QUIET:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._bar = Progress("[bold]{task.description}", BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)

    def step(self) -> None:
        self.done += 1
        if self.run is not None:
            self.run.report(self.label, self.done, self.total)
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


Reduction = tuple[Sequence[Any], Callable[[list[Any]], Any]]


def compute(objs: Sequence[Any], *, label: str, urgent: int = 0,
            sums: Sequence[Reduction] = ()) -> list[Any]:
    """Compute dask collections/delayed objects, reporting progress as each one finishes.

    On a ``distributed`` client the objects run as futures (results gathered once); without
    one, the local scheduler runs them in order. The first ``urgent`` objects (e.g. a
    template the others wait for) are submitted first, ahead of the others' tasks: a task
    of theirs that is ready runs before any other ready task.

    Each of ``sums``, a pair ``(parts, combine)``, is reduced to one value appended to the
    results; ``combine`` takes a list of values and returns their sum. On a client, parts
    are combined two at a time as they finish, so only a few of them wait in memory in
    whatever order the workers finish them (a fixed tree waits for each group's slowest
    part: correcting 20,000 frames, 60 partial sums of 8 MB each piled up on a worker).
    Without one, they are combined in a fixed tree, in the order the local scheduler runs.
    """
    objs, sums = list(objs), list(sums)
    if any(len(parts) == 0 for parts, _ in sums):
        raise ValueError("every sum needs at least one part")
    rep = _Reporter(label, len(objs) + sum(len(parts) for parts, _ in sums))
    try:
        client = _client()
        if client is None:
            out = list(dask.compute(*objs, *(_tree(list(parts), combine) for parts, combine in sums)))
            for _ in range(rep.total):
                rep.step()
            return out
        # a task that fails (a connection reset reading object storage, a lost worker) runs
        # again: every task reads its inputs and writes whole chunks, so a retry is safe
        futures = client.compute(objs[:urgent], retries=RETRIES, priority=1) if urgent else []
        futures += client.compute(objs[urgent:], retries=RETRIES)
        parts = [client.compute(list(p), retries=RETRIES) for p, _ in sums]
        if rep.run is not None:
            rep.run.track(client, futures + [f for p in parts for f in p])
        totals = _reduce_as_completed(client, futures, parts, [c for _, c in sums], rep)
        return client.gather(futures) + client.gather(totals)
    except BaseException:  # distributed's CancelledError is not an Exception
        if rep.run is not None and rep.run.cancelled:
            raise RunCancelled("the run was cancelled") from None
        raise
    finally:
        if rep.run is not None:
            rep.run.untrack()
        rep.close()


def _tree(parts: list[Any], combine: Callable[[list[Any]], Any], split_every: int = 8) -> Any:
    """Delayed reduction of ``parts`` in a tree of bounded fan-in."""
    combine_d = dask.delayed(combine, pure=True)
    while len(parts) > 1:
        parts = [combine_d(parts[i:i + split_every]) for i in range(0, len(parts), split_every)]
    return parts[0]


def _reduce_as_completed(client: Any, futures: list, parts: list[list], combines: list, rep: _Reporter) -> list:
    """Wait for ``futures`` and reduce each list of ``parts`` pairwise as its parts finish:
    the futures of the totals (one per list, in order)."""
    from distributed import as_completed

    # id -> (future, its roles: (reduction or None, counts for progress)); a future that
    # stands for several equal objects or parts is tracked once and plays every role
    roles: dict[int, tuple[Any, list[tuple[int | None, bool]]]] = {}
    for i, fs in [(None, futures), *enumerate(parts)]:
        for f in fs:
            roles.setdefault(id(f), (f, []))[1].append((i, True))
    for fs in parts:
        fs.clear()  # a part's result is freed once combined: ``roles`` holds its only reference
    waiting: list[Any] = [None] * len(parts)
    done = as_completed([f for f, _ in roles.values()])
    for fut in done:
        _, todo = roles.pop(id(fut))
        if fut.status == "error":
            fut.result()  # raises the task's error now, not after the whole pass
        for i, counts in todo:
            if counts:
                rep.step()
            if i is None:
                continue
            if waiting[i] is None:
                waiting[i] = fut
                continue
            # ahead of the pass's other ready tasks: a sum frees the memory of its two inputs
            merged = client.submit(combines[i], [waiting[i], fut], retries=RETRIES, priority=1)
            waiting[i] = None
            if id(merged) not in roles:
                done.add(merged)
            roles.setdefault(id(merged), (merged, []))[1].append((i, False))
    return waiting
