"""The cluster helper: a local cluster with pinned threads, or an address from the environment."""

from __future__ import annotations

import io

import dask.array as da
import pytest

from calcium_dask.cluster import connect
from calcium_dask.errors import ClusterError


def test_local_cluster_one_thread_per_worker_blas_pinned():
    out = io.StringIO()
    with connect(n_workers=2, memory_limit="1GB", dashboard_address="127.0.0.1:0", stream=out) as client:
        info = client.scheduler_info()
        assert len(info["workers"]) == 2
        assert all(w["nthreads"] == 1 for w in info["workers"].values())
        env = client.run(lambda: __import__("os").environ.get("OMP_NUM_THREADS"))
        assert set(env.values()) == {"1"}
        cv2_threads = client.run(lambda: __import__("cv2").getNumThreads())
        assert set(cv2_threads.values()) == {1}
        zarr_threads = client.run(lambda: __import__("zarr").config.get("threading.max_workers"))
        assert set(zarr_threads.values()) == {1}
        assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.WORKER_SATURATION) == 1.0
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert float(da.ones((100, 100), chunks=50).sum().compute()) == 10000.0
        client.cluster.close()
    assert "Dask dashboard: http://127.0.0.1:" in out.getvalue()


def test_local_workers_reuse_freed_memory():
    """Freed arrays of a few MB are reused by glibc rather than re-faulted from the kernel
    (dask's default malloc settings made every such array fresh, zeroed pages)."""

    def faults_of_reallocations() -> int:
        import resource

        import numpy as np

        np.ones(2**20)  # 8 MB, allocated and freed once
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        for _ in range(20):
            np.ones(2**20)
        return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before

    with connect(n_workers=1, memory_limit="1GB", dashboard_address=None, quiet=True) as client:
        client.run(faults_of_reallocations)  # the thread's heap is set up
        faults = client.run(faults_of_reallocations)
        client.cluster.close()
    # fresh 8 MB arrays fault at least once each (4 huge pages, or 2048 small ones)
    assert max(faults.values()) < 20


def test_address_from_environment(monkeypatch):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as lc:
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", lc.scheduler_address)
        with connect(quiet=True) as client:
            assert client.scheduler.address == lc.scheduler_address


def test_no_dashboard_takes_no_fixed_port():
    """``dashboard_address=None``: no dashboard, and the scheduler's HTTP server stays off 8787
    (two notebooks on one machine must not fight over it)."""
    out = io.StringIO()
    with connect(n_workers=1, processes=False, dashboard_address=None, stream=out) as client:
        http = client.cluster.scheduler.http_server
        ports = {s.getsockname()[1] for s in http._sockets.values()}
        hosts = {s.getsockname()[0] for s in http._sockets.values()}
        assert 8787 not in ports and hosts == {"127.0.0.1"}
        assert "/status" not in str(client.cluster.scheduler.http_application.default_router.rules)
        client.cluster.close()
    assert "(no dashboard)" in out.getvalue()


def test_bad_address_fails_fast():
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:1"):
        connect("tcp://127.0.0.1:1", quiet=True, timeout="2s")


def test_urgent_objects_run_ahead_and_results_keep_their_order(client):
    """``compute(..., urgent=1)``: the first object's tasks outrank every other ready task."""
    import time

    import dask

    from calcium_dask.compute import compute

    def stamp(x):
        time.sleep(0.02)
        return x, time.time()

    others = [dask.delayed(stamp, pure=False)(i) for i in range(30)]
    first = dask.delayed(stamp, pure=False)(-1)
    out = compute([first] + others, label="test", urgent=1)
    assert [x for x, _ in out] == [-1, *range(30)]
    n_workers = len(client.scheduler_info()["workers"])
    assert sorted(t for _, t in out).index(out[0][1]) < n_workers  # among the first to start


def test_lower_priority_raises_a_worker_process_niceness():
    import subprocess
    import sys

    code = ("import os; from calcium_dask.cluster import LowerPriority; before = os.nice(0); "
            "LowerPriority(3).setup(None); print(os.nice(0) - before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "3"


def test_the_service_lowers_only_its_own_local_workers(monkeypatch, tmp_path):
    """Its local cluster computes beside the web server; a shared scheduler's workers are not its."""
    pytest.importorskip("fastapi")
    import calcium_dask.cluster as cluster
    from calcium_dask.cluster import LowerPriority
    from calcium_dask.service.db import Database
    from calcium_dask.service.paths import AllowedRoots
    from calcium_dask.service.runner import WORKER_NICE, Runner

    class FakeClient:
        status = "running"
        scheduler = type("S", (), {"address": "tcp://127.0.0.1:1"})()

        def __init__(self):
            self.plugins = []

        def register_plugin(self, plugin):
            self.plugins.append(plugin)

    made = []
    monkeypatch.setattr(cluster, "connect", lambda *a, **k: made.append(FakeClient()) or made[-1])
    db = Database(f"sqlite:///{tmp_path / 's.db'}")
    db.upgrade()
    roots = AllowedRoots.from_options([str(tmp_path)])
    for scheduler, lowered in ((None, True), ("tcp://10.0.0.1:8786", False)):
        runner = Runner(db, roots, "test", scheduler=scheduler)
        assert runner._ensure_client()
        nice = [p.increment for p in made[-1].plugins if isinstance(p, LowerPriority)]
        assert nice == ([WORKER_NICE] if lowered else [])
    db.close()


def test_opencv_is_loaded_before_a_worker_process_starts_beside_another_thread():
    """cv2's loader has its own folder on sys.path while it loads: a worker process started
    then (while another thread imported the pipeline) took cv2/typing for Python's typing
    and its nanny failed to start. With no other thread no load can be in progress."""
    import subprocess
    import sys

    code = ("import sys, threading, time; from calcium_dask.worker_server import settle_imports\n"
            "settle_imports(); alone = 'cv2' in sys.modules\n"
            "threading.Thread(target=time.sleep, args=(2,), daemon=True).start()\n"
            "settle_imports(); print(alone, 'cv2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False True"


def test_local_workers_are_forked_from_a_server_that_loaded_their_modules():
    """No worker imports Dask and the task modules itself: they were loaded by the fork
    server, with the environment malloc and the thread pools read when they load."""
    with connect(n_workers=2, memory_limit="1GB", dashboard_address=None, quiet=True) as client:
        parents = client.run(lambda: __import__("psutil").Process().parent().cmdline())
        assert all("multiprocessing.forkserver" in " ".join(cmd) for cmd in parents.values())

        def server_state():
            import sys

            import psutil

            server = psutil.Process().parent()
            env = server.environ()
            return (env.get("OPENBLAS_NUM_THREADS"), env.get("MALLOC_MMAP_THRESHOLD_"),
                    "calcium_dask.motion.correct" in sys.modules)

        states = set(client.run(server_state).values())
        assert states == {("1", str(32 * 2**20), True)}
        client.cluster.close()


def test_spawn_start_method_still_starts_workers_from_this_process():
    import os

    with connect(n_workers=1, memory_limit="1GB", dashboard_address=None, quiet=True,
                 start_method="spawn") as client:
        pids = client.run(lambda: __import__("os").getppid())
        assert set(pids.values()) == {os.getpid()}
        malloc = client.run(lambda: __import__("os").environ.get("MALLOC_MMAP_THRESHOLD_"))
        assert set(malloc.values()) == {str(32 * 2**20)}
        client.cluster.close()


def test_the_dashboard_is_served_once_the_cluster_is_up():
    """The scheduler starts without Bokeh (its import delayed the workers by ~1 s); the
    dashboard's pages are added beside, and the printed link serves them."""
    import time
    import urllib.error
    import urllib.request

    with connect(n_workers=1, processes=False, dashboard_address="127.0.0.1:0", quiet=True) as client:
        url = client.dashboard_link
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline and status != 200:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:  # the link: .../status
                    status = r.status
                    page = r.read().decode()
            except urllib.error.HTTPError as e:
                status = e.code
                time.sleep(0.2)
        assert status == 200 and "bokeh" in page.lower()
        client.cluster.close()
