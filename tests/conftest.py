"""Shared fixtures: small movies written in every supported format."""

from __future__ import annotations

import os

import numpy as np
import pytest

# kernels must not oversubscribe the 2 CI cores
for _k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

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
