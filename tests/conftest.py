"""Shared fixtures: small movies written in every supported format."""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

# kernels must not oversubscribe the 2 CI cores: the variables for the processes the tests
# start; for this one, whose BLAS a pytest plugin (zarr's) loaded before this file, the limit
for _k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_k, "1")
threadpool_limits(1)

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")


@pytest.fixture(scope="session")
def small_array() -> np.ndarray:
    """A (37, 24, 20) uint16 movie with distinct frames (odd sizes catch chunking bugs)."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4000, size=(37, 24, 20), dtype=np.uint16)
    a[:, 0, 0] = np.arange(37)  # frame index readable from the data
    return a


def shared_path(*parts: str) -> str:
    return os.path.abspath(os.path.join(SHARED, *parts))


@contextmanager
def local_cluster():
    """A real local cluster: 2 worker processes of 1 thread under nannies, as users run it."""
    from calcium_dask.cluster import connect

    c = connect(n_workers=2, memory_limit="2GB", dashboard_address=None, quiet=True)
    c.run(_warmed_up)  # tests that time or order tasks must not race the workers' warm-up
    try:
        yield c
    finally:
        c.cluster.close()
        c.close()


def _warmed_up() -> None:
    import threading

    for t in threading.enumerate():
        if t.name == "warm-up":
            t.join()


@pytest.fixture(scope="session")
def client():
    with local_cluster() as c:
        yield c


@pytest.fixture(scope="session")
def sim_small(tmp_path_factory):
    """A 300-frame 96x96 simulated movie (TIFF) with ground truth, made once per session."""
    from calcium_dask.datasets import SimulationParams, write_movie

    d = tmp_path_factory.mktemp("sim_small")
    sp = SimulationParams.preset("small", T=300, H=96, W=96, K=12, seed=7)
    path = write_movie(d / "movie.tif", sp)
    return path
