"""The compute engine's run hook: progress reported to the run, cancelled passes stop their tasks."""

from __future__ import annotations

import threading
import time

import dask
import pytest

from calcium_dask.compute import compute
from calcium_dask.run_context import RunCancelled, RunContext, current_run, run_context

_RAN: list[int] = []
_LOCK = threading.Lock()


def _slow(i: int) -> int:
    time.sleep(0.2)
    with _LOCK:
        _RAN.append(i)
    return i


@pytest.fixture(scope="module")
def threads_client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client, client.as_current():
        yield client


def test_every_task_is_reported_to_the_run_in_order(threads_client):
    seen: list[tuple[str, int, int]] = []
    with run_context(RunContext(lambda label, done, total: seen.append((label, done, total)))):
        out = compute([dask.delayed(lambda i: i * i)(i) for i in range(5)], label="squares",
                      sums=[([dask.delayed(int)(i) for i in range(4)], sum)])
    assert out == [0, 1, 4, 9, 16, 6]
    assert seen[0] == ("squares", 0, 9) and seen[-1] == ("squares", 9, 9)
    assert [d for _, d, _ in seen] == list(range(10))


def test_cancel_stops_the_pass_and_its_tasks(threads_client):
    _RAN.clear()
    ctx = RunContext(lambda label, done, total: done == 1 and threading.Thread(target=ctx.cancel).start())
    with run_context(ctx), pytest.raises(RunCancelled):
        compute([dask.delayed(_slow, pure=False)(i) for i in range(30)], label="slow")
    time.sleep(0.5)  # let the two threads finish what they had started
    assert 1 <= len(_RAN) < 10  # 30 tasks of 0.2 s on 2 threads: the rest never ran
    assert threads_client.processing() == {threads_client.scheduler_info()["workers"].popitem()[0]: []}


def test_a_cancelled_run_submits_nothing_more(threads_client):
    _RAN.clear()
    ctx = RunContext()
    ctx.cancel()
    with run_context(ctx), pytest.raises(RunCancelled, match="cancelled"):
        compute([dask.delayed(_slow, pure=False)(0)], label="after cancel")
    time.sleep(0.3)
    assert _RAN == []


def test_the_context_belongs_to_its_thread(threads_client):
    """A run cancelled in one thread leaves another thread's computation alone."""
    ctx = RunContext()
    ctx.cancel()
    results: list = []

    def other() -> None:
        with threads_client.as_current():
            results.append((current_run(), compute([dask.delayed(int)(7)], label="other thread")))

    with run_context(ctx):
        assert current_run() is ctx
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert results == [(None, [7])] and current_run() is None


def test_tracked_futures_are_not_kept_alive(threads_client):
    """A pass lets go of a future once its result is taken: the run must not pin it on the cluster."""
    import gc

    ctx = RunContext()
    futures = [threads_client.submit(int, i) for i in range(5)]
    ctx.track(threads_client, futures)
    more = [threads_client.submit(int, 9)]
    ctx.track(threads_client, more)  # a later wave adds to the first
    assert len(ctx._futures) == 6
    del futures
    gc.collect()
    assert list(ctx._futures) == more
    ctx.cancel()
    assert more[0].status == "cancelled" or more[0].status == "finished"
