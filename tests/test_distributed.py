"""``calcium-dask run --scheduler``: a real scheduler and two ``dask worker`` processes.

The run through the scheduler must give the results of a local-cluster run, and the movie
must stay on the workers. How the second claim is checked: every byte of a task result that
leaves the workers goes through ``Worker.get_data``, which logs each transfer with its
requester (``transfer_outgoing_log``: ``who`` is the peer worker's address for worker-to-worker
copies, ``None`` for the scheduler's ``gather`` on a client's behalf and for a client's direct
gather). Everything a client sends goes through the scheduler's ``update-graph`` stream
handler (the serialised graph, with any array embedded in it) or its ``scatter`` handler; a
scheduler preload script wraps both and records the bytes. The client process therefore
received at most the sum of the non-worker transfers and sent at most the recorded graph and
scatter bytes: both must be a small fraction of the movie. (The client's peak RSS is no
sound measure at test size: its imports alone outweigh any movie simulated in seconds.)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calcium_dask.cli import demo_params
from calcium_dask.datasets import SimulationParams, write_movie
from calcium_dask.pipeline import run_pipeline
from calcium_dask.store import ResultsStore

BIN = Path(sys.executable).parent
PARAMS = demo_params(30.0).replace(**{"motion.strides": (32, 32), "motion.overlaps": (16, 16)})
T, H, W = 1000, 64, 64

#: scheduler preload: record the bytes of every graph and scatter a client sends
PRELOAD = '''
from dask.sizeof import sizeof


def dask_setup(scheduler):
    traffic = scheduler.calcium_traffic = {"graph_bytes": 0, "largest_graph": 0, "scatter_bytes": 0}
    update_graph = scheduler.stream_handlers["update-graph"]
    scatter = scheduler.handlers["scatter"]

    async def counted_update_graph(*args, **kwargs):
        ser = kwargs.get("expr_ser")
        n = sum(memoryview(f).nbytes for f in getattr(ser, "frames", ()))
        traffic["graph_bytes"] += n
        traffic["largest_graph"] = max(traffic["largest_graph"], n)
        return await update_graph(*args, **kwargs)

    async def counted_scatter(*args, **kwargs):
        traffic["scatter_bytes"] += sizeof(kwargs.get("data"))
        return await scatter(*args, **kwargs)

    scheduler.stream_handlers["update-graph"] = counted_update_graph
    scheduler.handlers["scatter"] = counted_scatter
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH="1000000")
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    return env


def _wait_for_workers(address: str, n: int, procs: list[subprocess.Popen], timeout: float = 60):
    """A client of the test itself, once ``n`` workers are connected."""
    from distributed import Client

    deadline = time.monotonic() + timeout
    while True:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[:2]} exited with {p.returncode}")
        try:
            client = Client(address, timeout=2, set_as_default=False)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    client.wait_for_workers(n, timeout=max(1.0, deadline - time.monotonic()))
    return client


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``dask scheduler`` (with the traffic preload) and two ``dask worker`` processes on loopback."""
    d = tmp_path_factory.mktemp("dask_cluster")
    preload = d / "traffic_preload.py"
    preload.write_text(PRELOAD)
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = _env()
    logs = [open(d / f"{name}.log", "w") for name in ("scheduler", "worker0", "worker1")]
    procs: list[subprocess.Popen] = []
    client = None
    try:
        procs.append(subprocess.Popen(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
             "--no-dashboard", "--preload", str(preload)], env=env, stdout=logs[0], stderr=subprocess.STDOUT))
        for log in logs[1:]:
            procs.append(subprocess.Popen(
                [str(BIN / "dask"), "worker", address, "--nthreads", "1", "--memory-limit", "1GB",
                 "--no-dashboard", "--host", "127.0.0.1"], env=env, stdout=log, stderr=subprocess.STDOUT))
        client = _wait_for_workers(address, 2, procs)
        yield address, client
    finally:
        _stop(client, procs)
        for log in logs:
            log.close()


def _stop(client: Any, procs: list[subprocess.Popen]) -> None:
    """Ask the scheduler to close itself and its workers; kill whatever is still running."""
    if client is not None:
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001 - the processes are killed below anyway
            pass
        client.close()
    for p in reversed(procs):  # workers first, then the scheduler
        if p.poll() is None:
            p.terminate()
    for p in reversed(procs):
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def movie(tmp_path_factory) -> Path:
    sp = SimulationParams.preset("small", T=T, H=H, W=W, K=8, seed=5)
    return write_movie(tmp_path_factory.mktemp("dist_movie") / "movie.tif", sp, workers=1)


@pytest.fixture(scope="module")
def remote_run(cluster, movie, tmp_path_factory) -> tuple[ResultsStore, dict[str, Any]]:
    """``calcium-dask run --scheduler`` in a subprocess, and the traffic it caused."""
    address, client = cluster
    d = tmp_path_factory.mktemp("remote_run")
    PARAMS.save(d / "params.yaml")
    out = d / "results.zarr"
    p = subprocess.run([str(BIN / "calcium-dask"), "run", str(movie), "--out", str(out), "--params",
                        str(d / "params.yaml"), "--scheduler", address, "--quiet"],
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    workers = set(client.scheduler_info()["workers"])
    logs = client.run(lambda dask_worker: [(e["who"], e["total"]) for e in dask_worker.transfer_outgoing_log])
    executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    sent = client.run_on_scheduler(lambda dask_scheduler: dict(dask_scheduler.calcium_traffic))
    out_of_cluster = [n for log in logs.values() for who, n in log if who not in workers]
    traffic = {"to_clients": sum(out_of_cluster), "largest_to_client": max(out_of_cluster, default=0),
               "between_workers": sum(n for log in logs.values() for who, n in log if who in workers),
               "executed": executed, **sent}
    return ResultsStore(str(out)), traffic


def test_scheduler_run_equals_local_cluster_run(client, movie, remote_run, tmp_path):
    remote, _ = remote_run
    local = run_pipeline(str(movie), str(tmp_path / "local.zarr"), PARAMS).store
    assert set(remote.stages()) == set(local.stages()) == {"motion", "cnmf", "evaluate"}
    a, b = remote.read().load(), local.read().load()
    assert a.sizes["unit"] == b.sizes["unit"] > 0
    for name in ("footprints", "traces", "spikes", "background_footprints", "snr", "r_value"):
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-4, atol=1e-4, err_msg=name)
    np.testing.assert_array_equal(a["accepted"].values, b["accepted"].values)
    np.testing.assert_allclose(remote.read("motion")["shifts"].values, local.read("motion")["shifts"].values,
                               atol=1e-4)


def test_movie_data_never_goes_through_the_client(movie, remote_run):
    """The client received its results (units x (pixels + frames)), never the movie's frames.

    A movie crossing the client would be at least its raw size (8 MB here; 16 MB once
    corrected, as float32); the results the client gathers and writes are about 2 MB.
    """
    _, traffic = remote_run
    movie_bytes = T * H * W * 2  # uint16 pixels
    assert all(n > 0 for n in traffic["executed"].values()), traffic  # both workers computed
    assert traffic["to_clients"] < movie_bytes / 3, traffic
    assert traffic["largest_to_client"] < movie_bytes / 10, traffic
    assert traffic["graph_bytes"] + traffic["scatter_bytes"] < movie_bytes / 10, traffic
