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


FLIGHT_PER_THREAD = 4  # positions in flight per worker thread: each has its next ones queued
MIN_FLIGHT, MAX_FLIGHT = 8, 2000  # bounds of the positions in flight, whatever the cluster's size
GATHER_BATCH = 256  # finished objects whose results are fetched together


def compute(objs: Sequence[Any], *, label: str, urgent: int = 0,
            sums: Sequence[Reduction] = ()) -> list[Any]:
    """Compute dask collections/delayed objects, reporting progress as each one finishes.

    On a ``distributed`` client the objects run as futures; without one, the local
    scheduler runs them in order. The first ``urgent`` objects (e.g. a template the others
    wait for) are submitted first, ahead of the others' tasks: a task of theirs that is
    ready runs before any other ready task.

    Each of ``sums``, a pair ``(parts, combine)``, is reduced to one value appended to the
    results; ``combine`` takes a list of values and returns their sum. On a client, parts
    are combined two at a time as they finish, so only a few of them wait in memory in
    whatever order the workers finish them (a fixed tree waits for each group's slowest
    part: correcting 20,000 frames, 60 partial sums of 8 MB each piled up on a worker).
    Without one, they are combined in a fixed tree, in the order the local scheduler runs.

    On a client at most :func:`flight_size` positions (an object and the parts at the same
    position, which usually share their inputs) are in flight: the rest are submitted as
    those finish, in their order. A pass over millions of frames never puts its whole graph
    on the scheduler, and the workers never read far ahead of what they compute: what the
    scheduler and each worker hold depends on the cluster's size, not on the session's
    length.
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
        return _Flight(client, objs, urgent, sums, rep).run()
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


def flight_size(client: Any) -> int:
    """Objects (positions) a pass keeps in flight on ``client``'s cluster: ``FLIGHT_PER_THREAD``
    per worker thread, within ``MIN_FLIGHT`` and ``MAX_FLIGHT``.

    Enough that every thread has its next object queued when one finishes (the pass
    refills when half have finished); no more, since the scheduler sends the reads of
    every object in flight to the workers as threads free up, and their data waits there
    (a motion pass over 60,000 frames with all its 60 blocks in flight held 3 blocks of
    raw frames per worker; over 20,000, 1 or 2). Asked again at each refill: an adaptive
    cluster sizes itself by the work in flight, and gets more as its workers join."""
    threads = sum(int(w.get("nthreads", 1)) for w in client.scheduler_info().get("workers", {}).values())
    return min(MAX_FLIGHT, max(MIN_FLIGHT, FLIGHT_PER_THREAD * threads))


class _Flight:
    """Futures of one :func:`compute` call on a client: submitted in bounded waves, results
    kept as they finish, sums reduced pairwise as their parts finish.

    A task that fails (a connection reset reading object storage, a lost worker) runs
    again up to ``RETRIES`` times: every task reads its inputs and writes whole chunks, so
    a retry is safe.
    """

    def __init__(self, client: Any, objs: list, urgent: int, sums: list[Reduction], rep: _Reporter) -> None:
        from distributed import as_completed

        self.client, self.rep = client, rep
        # an object and the parts at its position share their inputs (a motion block, its
        # record and its two summary parts): the flight counts positions, each this wide
        self.width = int(len(objs) > urgent) + len(sums) or 1
        self.size = MIN_FLIGHT * self.width  # set by each wave (flight_size)
        self.results: list[Any] = [None] * len(objs)
        self.combines = [c for _, c in sums]
        self.waiting: list[Any] = [None] * len(sums)  # a part (or partial sum) waiting for its pair
        self.finished: list[tuple[int, Any]] = []  # (slot, future) to gather, a batch at a time
        # what is submitted in one wave: (result slot or None, sum index or None, object)
        self.queue: list[tuple[int | None, int | None, Any]] = []
        longest = max([len(objs)] + [len(p) for p, _ in sums])
        for k in range(longest):
            if urgent <= k < len(objs):
                self.queue.append((k, None, objs[k]))
            for i, (parts, _) in enumerate(sums):
                if k < len(parts):
                    self.queue.append((None, i, parts[k]))
        self.queue.reverse()  # popped from the end, in order
        self.roles: dict[int, tuple[Any, list[tuple[int | None, int | None, bool]]]] = {}
        self.done = as_completed([])
        # held to the end: later waves' tasks depend on them (a released template would be
        # computed again)
        self.keep = client.compute(objs[:urgent], retries=RETRIES, priority=1) if urgent else []
        self._tell_run(self.keep)
        for k, f in enumerate(self.keep):
            self._track(f, k, None, True)

    def _tell_run(self, futures: list) -> None:
        """A service's run can cancel every future of the pass."""
        if self.rep.run is not None and futures:
            self.rep.run.track(self.client, futures)

    def _track(self, fut: Any, slot: int | None, sum_i: int | None, counts: bool) -> None:
        entry = self.roles.get(fut.key)
        if entry is None:
            self.roles[fut.key] = (fut, [(slot, sum_i, counts)])
            self.done.add(fut)
        else:  # equal objects share a key: one future plays every role
            entry[1].append((slot, sum_i, counts))

    def _submit_wave(self) -> None:
        if self.queue:  # workers that joined (an adaptive cluster scaling up) raise it
            self.size = flight_size(self.client) * self.width
        batch = [self.queue.pop() for _ in range(min(self.size - len(self.roles), len(self.queue)))]
        if not batch:
            return
        futures = self.client.compute([obj for _, _, obj in batch], retries=RETRIES)
        self._tell_run(futures)
        for (slot, sum_i, _), fut in zip(batch, futures):
            self._track(fut, slot, sum_i, True)

    def run(self) -> list[Any]:
        self._submit_wave()
        while self.roles:
            fut = next(self.done)
            _, todo = self.roles.pop(fut.key)
            if fut.status == "error":
                fut.result()  # raises the task's error now, not after the whole pass
            for slot, sum_i, counts in todo:
                if counts:
                    self.rep.step()
                if slot is not None:
                    self.finished.append((slot, fut))
                if sum_i is not None:
                    self._fold(sum_i, fut)
            if len(self.finished) >= GATHER_BATCH:
                self._gather()
            if len(self.roles) <= self.size // 2:
                self._submit_wave()
        self._gather()
        return self.results + self.client.gather(self.waiting)

    def _gather(self) -> None:
        """Fetch the finished objects' results in one round trip (and release them)."""
        values = self.client.gather([f for _, f in self.finished])
        for (slot, _), value in zip(self.finished, values):
            self.results[slot] = value
        self.finished.clear()

    def _fold(self, i: int, fut: Any) -> None:
        """Combine ``fut`` with the value waiting in sum ``i``, or let it wait."""
        if self.waiting[i] is None:
            self.waiting[i] = fut
            return
        # ahead of the pass's other ready tasks: a sum frees the memory of its two inputs
        merged = self.client.submit(self.combines[i], [self.waiting[i], fut], retries=RETRIES, priority=1)
        self._tell_run([merged])
        self.waiting[i] = None
        self._track(merged, None, i, False)
