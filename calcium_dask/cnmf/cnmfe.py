"""CNMF-E (``method_init='corr_pnr'``, one-photon movies) as dask tasks: patches, merge, refit.

Each patch is one task on numpy data (:func:`~calcium_dask.cnmf.kernels.cnmfe.fit_patch_cnmfe`),
with a ring background of its own; it returns the neurons centred in its own tile (with
``del_duplicates``) and its ring. The neurons of all patches are merged where they overlap
and correlate. The full-rate traces then come from one pass over the movie's time chunks:
with ``M`` the linear part of the patches' ring background (``B = B(0) + M (Y - A C)``),

``A^T (Y - B) = Ã^T Y - A^T B(0) + (M^T A)^T A C``,  ``Ã = A - M^T A``,

so each time chunk only gives its columns of ``Ã^T Y`` (a sparse product); the temporal
updates, which alternate between the traces and the background they imply, work on that
small (K, T) matrix. No process holds the movie, and a worker holds one time chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import scipy.sparse as sp
import xarray as xr

from ..compute import compute
from ..movie_blocks import ZarrMovie, patch_input, time_blocks
from ..params import Params
from .kernels.cnmfe import CNMFEOptions, fit_patch_cnmfe
from ..summary.kernels import combine, finalize
from .kernels.corr_pnr import SeedOptions, filtered_moments, kept_sums, psf_kernel
from .kernels.grid import own_boxes, patch_boxes
from .kernels.merge import merge_until_stable, remove_empty
from .kernels.ring import PatchedRing
from .kernels.temporal import update_temporal
from .patches import PATCH_BUDGET, _check_range, _union, patch_groups, patch_memory_tsub
from .refit import CNMFEstimates, _pass_aty, _upsample_time, temporal_options

__all__ = ["CNMFEPatchSet", "cnmfe_options", "correlation_pnr", "fit_patches_cnmfe", "refit_cnmfe", "seeding_dataset",
           "NoSeedsWarning"]

REFIT_ROUNDS = 2  # alternations of (background from the traces, traces from the movie less it)


class NoSeedsWarning(UserWarning):
    """The seed thresholds left no neuron: the result is empty."""


@dataclass
class CNMFEPatchSet:
    """Neurons of all patches in global pixels after merging, and the patches' rings.

    ``A`` (N, K) csc unit-norm footprints; ``C`` (K, Tp) traces at the patches' rate (``tsub``
    frames averaged); ``ring`` the background; ``sn`` (N,) pixel noise; ``boxes`` the patch
    grid; ``n_per_patch`` neurons each patch returned; ``n_seeds`` seeds each patch took;
    ``correlation`` and ``pnr`` (H, W) the images the seeds were chosen on, each pixel from
    the patch that owns it (the PNR of ``tsub``-averaged frames, compared with
    ``min_pnr * sqrt(tsub)``).
    """

    A: sp.csc_matrix
    C: np.ndarray
    ring: PatchedRing
    sn: np.ndarray
    boxes: list[tuple[int, int, int, int]]
    n_per_patch: list[int]
    n_seeds: list[int]
    tsub: int
    correlation: np.ndarray
    pnr: np.ndarray

    @property
    def best(self) -> tuple[float, float]:
        """The largest correlation and the largest PNR (per frame of the movie) seen."""
        return float(self.correlation.max(initial=0.0)), float(self.pnr.max(initial=0.0) / np.sqrt(self.tsub))


def cnmfe_options(params: Params, tsub: int = 1) -> CNMFEOptions:
    """:class:`CNMFEOptions` from the parameter groups. ``min_pnr`` grows with ``sqrt(tsub)``
    as CaImAn's: averaging ``tsub`` frames divides the noise by about that, not the peaks."""
    ip, tp, pp, sp_ = params.init, params.temporal, params.preprocess, params.spatial
    seeds = SeedOptions(gSig=tuple(ip.gSig), gSiz=tuple(params.gSiz()), min_corr=ip.min_corr,
                        min_pnr=ip.min_pnr * float(np.sqrt(tsub)), max_number=ip.K, center_psf=ip.center_psf,
                        noise_range=pp.noise_range, noise_method=pp.noise_method)
    return CNMFEOptions(
        seeds=seeds, ring_size_factor=ip.ring_size_factor, ssub_B=ip.ssub_B, init_iter=ip.init_iter,
        merge_thr=params.merging.merge_thr, max_merge_area=params.merging.max_merge_area,
        do_merge=params.merging.do_merge, p=tp.p, bas_nonneg=tp.bas_nonneg, noise_range=pp.noise_range,
        noise_method=pp.noise_method, lags=pp.lags, fudge_factor=tp.fudge_factor,
        spatial=dict(thr_method=sp_.thr_method, maxthr=sp_.maxthr, nrgthr=sp_.nrgthr, extract_cc=sp_.extract_cc))


def _read(source: Any, box: tuple[int, int, int, int], tsub: int) -> np.ndarray:
    """The movie inside ``box`` (T // tsub, h, w) float32, averaged over ``tsub`` frames."""
    if isinstance(source, ZarrMovie):
        return source.read_downsampled(box, tsub) if tsub > 1 else source.read(0, source.shape[0], box)
    Y = np.asarray(source, dtype=np.float32)
    if tsub > 1:
        n = len(Y) // tsub
        Y = Y[: n * tsub].reshape(n, tsub, *Y.shape[1:]).mean(axis=1)
    return Y


def _fit_group(source: Any, union: tuple[int, int, int, int], boxes: list, owns: list, dims: tuple[int, int],
               tsub: int, opts: CNMFEOptions) -> list[dict[str, Any]]:
    """One task: read the union of neighbouring patches once, run CNMF-E on each patch."""
    Y = _read(source, union, tsub)
    _check_range(Y, source)
    y, x = union[0], union[2]
    return [_fit_one(Y[:, b[0] - y: b[1] - y, b[2] - x: b[3] - x], b, o, dims, opts) for b, o in zip(boxes, owns)]


def _fit_one(Y: np.ndarray, box: tuple[int, int, int, int], own: tuple[int, int, int, int] | None,
             dims: tuple[int, int], opts: CNMFEOptions) -> dict[str, Any]:
    """CNMF-E on one patch; its neurons as sparse entries in global pixels, and its ring."""
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    local = None if own is None else (own[0] - y0, own[1] - y0, own[2] - x0, own[3] - x0)
    res = fit_patch_cnmfe(np.ascontiguousarray(Y), opts, own=local)
    pixels = np.arange(h * w)
    glob = (y0 + pixels // w) * dims[1] + (x0 + pixels % w)
    A = res.A.tocoo()
    return {"rows": glob[A.row], "cols": A.col, "vals": A.data.astype(np.float32), "K": res.A.shape[1],
            "C": res.C, "pixels": glob, "sn": res.sn, "ring": res.ring, "seeds": res.n_seeds,
            "correlation": res.images.correlation.ravel(), "pnr": res.images.pnr.ravel()}


def _collect(results: list[dict], N: int, T: int) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray]:
    offsets = np.cumsum([0] + [r["K"] for r in results])
    rows = np.concatenate([r["rows"] for r in results])
    cols = np.concatenate([r["cols"] + o for r, o in zip(results, offsets)])
    vals = np.concatenate([r["vals"] for r in results])
    A = sp.csc_matrix((vals, (rows, cols)), shape=(N, int(offsets[-1])), dtype=np.float32)
    C = np.vstack([r["C"] for r in results]) if offsets[-1] else np.zeros((0, T), np.float32)
    sn = np.zeros(N, np.float32)
    for r in results:
        sn[r["pixels"]] = r["sn"]
    return A, C.astype(np.float32), sn


def fit_patches_cnmfe(movie: xr.DataArray, params: Params) -> CNMFEPatchSet:
    """CNMF-E on every patch (a task per block of neighbouring patches), the neurons merged
    across patches, the patches' rings kept for the refit."""
    t, h, w = movie.shape
    pp = params.patch
    boxes = patch_boxes((h, w), pp.rf, pp.stride, pp.border_pix)
    budget = PATCH_BUDGET * pp.memory_fact
    tsub = max(params.init.tsub, max(patch_memory_tsub(t, box, budget) for box in boxes))
    opts = cnmfe_options(params, tsub)
    tiles = own_boxes(boxes)
    returned = tiles if pp.del_duplicates else [None] * len(boxes)
    groups = patch_groups(boxes, t // tsub, budget)
    fit = dask.delayed(_fit_group, pure=True)
    tasks = []
    for g in groups:
        union = _union([boxes[i] for i in g])
        tasks.append(fit(patch_input(movie, union), union, [boxes[i] for i in g], [returned[i] for i in g],
                         (h, w), tsub, opts))
    done = compute(tasks, label=f"CNMF-E on {len(boxes)} patches")
    results: list[dict] = [None] * len(boxes)  # type: ignore[list-item]
    for g, out in zip(groups, done):
        for i, r in zip(g, out):
            results[i] = r
    A, C, sn = _collect(results, h * w, t // tsub)
    if params.merging.do_merge and A.shape[1] > 1:
        A, C = merge_until_stable(A, C, params.merging.merge_thr, params.merging.max_merge_area)
    ring = PatchedRing(boxes, tiles, [r["ring"] for r in results], (h, w))
    correlation, pnr = (_stitch(results, tiles, boxes, key, (h, w)) for key in ("correlation", "pnr"))
    return CNMFEPatchSet(sp.csc_matrix(A), C, ring, sn, boxes, [r["K"] for r in results],
                         [r["seeds"] for r in results], tsub, correlation, pnr)


def _stitch(results: list[dict], tiles: list, boxes: list, key: str, dims: tuple[int, int]) -> np.ndarray:
    """A per-patch image of the whole field, each pixel from the patch that owns it."""
    out = np.zeros(dims, np.float32)
    for r, (ty0, ty1, tx0, tx1), (y0, y1, x0, x1) in zip(results, tiles, boxes):
        img = r[key].reshape(y1 - y0, x1 - x0)
        out[ty0:ty1, tx0:tx1] = img[ty0 - y0:ty1 - y0, tx0 - x0:tx1 - x0]
    return out


def seeding_dataset(ps: CNMFEPatchSet, params: Params) -> xr.Dataset:
    """The images the patches' seeds were chosen on (the ``/corr_pnr`` group of a store):
    ``correlation``, ``pnr`` (per frame of the movie: the patches' PNR of averaged frames
    over ``sqrt(tsub)``) and ``seeds``, the pixels that pass both thresholds."""
    pnr = ps.pnr / np.float32(np.sqrt(ps.tsub))
    seeds = (ps.correlation >= params.init.min_corr) & (pnr >= params.init.min_pnr)
    dims = ("y", "x")
    return xr.Dataset({"correlation": (dims, ps.correlation), "pnr": (dims, pnr), "seeds": (dims, seeds)},
                      attrs={"min_corr": params.init.min_corr, "min_pnr": params.init.min_pnr, "tsub": ps.tsub,
                             "source": "patches"})


def refit_cnmfe(movie: xr.DataArray, ps: CNMFEPatchSet, params: Params) -> CNMFEstimates:
    """Full-rate traces of the patches' neurons from one pass over the movie's time chunks.

    The background of the traces is the ring model's (see the module docstring), alternated
    ``REFIT_ROUNDS`` times with the traces it depends on; the footprints are the patches'.
    The background is stored as one component: the baseline ``b0`` with a constant trace.
    """
    T, H, W = movie.shape
    dims = (H, W)
    b0 = ps.ring.b0()
    b, f = b0[:, None], np.ones((1, T), np.float32)
    A = sp.csc_matrix(ps.A, dtype=np.float64)
    K = A.shape[1]
    if K == 0:
        return _empty(A, b, f, ps.sn, dims, T, params.temporal.p)
    MtA = ps.ring.adjoint(A)
    A_eff = (A - MtA).tocsc()
    AtY = _pass_aty(time_blocks(movie), A_eff, np.zeros((H * W, 0), np.float32), "CNMF-E: traces at full rate")
    offset = np.asarray(A.T @ ps.ring.constant(), np.float64)
    leak = np.asarray((MtA.T @ A).toarray(), np.float64)  # how neurons' light enters the background
    AtA = np.asarray((A.T @ A).toarray(), np.float64)
    C = _upsample_time(np.asarray(ps.C, np.float32), ps.tsub, T).astype(np.float64)
    topts = temporal_options(params)
    for _ in range(REFIT_ROUNDS):
        tres = update_temporal(AtY - offset[:, None] + leak @ C, AtA, C, np.zeros((0, T)), **topts)
        C = tres.C.astype(np.float64)
    A, C32, keep = remove_empty(A.astype(np.float32), tres.C)
    return CNMFEstimates(A, C32, tres.S[keep], tres.YrA[keep], b, f, tres.g[keep], tres.bl[keep], tres.c1[keep],
                         tres.sn[keep], np.asarray(ps.sn, np.float32), dims)


def _empty(A, b, f, sn, dims, T, p) -> CNMFEstimates:
    z = np.zeros((0, T), np.float32)
    e = np.zeros(0)
    return CNMFEstimates(sp.csc_matrix((A.shape[0], 0), dtype=np.float32), z, z.copy(), z.copy(), b, f,
                         np.zeros((0, p)), e, e.copy(), e.copy(), np.asarray(sn, np.float32), dims)



def _peak(parts: list[np.ndarray]) -> np.ndarray:
    return np.maximum.reduce(parts)


def correlation_pnr(movie: xr.DataArray, params: Params, *, thresh_init: float = 2.0) -> xr.Dataset:
    """The correlation and peak-to-noise ratio images CNMF-E seeds on, for the whole movie.

    What :func:`~calcium_dask.cnmf.kernels.corr_pnr.corr_pnr_images` computes on a patch
    in memory, here in two passes over the movie's time chunks (the first gives each pixel's
    mean and noise, the second the maxima and the correlation's sums), so the images of a
    long session cost two reads and no memory: choose ``min_corr`` and ``min_pnr`` on them
    (CaImAn's demo shows them side by side). The noise is the mean over chunks of each
    chunk's noise variance, which matches the whole trace's for white noise.

    Returns
    -------
    xarray.Dataset
        ``correlation``, ``pnr`` and ``noise`` (y, x) float32, and ``seeds`` (y, x) bool:
        the pixels that pass both ``min_corr`` and ``min_pnr``.
    """
    ip, pp = params.init, params.preprocess
    kernel = psf_kernel(ip.gSig, center_psf=ip.center_psf)
    blocks = [blk for _, blk in time_blocks(movie.assign_attrs(check_nan=pp.check_nan))]
    moments = [dask.delayed(filtered_moments, pure=True)(b, kernel, noise_range=pp.noise_range,
                                                         noise_method=pp.noise_method) for b in blocks]
    total = compute([], label="correlation and PNR: noise", sums=[(moments, combine)])[0]
    n = max(float(total["n"]), 1.0)
    mean = (total["s1"] / n).astype(np.float32)
    noise = np.maximum(np.sqrt(total["noise2"] / n), np.finfo(np.float32).tiny).astype(np.float32)
    kept = [dask.delayed(kept_sums, pure=True, nout=2)(b, kernel, mean, noise, thresh_init) for b in blocks]
    sums, peak = compute([], label="correlation and PNR: images",
                         sums=[([k[0] for k in kept], combine), ([k[1] for k in kept], _peak)])
    corr = finalize(sums)["correlation"]
    pnr = (peak / noise).astype(np.float32)
    seeds = (corr >= ip.min_corr) & (pnr >= ip.min_pnr)
    dims = ("y", "x")
    return xr.Dataset({"correlation": (dims, corr), "pnr": (dims, pnr), "noise": (dims, noise),
                       "seeds": (dims, seeds)},
                      attrs={"min_corr": ip.min_corr, "min_pnr": ip.min_pnr, "gSig": list(ip.gSig),
                             "center_psf": ip.center_psf, "source": "movie"})
