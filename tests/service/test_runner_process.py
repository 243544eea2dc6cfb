"""The runner in a child process: told through a pipe, reporting its status back, ending with
its parent, and running a run queued in the database to the end."""

from __future__ import annotations

import time

from sqlalchemy import select

from calcium_dask.batch import Session
from calcium_dask.params import Params
from calcium_dask.service import queue
from calcium_dask.service.models import Run
from calcium_dask.service.runner_process import RunnerProcess, RunnerSpec


def _until(predicate, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_the_child_reports_its_runner_and_stops_when_told(sqlite_db, tmp_path):
    spec = RunnerSpec(f"sqlite:///{tmp_path / 'service.db'}", (str(tmp_path),), "t",
                      scheduler="tcp://127.0.0.1:9")
    runner = RunnerProcess(spec)
    assert runner.status().scheduler_error is None  # nothing heard yet
    runner.start()
    error = _until(lambda: runner.scheduler_error)
    assert "127.0.0.1:9" in error and runner.status().scheduler == "tcp://127.0.0.1:9"
    runner.wake()
    runner.cancel(12345)  # not one of its runs: nothing happens
    runner.stop(10)
    assert runner._proc.exitcode == 0
    runner.wake()  # after the end: said to nobody, no error


def test_the_child_ends_when_its_parent_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    import psutil

    code = ("import sys, time\n"
            "from calcium_dask.service.runner_process import RunnerProcess, RunnerSpec\n"
            f"r = RunnerProcess(RunnerSpec('sqlite:///{tmp_path / 'service.db'}', ({str(tmp_path)!r},), 't', "
            "scheduler='tcp://127.0.0.1:9'))\n"
            "r.start(); print(r._proc.pid, flush=True); time.sleep(120)")
    from calcium_dask.service.db import Database

    Database(f"sqlite:///{tmp_path / 'service.db'}").upgrade()
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(30)
    gone, alive = psutil.wait_procs([child], timeout=30)
    assert gone and not alive


def test_a_queued_run_is_run_by_the_child_to_the_end(sqlite_db, tmp_path, movie, client):
    out = tmp_path / "results"
    out.mkdir()
    rid = queue.submit(sqlite_db, Session("a", str(movie), str(out / "a.zarr"), Params.from_caiman({"fr": 30}),
                                          until="motion"))
    spec = RunnerSpec(f"sqlite:///{tmp_path / 'service.db'}", (str(movie.parent), str(out)), "t",
                      scheduler=client.scheduler.address, max_concurrent=1)
    runner = RunnerProcess(spec)
    runner.start()
    try:
        def state():
            with sqlite_db.session() as s:
                found = s.scalar(select(Run.state).where(Run.id == rid))
            return found if found in ("done", "failed", "cancelled") else None

        assert _until(state) == "done"
    finally:
        runner.stop(30)
    assert (out / "a.zarr" / "motion").is_dir()
