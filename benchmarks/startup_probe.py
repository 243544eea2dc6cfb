"""Dask worker preload of ``bench_startup.py``: when each worker was up, and when its first
task began, as files in ``$CALCIUM_DASK_PROBE_DIR`` (``<event>-<pid>``, a Unix time inside).

Loaded by the workers of the run under test through ``DASK_DISTRIBUTED__WORKER__PRELOAD``;
the run itself is not changed.
"""

from __future__ import annotations

import os
import time
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin


def _record(event: str) -> None:
    directory = os.environ.get("CALCIUM_DASK_PROBE_DIR")
    if directory:
        with open(os.path.join(directory, f"{event}-{os.getpid()}"), "w") as f:
            f.write(repr(time.time()))


class FirstTask(WorkerPlugin):
    """Records the moment this worker starts executing its first task."""

    name = "bench-startup-first-task"

    def __init__(self) -> None:
        self.seen = False

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish == "executing" and not self.seen:
            self.seen = True
            _record("first_task")


async def dask_setup(worker: Any) -> None:
    _record("worker_up")
    await worker.plugin_add(FirstTask())
