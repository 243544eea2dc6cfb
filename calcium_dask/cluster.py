"""Connecting to a Dask cluster: a local one by default, or any scheduler address."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, TextIO

import dask
import psutil
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from .errors import ClusterError
from .worker_server import MALLOC_ENV, THREAD_ENV, launch, settle_imports, spawn_config

__all__ = ["connect", "attach_dashboard", "PinThreads", "LowerPriority", "MALLOC_ENV", "SCHEDULER_CONFIG", "THREAD_ENV", "TASK_MODULES"]

#: a worker is sent its next input read only when it is free: one queued in advance
#: (dask's default, 1.1 per thread) would run before the task its previous read unblocks
#: (e.g. the template that every correction waits for); our tasks last 0.1-1 s, so the
#: scheduler's round trip costs nothing
SCHEDULER_CONFIG = {"distributed.scheduler.worker-saturation": 1.0}


class PinThreads(WorkerPlugin):
    """Pin OpenCV and BLAS thread pools to one thread in each worker process."""

    name = "calcium-dask-pin-threads"

    def setup(self, worker: Any) -> None:
        try:
            import cv2

            cv2.setNumThreads(1)
        except ImportError:  # pragma: no cover - opencv is a dependency
            pass
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(1)
        except ImportError:
            pass
        import zarr

        # zarr decodes chunks on a thread pool as large as the machine: in a one-thread
        # worker that takes cores from the other workers
        zarr.config.set({"threading.max_workers": 1})
        # a worker's first task imports the modules its function lives in (~1 s: xarray,
        # dask.array, zarr), and numba's first call costs ~1 s (its compiler and runtime
        # start, even for a cached function): pay both now, beside the worker, while the
        # client builds the first graph, not in the first task
        threading.Thread(target=warm_up, name="warm-up", daemon=True).start()


class LowerPriority(WorkerPlugin):
    """Lower a worker process's CPU priority by ``increment`` (Unix ``nice``).

    For workers sharing a machine with something that must stay responsive: the analysis
    service's own local cluster, whose web server would otherwise answer requests only
    in the time slices the computing workers leave it."""

    name = "calcium-dask-lower-priority"

    def __init__(self, increment: int = 10) -> None:
        self.increment = increment

    def setup(self, worker: Any) -> None:
        if hasattr(os, "nice"):
            os.nice(self.increment)


#: the module the first stage's tasks are defined in, which a worker imports to run them
#: (with xarray, dask.array and zarr, which every stage's need): imported beside the
#: worker's start, the work is only done earlier. The later stages' modules import on
#: demand; importing them too here slowed the first stage on 2 cores
TASK_MODULES = ("calcium_dask.motion.correct",)


def warm_up() -> None:
    """Import :data:`TASK_MODULES` and start numba's compiler (a worker's first-task costs)."""
    import importlib

    for name in TASK_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # pragma: no cover - a task that needs it will say why
            return
    _warm_numba()


def _warm_numba() -> None:
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency
        return

    @numba.njit(nogil=True)
    def first(x):  # pragma: no cover - numba
        return x + 1

    first(1)


def attach_dashboard(cluster: LocalCluster, prefix: str = "/", wait: float = 2.0) -> threading.Thread:
    """Serve Dask's dashboard from a local cluster's scheduler started without it.

    Loading Bokeh for the dashboard takes ~0.5 s of this process's CPU, and its
    interpreter lock: done when the scheduler starts it delays the workers' spawn; done
    while ``calcium-dask run`` builds its first graph it delays the first task (up to
    1 s on 2 cores). So the scheduler starts with ``dashboard=False`` (its HTTP server
    already listening at the dashboard address, the link printed) and a thread adds the
    dashboard's pages once the first graph has reached the scheduler, or after ``wait``
    seconds, whichever comes first.

    Returns
    -------
    threading.Thread
        The thread loading it (the pages are added on the scheduler's loop just after).
    """
    scheduler = cluster.scheduler

    def add_pages(module: Any) -> None:
        if scheduler.status.name in ("init", "running"):
            module.connect(scheduler.http_application, scheduler.http_server, scheduler, prefix=prefix)

    def load() -> None:
        deadline = time.monotonic() + wait
        while not scheduler.tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            import distributed.dashboard.scheduler as module
        except ImportError:  # pragma: no cover - bokeh is a dependency; the JSON routes remain
            return
        cluster.loop.add_callback(add_pages, module)

    thread = threading.Thread(target=load, name="dashboard", daemon=True)
    thread.start()
    return thread


def _local_client(n_workers: int | None, threads_per_worker: int, memory_limit: str | int | None,
                  dashboard_address: str | None, processes: bool, start_method: str | None,
                  cluster_kwargs: dict[str, Any]) -> Client:
    """A client of a new ``LocalCluster`` (see :func:`connect`)."""
    n_workers = n_workers or psutil.cpu_count(logical=True) or 1
    if memory_limit == "auto":
        memory_limit = int(psutil.virtual_memory().total * 0.9 / n_workers)
    kwargs: dict[str, Any] = dict(n_workers=n_workers, threads_per_worker=threads_per_worker,
                                  memory_limit=memory_limit, processes=processes,
                                  host="127.0.0.1", dashboard_address=dashboard_address or "127.0.0.1:0")
    if processes:
        kwargs["env"] = THREAD_ENV
    else:  # threads: still TCP on loopback (inproc:// would reject the host and dashboard address)
        kwargs["protocol"] = "tcp://"
    # without a dashboard the scheduler's HTTP server still listens (on a free port, not
    # 8787); with one, its pages are added once the cluster is up (attach_dashboard)
    scheduler_kwargs = {**cluster_kwargs.pop("scheduler_kwargs", {}), "dashboard": False}
    kwargs.update(cluster_kwargs, scheduler_kwargs=scheduler_kwargs)
    settle_imports()
    config = {**SCHEDULER_CONFIG, **(spawn_config(start_method) if processes else {})}
    with dask.config.set(config):
        if processes:
            launch(config)
        client = Client(LocalCluster(**kwargs))
    if dashboard_address is not None:
        attach_dashboard(client.cluster, scheduler_kwargs.get("http_prefix", "/"))
    return client


def connect(address: str | None = None, *, n_workers: int | None = None,
            threads_per_worker: int = 1, memory_limit: str | int | None = "auto",
            dashboard_address: str | None = "127.0.0.1:8787", processes: bool = True,
            quiet: bool = False, stream: TextIO | None = None, timeout: str | float = "30s",
            start_method: str | None = None, **cluster_kwargs: Any) -> Client:
    """A ``distributed.Client``: to ``address``, ``$DASK_SCHEDULER_ADDRESS``, or a new local cluster.

    Parameters
    ----------
    address : str, optional
        Scheduler address, e.g. ``tcp://10.0.0.5:8786``. When omitted and
        ``DASK_SCHEDULER_ADDRESS`` is unset, a ``LocalCluster`` is started.
    n_workers : int, optional
        Local workers (default: one per core).
    threads_per_worker : int
        Threads per local worker; 1 keeps numpy/opencv kernels from oversubscribing cores.
    memory_limit : str or int, optional
        Per local worker (``"auto"`` splits the machine's memory evenly).
    dashboard_address : str, optional
        Where the local dashboard listens; loopback by default, ``None`` for none.
    processes : bool
        Workers as processes (default) or threads of this process.
    quiet : bool
        Do not print the dashboard link.
    timeout : str or float
        How long to try to reach a remote scheduler.
    start_method : str, optional
        How local worker processes start (Python's ``multiprocessing`` start methods).
        Default ``"forkserver"`` where the platform has it: the workers are forked from one
        process that has imported the task modules once, ~1 s of each worker's start;
        ``"spawn"`` (Dask's default) starts each from a fresh interpreter.

    Returns
    -------
    distributed.Client
    """
    address = address or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if address:
        try:
            client = Client(address, timeout=timeout)
        except OSError as e:
            raise ClusterError(f"cannot reach the Dask scheduler at {address} ({e})") from None
    else:
        client = _local_client(n_workers, threads_per_worker, memory_limit, dashboard_address, processes,
                               start_method, cluster_kwargs)
    client.register_plugin(PinThreads())
    if not quiet:
        link = client.dashboard_link if dashboard_address or address else "(no dashboard)"
        print(f"Dask dashboard: {link}  (scheduler {client.scheduler.address})",
              file=stream or sys.stderr)
    return client
