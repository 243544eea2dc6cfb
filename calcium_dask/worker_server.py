"""How local worker processes start: forked from one server process that has imported
their modules once, with the environment their libraries read when they load.

A local worker started by Python's ``spawn`` (Dask's default) is a new interpreter that
imports Dask, then its tasks' modules (xarray, dask.array, zarr, OpenCV, numba): ~1.3 s of
CPU each, on the cores the client needs at the same moment. With ``forkserver`` one
process imports them (``calcium_dask.worker_imports``) and every worker is a fork of
it. :func:`start` launches that server early, for a command that will start a local
cluster after work of its own; :func:`calcium_dask.cluster.connect` uses it in any case.

This module imports no numerical library: the command line calls it before its own imports.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from typing import Any

__all__ = ["start", "launch", "spawn_config", "settle_imports", "MALLOC_ENV", "THREAD_ENV", "PRELOAD"]

#: one BLAS/OpenMP thread per worker thread: dask runs tasks in parallel already
THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                               "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}
#: glibc malloc for workers, read when the process starts. Dask's default
#: MALLOC_TRIM_THRESHOLD_=65536 also freezes glibc's mmap threshold at 128 KiB, so every
#: temporary of a registration batch (a few MB) came as fresh zeroed pages: 30 % of a
#: motion-correction worker's time. Arrays up to 32 MiB are reused from the heap, and
#: up to 128 MiB of free heap is kept.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(128 * 2**20)}
#: what the fork server imports before forking the first worker
PRELOAD = ["distributed", "calcium_dask.worker_imports"]
METHOD_KEY = "distributed.worker.multiprocessing-method"
ENV_KEY = "distributed.nanny.pre-spawn-environ"
DEFAULT_METHOD = "forkserver"


def spawn_config(start_method: str | None = None) -> dict[str, Any]:
    """Dask settings for starting local worker processes: the start method (``start_method``,
    default ``forkserver`` where the platform has it, else Dask's own) and the environment
    their process starts with (Dask's ``pre-spawn-environ`` with ours on top)."""
    import dask.config

    env = {**dask.config.get(ENV_KEY, {}), **MALLOC_ENV, **THREAD_ENV}
    config: dict[str, Any] = {ENV_KEY: env}
    method = start_method or DEFAULT_METHOD
    if method in multiprocessing.get_all_start_methods():
        config[METHOD_KEY] = method
    return config


def start(start_method: str | None = None) -> bool:
    """Launch the fork server now (it imports while this process goes on); whether it runs.

    Nothing happens with another start method or when ``$DASK_SCHEDULER_ADDRESS`` names a
    cluster to use instead."""
    if os.environ.get("DASK_SCHEDULER_ADDRESS"):
        return False
    settle_imports()
    return launch(spawn_config(start_method))


def launch(config: dict[str, Any]) -> bool:
    """Launch the fork server of :func:`spawn_config`'s ``config`` unless it runs already
    (a running server keeps its preload and environment); whether the method is forkserver.
    The caller has settled OpenCV's import (:func:`settle_imports`)."""
    if config.get(METHOD_KEY) != "forkserver":
        return False
    import multiprocessing.forkserver as forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    env = {k: str(v) for k, v in config[ENV_KEY].items()}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the server's environment: malloc and the thread pools read it
    try:
        forkserver.ensure_running()
    finally:  # this process keeps its own (it may not have loaded BLAS yet)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return True


def settle_imports() -> None:
    """Finish importing OpenCV before starting a process that copies ``sys.path``. Its
    loader puts its own folder on ``sys.path`` while it loads, and a process started
    meanwhile (e.g. while ``calcium-dask run`` imports the pipeline on another thread)
    keeps that path and takes OpenCV's ``typing`` package for Python's: its workers fail
    to start. Importing it here waits for a load in progress on another thread; with no
    other thread there is none to wait for."""
    if threading.active_count() == 1:
        return
    try:
        import cv2  # noqa: F401
    except ImportError:  # pragma: no cover - opencv is a dependency
        pass
