"""The seeded CNMF on the whole field of view (CaImAn's ``refit``) as reductions over time.

The movie is never held in memory: a temporal update needs ``[A b]^T Y`` (each time chunk
gives its own columns) and a spatial update needs ``Y [C; f]^T`` on each footprint's search
area (the time chunks' contributions add up). Everything else works on the reduced,
small matrices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import scipy.sparse as sp
import xarray as xr

from ..params import Params
from ..compute import compute
from .kernels.grid import interior
from .kernels.merge import merge_until_stable, remove_empty
from .kernels.products import add_compensated, frames_dot_footprints, frames_dot_traces_parts
from ..movie_blocks import time_blocks
from .kernels.spatial import search_area, update_spatial
from .kernels.temporal import TemporalResult, update_temporal

__all__ = ["refit", "CNMFEstimates", "temporal_options"]

SEARCH_RADIUS = 2  # city-block dilation of the supports (CaImAn's 'dilate' search area)


@dataclass
class CNMFEstimates:
    """CNMF estimates on the whole field of view (CaImAn's names; pixel index ``y * W + x``).

    ``A`` (N, K) csc, unit-norm footprints; ``C``, ``S``, ``YrA`` (K, T); ``b`` (N, nb);
    ``f`` (nb, T); ``g`` (K, p); ``bl``, ``c1``, ``neurons_sn`` (K,); ``sn`` (N,) pixel noise;
    ``dims`` (H, W).
    """

    A: sp.csc_matrix
    C: np.ndarray
    S: np.ndarray
    YrA: np.ndarray
    b: np.ndarray
    f: np.ndarray
    g: np.ndarray
    bl: np.ndarray
    c1: np.ndarray
    neurons_sn: np.ndarray
    sn: np.ndarray
    dims: tuple[int, int]


def temporal_options(params: Params) -> dict[str, Any]:
    tp, pp = params.temporal, params.preprocess
    return dict(p=tp.p, bas_nonneg=tp.bas_nonneg, iterations=tp.ITER, noise_range=pp.noise_range,
                noise_method=pp.noise_method, lags=pp.lags, fudge_factor=tp.fudge_factor, s_min=tp.s_min,
                optimize_g=tp.optimize_g)


# -- per-time-chunk kernels (run in tasks) ----------------------------------------------
def _aty_block(Y: np.ndarray, A: sp.csc_matrix, b: np.ndarray) -> np.ndarray:
    """``[A b]^T Y`` for one time chunk: (K + nb, Tc) float32."""
    return frames_dot_footprints(Y, A, b).astype(np.float32)


def _yct_block(Y: np.ndarray, Cb: np.ndarray, mask: sp.csc_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Compensated ``Y [C; f]^T`` of one time chunk on ``mask`` (search areas, then every
    pixel for the background columns), as ``(hi, lo)``."""
    return frames_dot_traces_parts(Y, Cb, mask)


def _add_parts(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    total = parts[0]
    for p in parts[1:]:
        total = add_compensated(total, p)
    return total


# -- passes over the movie ---------------------------------------------------------------
def _pass_aty(blocks: list, A: sp.csc_matrix, b: np.ndarray, label: str) -> np.ndarray:
    A_ = dask.delayed(sp.csc_matrix(A, dtype=np.float32), pure=True)
    b_ = dask.delayed(np.asarray(b, np.float32), pure=True)
    parts = compute([dask.delayed(_aty_block, pure=True)(blk, A_, b_) for _, blk in blocks], label=label)
    return np.concatenate(parts, axis=1)


def _pass_yct(blocks: list, mask: sp.csc_matrix, Cf: np.ndarray, K: int, label: str) -> sp.csc_matrix:
    """``Y [C; f]^T``: neurons on their search areas, background everywhere, summed over time.

    The sums are compensated, so the result does not depend on the time chunking (nor on
    the number of workers).
    """
    N, nb = mask.shape[0], Cf.shape[0] - K
    full = sp.hstack([sp.csc_matrix(mask, dtype=bool), sp.csc_matrix(np.ones((N, nb), bool))]).tocsc()
    full.sort_indices()
    mask_ = dask.delayed(full, pure=True)
    ends = [t0 for t0, _ in blocks[1:]] + [Cf.shape[1]]
    parts = [dask.delayed(_yct_block, pure=True)(blk, Cf[:, t0:t1].astype(np.float32), mask_)
             for (t0, blk), t1 in zip(blocks, ends)]
    hi, lo = compute([], label=label, sums=[(parts, _add_parts)])[0]
    return sp.csc_matrix(((hi + lo).astype(np.float32), full.indices, full.indptr), shape=full.shape)


def _upsample_time(X: np.ndarray, factor: int, T: int) -> np.ndarray:
    """Patches ran on frames averaged in groups of ``factor``: repeat to the full rate."""
    if factor == 1 and X.shape[1] == T:
        return X
    up = np.repeat(X, factor, axis=1)[:, :T]
    if up.shape[1] < T:
        up = np.concatenate([up, np.repeat(up[:, -1:], T - up.shape[1], axis=1)], axis=1)
    return up


def _temporal(blocks, A, b, C, f, topts, label) -> TemporalResult:
    AtY = _pass_aty(blocks, A, b, label)
    Ab = sp.hstack([A, sp.csc_matrix(b)]).tocsc()
    AtA = (Ab.T @ Ab).toarray()
    return update_temporal(AtY, AtA, C, f, **topts)


def refit(movie: xr.DataArray, A: sp.csc_matrix, C: np.ndarray, b: np.ndarray, f: np.ndarray,
          sn: np.ndarray, params: Params, *, tsub: int = 1) -> CNMFEstimates:
    """Seeded CNMF on the whole field of view: temporal, spatial, merge, temporal.

    Parameters
    ----------
    movie : xarray.DataArray
        The (corrected) movie, ideally the tile-chunked zarr movie of a results store.
    A, C, b, f : arrays
        Seed components (e.g. from :func:`~calcium_dask.cnmf.patches.fit_patches`); ``C``
        and ``f`` may be at a rate ``tsub`` times lower.
    sn : (N,) array
        Pixel noise.
    """
    T, H, W = movie.shape
    dims = (H, W)
    blocks = time_blocks(movie)
    topts = temporal_options(params)
    C = _upsample_time(np.asarray(C, np.float32), tsub, T)
    f = _upsample_time(np.asarray(f, np.float32), tsub, T)
    if A.shape[1] == 0:
        return _empty(A, b, f, sn, dims, T, params.temporal.p)
    tres = _temporal(blocks, A, b, C, f, topts, "refit: temporal update")
    C, f = tres.C, tres.f
    mask = search_area(A, dims, expand=SEARCH_RADIUS)
    if params.patch.border_pix:  # the border stays out of every footprint, as in the patches
        mask = sp.diags(interior(dims, params.patch.border_pix).astype(np.float32)) @ mask.astype(np.float32)
        mask.eliminate_zeros()
        mask = sp.csc_matrix(mask.astype(bool))
    YCt = _pass_yct(blocks, mask, np.vstack([C, f]), A.shape[1], "refit: spatial update")
    Cf = np.vstack([C, f]).astype(np.float64)
    sp_opts = dict(thr_method=params.spatial.thr_method, maxthr=params.spatial.maxthr,
                   nrgthr=params.spatial.nrgthr, extract_cc=params.spatial.extract_cc,
                   update_background=params.spatial.update_background_components)
    sres = update_spatial(YCt, Cf @ Cf.T, A, b, dims=dims, sn=sn, mask=mask, **sp_opts)
    A, b, C = sres.A, sres.b, sres.scale_traces(C)
    A, C, _ = remove_empty(A, C)
    if params.merging.do_merge:
        A, C = merge_until_stable(A, C, params.merging.merge_thr, params.merging.max_merge_area)
    if A.shape[1] == 0:
        return _empty(A, b, f, sn, dims, T, params.temporal.p)
    tres = _temporal(blocks, A, b, C, f, topts, "refit: final temporal update")
    A, C, keep = remove_empty(A, tres.C)
    return CNMFEstimates(A, C, tres.S[keep], tres.YrA[keep], b, tres.f, tres.g[keep], tres.bl[keep],
                         tres.c1[keep], tres.sn[keep], np.asarray(sn, np.float32), dims)


def _empty(A, b, f, sn, dims, T, p) -> CNMFEstimates:
    z = np.zeros((0, T), np.float32)
    e = np.zeros(0)
    return CNMFEstimates(sp.csc_matrix((A.shape[0], 0), dtype=np.float32), z, z.copy(), z.copy(), b, f,
                         np.zeros((0, p)), e, e.copy(), e.copy(), np.asarray(sn, np.float32), dims)
