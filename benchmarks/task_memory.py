"""A preload for the benchmarks: the peak RSS of a worker while each task prefix runs, and
what the scheduler held at its own peak.

    dask worker ADDRESS --preload benchmarks/task_memory.py
    dask scheduler --preload benchmarks/task_memory.py

On a worker, a thread samples the process's RSS and managed memory (the bytes of task
results it holds) every ``INTERVAL`` seconds and charges each sample to the prefixes of the
tasks executing at that moment, so a whole-process peak can be traced to the phase that
made it. ``peaks(dask_worker)``, run with ``Client.run``, returns ``{prefix: (peak RSS,
managed bytes at that peak)}`` and starts a new record. On the scheduler, the sample at
its peak RSS keeps the number of tasks it knew then, by prefix:
``scheduler_peak(dask_scheduler)`` (``Client.run_on_scheduler``) returns ``(peak RSS,
{prefix: tasks})``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import psutil
from distributed import WorkerPlugin

INTERVAL = 0.05
NAME = "task-memory"


class TaskMemory(WorkerPlugin):
    """Samples RSS and managed memory, keyed by the executing tasks' prefixes."""

    name = NAME

    def __init__(self) -> None:
        self.record: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()

    def setup(self, worker) -> None:
        self.worker = worker
        self.proc = psutil.Process()
        threading.Thread(target=self._loop, daemon=True, name=NAME).start()

    def teardown(self, worker) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(INTERVAL):
            state = self.worker.state
            prefixes = {ts.prefix for ts in list(state.executing)} or {"(idle)"}
            rss, managed = self.proc.memory_info().rss, state.nbytes
            for p in prefixes:
                if rss > self.record.get(p, (0, 0))[0]:
                    self.record[p] = (rss, managed)

    def take(self) -> dict[str, tuple[int, int]]:
        out, self.record = self.record, {}
        return out


def peaks(dask_worker) -> dict[str, tuple[int, int]]:
    """This worker's record since the last call (for ``Client.run``)."""
    return dask_worker.plugins[NAME].take()


class SchedulerMemory:
    """Samples the scheduler's RSS; at each new peak, counts its tasks by prefix."""

    def __init__(self, scheduler) -> None:
        self.scheduler, self.proc = scheduler, psutil.Process()
        self.peak: tuple[int, dict[str, int]] = (0, {})
        threading.Thread(target=self._loop, daemon=True, name=NAME).start()

    def _loop(self) -> None:
        while True:
            time.sleep(INTERVAL)
            rss = self.proc.memory_info().rss
            if rss > self.peak[0] + 2**20:  # counted again only when the peak grows by 1 MiB
                self.peak = (rss, dict(Counter(ts.prefix.name for ts in list(self.scheduler.tasks.values()))))

    def take(self) -> tuple[int, dict[str, int]]:
        out, self.peak = self.peak, (0, {})
        return out


def scheduler_peak(dask_scheduler) -> tuple[int, dict[str, int]]:
    """The scheduler's peak RSS since the last call and its tasks by prefix then."""
    return dask_scheduler.extensions[NAME].take()


async def dask_setup(server) -> None:
    from distributed import Scheduler

    if isinstance(server, Scheduler):
        server.extensions[NAME] = SchedulerMemory(server)
    else:
        await server.plugin_add(TaskMemory(), name=NAME)
