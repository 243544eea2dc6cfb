"""CNMF estimates as the results contract's xarray Dataset (DESIGN.md section 2)."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp
import xarray as xr

from .refit import CNMFEstimates

__all__ = ["estimates_dataset", "dense_footprints"]

UNIT_CHUNK = 64  # units per chunk of the dense footprint array


def dense_footprints(A: sp.csc_matrix, dims: tuple[int, int]) -> da.Array:
    """(K, H, W) float32 footprints, densified one chunk of units at a time (lazily)."""
    K = A.shape[1]
    if K == 0:
        return da.zeros((0, *dims), dtype=np.float32)
    A = sp.csc_matrix(A, dtype=np.float32)

    def dense(lo: int, hi: int) -> np.ndarray:
        return A[:, lo:hi].toarray().T.reshape(hi - lo, *dims)

    parts = [da.from_delayed(dask.delayed(dense, pure=True)(lo, min(lo + UNIT_CHUNK, K)),
                             (min(lo + UNIT_CHUNK, K) - lo, *dims), dtype=np.float32)
             for lo in range(0, K, UNIT_CHUNK)]
    return da.concatenate(parts)


def estimates_dataset(est: CNMFEstimates) -> xr.Dataset:
    """Footprints, traces, spikes, residuals, background and per-unit fit details."""
    H, W = est.dims
    f32 = np.float32
    ds = xr.Dataset(
        {
            "footprints": (("unit", "y", "x"), dense_footprints(est.A, est.dims)),
            "traces": (("unit", "frame"), est.C.astype(f32)),
            "spikes": (("unit", "frame"), est.S.astype(f32)),
            "residuals": (("unit", "frame"), est.YrA.astype(f32)),
            "background_footprints": (("background", "y", "x"), est.b.T.reshape(-1, H, W).astype(f32)),
            "background_traces": (("background", "frame"), est.f.astype(f32)),
            "baseline": (("unit",), est.bl.astype(f32)),
            "initial_calcium": (("unit",), est.c1.astype(f32)),
            "neurons_sn": (("unit",), est.neurons_sn.astype(f32)),
            "ar_coefficients": (("unit", "lag"), _ar_coefficients(est.g, est.C.shape[0])),
            "pixel_noise": (("y", "x"), est.sn.reshape(H, W).astype(f32)),
        },
        coords={"unit": np.arange(est.C.shape[0])},
    )
    return ds


def _ar_coefficients(g, K: int) -> np.ndarray:
    """(K, p) AR coefficients; with no units, (0, 1) (an empty array cannot infer its lag)."""
    g = np.asarray(g, np.float32)
    return g.reshape(K, -1) if K else np.zeros((0, max(g.shape[-1] if g.ndim == 2 else 0, 1)), np.float32)
