"""A worker process dies in the middle of a stage: dask reschedules, the nanny restarts it, same results.

The kill is timed by a scheduler plugin (the LocalCluster's scheduler runs in this process):
when the n-th task of the stage is sent to a worker, that worker's process gets SIGKILL,
so it dies holding a task of the stage in flight and the finished results of the stage's
earlier tasks that it kept in memory (which dask must recompute from their lineage).
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from dask.utils import key_split
from distributed.diagnostics.plugin import SchedulerPlugin

from calcium_dask.pipeline import run_pipeline
from calcium_dask.compute import set_quiet

from ..conftest import local_cluster
from .conftest import PARAMS, assert_same_results, snapshot


class KillWorkerOnTask(SchedulerPlugin):
    """SIGKILL the worker that receives the ``nth`` task whose prefix is in ``prefixes``."""

    name = "kill-worker-on-task"

    def __init__(self, scheduler, prefixes: set[str], nth: int, pids: dict[str, int]) -> None:
        self.scheduler, self.prefixes, self.nth, self.pids = scheduler, prefixes, nth, pids
        self.seen = 0
        self.killed: tuple[str, int, str] | None = None

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if self.killed is not None or finish != "processing" or key_split(key) not in self.prefixes:
            return
        self.seen += 1
        if self.seen < self.nth:
            return
        ts = self.scheduler.tasks.get(key)
        ws = ts.processing_on if ts is not None else None
        pid = self.pids.get(ws.address) if ws is not None else None
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self.killed = (ws.address, pid, str(key))


@pytest.fixture(scope="module")
def own_cluster():
    """2 process workers under nannies (as users run it), apart from the session's cluster."""
    with local_cluster() as client:
        yield client


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed child of a nanny may linger as a zombie until reaped
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.parametrize("stage, prefixes, nth", [
    ("motion correction", {"correct_block"}, 4),
    ("CNMF patches", {"fit_group"}, 3),
    ("refit", {"aty_span", "yct_span"}, 3),
], ids=["motion", "cnmf-patches", "refit"])
def test_worker_killed_mid_stage(own_cluster, reference, sim_small, tmp_path, stage, prefixes, nth):
    client = own_cluster
    client.wait_for_workers(2, timeout=120)
    pids = client.run(os.getpid)
    scheduler = client.cluster.scheduler
    plugin = KillWorkerOnTask(scheduler, prefixes, nth, pids)
    scheduler.add_plugin(plugin)
    out = str(tmp_path / "run.zarr")
    set_quiet(True)
    try:
        with client.as_current():
            summary = run_pipeline(str(sim_small), out, PARAMS)
    finally:
        set_quiet(False)
        scheduler.remove_plugin(name=plugin.name)
    assert plugin.killed is not None, f"no {prefixes} task reached a worker ({plugin.seen} seen)"
    address, pid, key = plugin.killed
    assert not _alive(pid), f"worker {address} (pid {pid}) survived SIGKILL"
    assert [r["status"] for r in summary.rows] == ["ran"] * 3
    assert_same_results(snapshot(out), reference.arrays)
    # the nanny brought the worker back (new process, new address)
    deadline = time.monotonic() + 120
    while len(client.scheduler_info()["workers"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    now = client.run(os.getpid)
    assert len(now) == 2 and pid not in now.values(), now
