"""Connecting to a Dask cluster: a local one by default, or any scheduler address."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, TextIO

import dask
import psutil
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from .errors import ClusterError

__all__ = ["connect", "PinThreads", "LowerPriority", "MALLOC_ENV", "SCHEDULER_CONFIG", "THREAD_ENV", "TASK_MODULES"]

#: one BLAS/OpenMP thread per worker thread: dask runs tasks in parallel already
THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                               "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}
#: glibc malloc for workers, read when the process starts. Dask's default
#: MALLOC_TRIM_THRESHOLD_=65536 also freezes glibc's mmap threshold at 128 KiB, so every
#: temporary of a registration batch (a few MB) came as fresh zeroed pages: 30 % of a
#: motion-correction worker's time. Arrays up to 32 MiB are reused from the heap, and
#: up to 128 MiB of free heap is kept.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(128 * 2**20)}
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
        threading.Thread(target=_warm, name="warm-up", daemon=True).start()


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


def _warm() -> None:
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


def _settle_imports() -> None:
    """Finish importing OpenCV before spawning workers. Its loader puts its own folder on
    ``sys.path`` while it loads, and a process spawned meanwhile (e.g. while
    ``calcium-dask run`` imports the pipeline on another thread) inherits that path and
    takes OpenCV's ``typing`` package for Python's: its worker fails to start. Importing
    it here waits for a load in progress on another thread."""
    try:
        import cv2  # noqa: F401
    except ImportError:  # pragma: no cover - opencv is a dependency
        pass


def connect(address: str | None = None, *, n_workers: int | None = None,
            threads_per_worker: int = 1, memory_limit: str | int | None = "auto",
            dashboard_address: str | None = "127.0.0.1:8787", processes: bool = True,
            quiet: bool = False, stream: TextIO | None = None, timeout: str | float = "30s",
            **cluster_kwargs: Any) -> Client:
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
        n_workers = n_workers or psutil.cpu_count(logical=True) or 1
        if memory_limit == "auto":
            memory_limit = int(psutil.virtual_memory().total * 0.9 / n_workers)
        kwargs: dict[str, Any] = dict(n_workers=n_workers, threads_per_worker=threads_per_worker,
                                      memory_limit=memory_limit, processes=processes,
                                      host="127.0.0.1", dashboard_address=dashboard_address)
        if processes:
            kwargs["env"] = THREAD_ENV
        else:  # threads: still TCP on loopback (inproc:// would reject the host and dashboard address)
            kwargs["protocol"] = "tcp://"
        if dashboard_address is None:  # the scheduler's HTTP server would still take port 8787
            kwargs.update(dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False})
        kwargs.update(cluster_kwargs)
        _settle_imports()
        # set before each worker process is spawned (dask's own default is overridden)
        spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **MALLOC_ENV}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env, **SCHEDULER_CONFIG}):
            client = Client(LocalCluster(**kwargs))
    client.register_plugin(PinThreads())
    if not quiet:
        link = client.dashboard_link if dashboard_address or address else "(no dashboard)"
        print(f"Dask dashboard: {link}  (scheduler {client.scheduler.address})",
              file=stream or sys.stderr)
    return client
