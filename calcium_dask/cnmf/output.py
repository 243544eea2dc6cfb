"""CNMF estimates into the results store (DESIGN.md section 2).

The traces are already there (the refit writes them in unit x frame chunks). This module
adds the footprints, stored sparsely: ``footprints`` (unit, y, x) is chunked by blocks of
units and tiles of pixels, units in spatial order, and chunks that hold only zeros are not
written, so the store grows with the footprints' non-zero pixels, not units x pixels; any
zarr reader still sees the dense (unit, y, x) array. Then the per-unit fit details, the
background footprints and the pixel noise.
"""

from __future__ import annotations

import dask
import numpy as np
import scipy.sparse as sp
import xarray as xr

from ..compute import compute
from ..store import ResultsStore
from ..traces import FOOTPRINT_UNITS
from .refit import RefitResult

__all__ = ["write_estimates", "write_footprints"]


def _write_footprint_block(store: ResultsStore, path: str, u0: int, A: sp.csc_matrix,
                           dims: tuple[int, int]) -> None:
    block = A.toarray().T.reshape(A.shape[1], *dims)
    store.array(path, mode="r+")[u0:u0 + len(block)] = block


def write_footprints(store: ResultsStore, A: sp.csc_matrix, dims: tuple[int, int], *, tile: int,
                     path: str = "footprints") -> None:
    """Write footprints ``A`` (N, K), pixel index ``y * W + x``, as (unit, y, x) chunks of
    ``FOOTPRINT_UNITS`` units x ``tile`` x ``tile`` pixels, zero chunks left unwritten."""
    K = A.shape[1]
    H, W = dims
    group, _, name = path.rpartition("/")
    root = store.root()
    parent = root.require_group(group) if group else root
    parent.create_array(name, shape=(K, H, W), dtype=np.float32, dimension_names=("unit", "y", "x"),
                        chunks=(max(1, min(FOOTPRINT_UNITS, K)), min(tile, H), min(tile, W)), fill_value=0.0,
                        overwrite=True, config={"write_empty_chunks": False})
    A = sp.csc_matrix(A, dtype=np.float32)
    tasks = [dask.delayed(_write_footprint_block, pure=True)(store, path, u0, A[:, u0:u0 + FOOTPRINT_UNITS], dims)
             for u0 in range(0, K, FOOTPRINT_UNITS)]
    if tasks:
        compute(tasks, label="write footprints")


def write_estimates(store: ResultsStore, res: RefitResult, *, tile: int) -> None:
    """Footprints, background footprints and per-unit details of ``res`` into the root
    group of ``store``, whose unit x frame arrays the refit wrote already."""
    H, W = res.dims
    f32 = np.float32
    K = res.A.shape[1]
    write_footprints(store, res.A, res.dims, tile=tile)
    ds = xr.Dataset(
        {
            "background_footprints": (("background", "y", "x"), res.b.T.reshape(-1, H, W).astype(f32)),
            "baseline": (("unit",), res.bl.astype(f32)),
            "initial_calcium": (("unit",), res.c1.astype(f32)),
            "neurons_sn": (("unit",), res.neurons_sn.astype(f32)),
            "ar_coefficients": (("unit", "lag"), _ar_coefficients(res.g, K)),
            "pixel_noise": (("y", "x"), res.sn.reshape(H, W).astype(f32)),
        },
        coords={"unit": np.arange(K)},
    )
    store.write_root(ds)


def _ar_coefficients(g, K: int) -> np.ndarray:
    """(K, p) AR coefficients; with no units, (0, 1) (an empty array cannot infer its lag)."""
    g = np.asarray(g, np.float32)
    return g.reshape(K, -1) if K else np.zeros((0, max(g.shape[-1] if g.ndim == 2 else 0, 1)), np.float32)
