"""Small statistics shared by the evaluation kernels."""

from __future__ import annotations

import numpy as np


def zscore(x: np.ndarray, axis: int) -> np.ndarray:
    """``x`` centred and scaled to unit SD along ``axis`` (a constant stays 0), so that
    ``zscore(a, 1) @ zscore(b, 0) / n`` is a matrix of Pearson correlations."""
    x = x - x.mean(axis=axis, keepdims=True)
    sd = x.std(axis=axis, keepdims=True)
    return x / np.where(sd > 0, sd, 1.0)
