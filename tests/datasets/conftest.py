from __future__ import annotations

import pytest

from calcium_dask.datasets import SimulationParams, simulate


@pytest.fixture(scope="session")
def small_params() -> SimulationParams:
    return SimulationParams.preset("small", T=400, seed=7)


@pytest.fixture(scope="session")
def small_sim(small_params):
    """A 400-frame small movie and its truth, shared by the read-only tests."""
    return simulate(small_params)
