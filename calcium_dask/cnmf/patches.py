"""CNMF on patches as dask tasks, and the reduction of their results to one set of components.

Each patch is one task running :func:`~calcium_dask.cnmf.fit.fit_patch` on numpy data; it
returns its components as sparse footprints in global pixel coordinates. Components that
neighbouring patches both found (in their overlap) are then merged on the small, reduced
results (CaImAn's ``run_CNMF_patches`` followed by ``merge_components``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import scipy.sparse as sp
import xarray as xr

from ..params import Params
from ..progress import compute
from .background import low_rank_background
from .fit import fit_patch
from .grid import patch_boxes
from .merge import merge_components
from .source import ZarrMovie, patch_input

__all__ = ["fit_patches", "PatchSet", "patch_options", "patch_memory_tsub"]

PATCH_BUDGET = 512 * 2**20  # bytes of float32 patch data one task may hold (x memory_fact)


@dataclass
class PatchSet:
    """Components of all patches, in global coordinates, after merging duplicates.

    ``A`` (N, K) csc footprints; ``C`` (K, Tp) traces at the patches' frame rate
    (``tsub`` frames averaged); ``b`` (N, nb), ``f`` (nb, Tp) one low-rank background;
    ``sn`` (N,) pixel noise; ``boxes`` the patch grid; ``n_per_patch`` components found in
    each patch before merging; ``tsub`` the temporal downsampling the patches used.
    """

    A: sp.csc_matrix
    C: np.ndarray
    b: np.ndarray
    f: np.ndarray
    sn: np.ndarray
    boxes: list[tuple[int, int, int, int]]
    n_per_patch: list[int]
    tsub: int


def patch_options(params: Params) -> dict[str, Any]:
    """:func:`fit_patch` keyword arguments from the parameter groups."""
    ip, tp = params.init, params.temporal
    return dict(K=ip.K or 0, gSig=ip.gSig, gSiz=params.gSiz(), p=tp.p, nb=params.patch.nb_patch,
                merge_thr=params.merging.merge_thr, method_init=ip.method_init, ssub=ip.ssub,
                tsub=ip.tsub, noise_range=params.preprocess.noise_range,
                noise_method=params.preprocess.noise_method, lags=params.preprocess.lags,
                bas_nonneg=tp.bas_nonneg, fudge_factor=tp.fudge_factor, do_merge=params.merging.do_merge,
                only_init=params.patch.only_init, nIter=ip.nIter, maxIter=ip.maxIter,
                rolling_sum=ip.rolling_sum, rolling_length=ip.rolling_length,
                normalize_init=ip.normalize_init)


def patch_memory_tsub(n_frames: int, box: tuple[int, int, int, int], budget: float) -> int:
    """Frames averaged per sample so that a patch's data fits ``budget`` bytes (1 = none)."""
    y0, y1, x0, x1 = box
    need = n_frames * (y1 - y0) * (x1 - x0) * 4
    return int(max(1, -(-need // int(budget))))


def _fit_one(source: Any, box: tuple[int, int, int, int], dims: tuple[int, int], tsub: int,
             opts: dict[str, Any]) -> dict[str, Any]:
    """One patch task: read the patch, run CNMF, return components in global coordinates."""
    if isinstance(source, ZarrMovie):
        Y = source.read_downsampled(box, tsub) if tsub > 1 else source.read(0, source.shape[0], box)
    else:
        Y = np.asarray(source, dtype=np.float32)
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    res = fit_patch(Y, **opts)
    local = np.arange(h * w)
    glob = (y0 + local // w) * dims[1] + (x0 + local % w)  # patch pixel -> global pixel
    A = res.A.tocoo()
    return {"rows": glob[A.row], "cols": A.col, "vals": A.data.astype(np.float32), "K": res.A.shape[1],
            "C": np.asarray(res.C, np.float32), "pixels": glob, "b": np.asarray(res.b, np.float32),
            "f": np.asarray(res.f, np.float32), "sn": np.asarray(res.sn, np.float32)}


def _collect(results: list[dict], dims: tuple[int, int]) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray,
                                                                   np.ndarray, np.ndarray]:
    """Stack the patches' components into global A, C, background factors and pixel noise."""
    N = dims[0] * dims[1]
    offsets = np.cumsum([0] + [r["K"] for r in results])
    rows = np.concatenate([r["rows"] for r in results]) if results else np.zeros(0, int)
    cols = np.concatenate([r["cols"] + o for r, o in zip(results, offsets)]) if results else np.zeros(0, int)
    vals = np.concatenate([r["vals"] for r in results]) if results else np.zeros(0, np.float32)
    A = sp.csc_matrix((vals, (rows, cols)), shape=(N, int(offsets[-1])), dtype=np.float32)
    C = np.vstack([r["C"] for r in results if r["K"]]) if offsets[-1] else np.zeros((0, results[0]["f"].shape[1]))
    b_cols = [(r["pixels"], r["b"][:, j]) for r in results for j in range(r["b"].shape[1])]
    b_all = np.zeros((N, len(b_cols)), np.float32)
    for j, (pix, col) in enumerate(b_cols):
        b_all[pix, j] = col
    f_all = np.vstack([r["f"] for r in results if r["f"].shape[0]]) if b_cols else np.zeros((0, C.shape[1]))
    sn = np.zeros(N, np.float32)
    for r in results:
        sn[r["pixels"]] = r["sn"]
    return A, C, b_all, f_all, sn


def merge_until_stable(A: sp.csc_matrix, C: np.ndarray, merge_thr: float) -> tuple[sp.csc_matrix, np.ndarray]:
    """Merge overlapping, correlated components until no pair qualifies."""
    while A.shape[1] > 1:
        m = merge_components(A, C, merge_thr=merge_thr)
        if not m.groups:
            break
        A, C = m.A, m.C
    return A, C


def fit_patches(movie: xr.DataArray, params: Params) -> PatchSet:
    """Run CNMF on every patch of ``movie`` (one dask task each) and merge their components."""
    t, h, w = movie.shape
    boxes = patch_boxes((h, w), params.patch.rf, params.patch.stride)
    budget = PATCH_BUDGET * params.patch.memory_fact
    tsub = max(patch_memory_tsub(t, box, budget) for box in boxes)
    opts = patch_options(params)
    fit = dask.delayed(_fit_one, pure=True)
    tasks = [fit(patch_input(movie, box), box, (h, w), tsub, opts) for box in boxes]
    results = compute(tasks, label=f"CNMF on {len(boxes)} patches")
    A, C, b_all, f_all, sn = _collect(results, (h, w))
    if params.merging.do_merge:
        A, C = merge_until_stable(A, C, params.merging.merge_thr)
    b, f = low_rank_background(b_all, f_all, params.init.nb)
    return PatchSet(A, C, b, f, sn, boxes, [r["K"] for r in results], tsub)
