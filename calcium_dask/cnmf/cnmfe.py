"""CNMF-E (``method_init='corr_pnr'``, one-photon movies) as dask tasks: patches, merge, refit.

Each patch is one task on numpy data (:func:`~calcium_dask.cnmf.kernels.cnmfe.fit_patch_cnmfe`),
with a ring background of its own, time block by time block in a session longer than a
task holds at ``init.tsub`` (a neuron is one unit over the blocks); it returns the neurons
centred in its own tile (with ``del_duplicates``) and its ring. The neurons of all patches
are merged where they overlap and correlate. The refit is the two-photon path's distributed one
(:func:`~calcium_dask.cnmf.refit.temporal_update` and
:func:`~calcium_dask.cnmf.refit.merge_pass`: traces in the results store, frame and unit
tasks) with the patches' ring as the background: with ``M`` its linear part
(``B = B(0) + M (Y - A C)``),

``A^T (Y - B) = (A - M^T A)^T Y - A^T B(0) + (M^T A)^T A C``,

one pass over the movie with the footprints ``A - M^T A``, then terms of the traces
refreshed by frame tasks before each sweep (:class:`~calcium_dask.cnmf.refit.RingTerms`).
The footprints are the patches' (their spatial updates ran there, against their ring).
No process holds the movie or a unit x frame array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import scipy.sparse as sp
import xarray as xr

from ..compute import compute
from ..movie_blocks import FrameSource, frame_source, iter_blocks
from ..params import Params
from ..summary.kernels import combine, finalize
from ..traces import TraceArrays, TraceLayout, gather_rows
from .kernels.cnmfe import CNMFEOptions, CNMFEPatch, PatchJoin, fit_patch_cnmfe
from .kernels.corr_pnr import SeedOptions, filtered_moments, kept_sums, psf_kernel
from .kernels.grid import own_boxes, patch_boxes
from .kernels.merge import merge_until_stable
from .kernels.ring import PatchedRing, RingModel
from .patches import (CLIENT_SAMPLES, _check_range, _read, _union, average_samples, movie_noise, patch_groups,
                      patch_tsub, task_budget)
from .refit import (OUTPUT_NAMES, RefitResult, RingTerms, TraceState, _write_initial, merge_pass, temporal_options,
                    temporal_update)

__all__ = ["CNMFEPatchSet", "cnmfe_options", "correlation_pnr", "fit_patches_cnmfe", "refit_cnmfe",
           "seeding_dataset", "NoSeedsWarning"]


class NoSeedsWarning(UserWarning):
    """The seed thresholds left no neuron: the result is empty."""


@dataclass
class CNMFEPatchSet:
    """Neurons of all patches in global pixels after merging, and the patches' rings.

    ``A`` (N, K) csc unit-norm footprints; ``C`` (K, Tp) traces, each sample the average of
    ``tsub`` frames of the movie (the client never holds a full-rate trace); ``ring`` the
    background; ``sn`` (N,) pixel noise; ``boxes`` the patch grid; ``n_per_patch`` neurons
    each patch returned; ``n_seeds`` seeds each patch took (over all its time blocks);
    ``patch_tsub`` frames the patches averaged per sample (``init.tsub``); ``correlation``
    and ``pnr`` (H, W) the images the seeds were chosen on, each pixel from the patch that
    owns it, the largest over its time blocks (the PNR of ``patch_tsub``-averaged frames,
    compared with ``min_pnr * sqrt(patch_tsub)``); ``spans`` the time blocks
    (first and end frame) each patch was fitted on, one unless the session is longer than a
    task holds at ``init.tsub``.
    """

    A: sp.csc_matrix
    C: np.ndarray
    ring: PatchedRing
    sn: np.ndarray
    boxes: list[tuple[int, int, int, int]]
    n_per_patch: list[int]
    n_seeds: list[int]
    tsub: int
    patch_tsub: int
    correlation: np.ndarray
    pnr: np.ndarray
    spans: list[tuple[int, int]]

    @property
    def best(self) -> tuple[float, float]:
        """The largest correlation and the largest PNR (per frame of the movie) seen."""
        return (float(self.correlation.max(initial=0.0)),
                float(self.pnr.max(initial=0.0) / pnr_scale(self.patch_tsub)))


@dataclass
class CNMFEPatchComponents:
    """What one CNMF-E patch task sends back (global pixels): its own tile's neurons
    (``rows``, ``cols``, ``vals`` of the footprints; ``K``; ``C`` (K, Tp) at the client's
    rate), ``pixels`` the patch's global pixel indices, ``sn`` their noise, its ``ring``,
    ``seeds`` taken, and its ``correlation`` and ``pnr`` images (flattened)."""

    rows: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    K: int
    C: np.ndarray
    pixels: np.ndarray
    sn: np.ndarray
    ring: RingModel
    seeds: int
    correlation: np.ndarray
    pnr: np.ndarray


def pnr_scale(tsub: int) -> float:
    """How much a transient's peak-to-noise ratio grows when the patches are fitted on
    averages of ``tsub`` frames (``init.tsub``): ``sqrt(tsub)``, CaImAn's rule (the noise
    falls by the square root, the peaks stay)."""
    return float(np.sqrt(max(1, tsub)))


def cnmfe_options(params: Params, tsub: int = 1) -> CNMFEOptions:
    """:class:`CNMFEOptions` from the parameter groups, for patches averaged over ``tsub``
    frames: ``min_pnr`` grows by ``sqrt(tsub)`` (``pnr_scale``)."""
    ip, tp, pp, sp_ = params.init, params.temporal, params.preprocess, params.spatial
    seeds = SeedOptions(gSig=tuple(ip.gSig), gSiz=tuple(params.gSiz()), min_corr=ip.min_corr,
                        min_pnr=ip.min_pnr * pnr_scale(tsub), max_number=ip.K, center_psf=ip.center_psf,
                        noise_range=pp.noise_range, noise_method=pp.noise_method)
    return CNMFEOptions(
        seeds=seeds, ring_size_factor=ip.ring_size_factor, ssub_B=ip.ssub_B, init_iter=ip.init_iter,
        merge_thr=params.merging.merge_thr, max_merge_area=params.merging.max_merge_area,
        do_merge=params.merging.do_merge, p=tp.p, bas_nonneg=tp.bas_nonneg, noise_range=pp.noise_range,
        noise_method=pp.noise_method, lags=pp.lags, fudge_factor=tp.fudge_factor,
        spatial=dict(thr_method=sp_.thr_method, maxthr=sp_.maxthr, nrgthr=sp_.nrgthr, extract_cc=sp_.extract_cc))


def _fit_group(source: FrameSource, union: tuple[int, int, int, int], boxes: list, owns: list,
               dims: tuple[int, int], tsub: int, average: int, opts: CNMFEOptions,
               spans: list[tuple[int, int]]) -> list[CNMFEPatchComponents]:
    """One task: CNMF-E on neighbouring patches, time block by time block (the union of
    the patches read once per block), each patch's blocks joined (:class:`PatchJoin`)."""
    joins = [PatchJoin() for _ in boxes]
    y, x = union[0], union[2]
    for span in spans:
        Y = _read(source, union, tsub, span)
        _check_range(Y, source)
        for b, join in zip(boxes, joins):
            part = fit_patch_cnmfe(np.ascontiguousarray(Y[:, b[0] - y: b[1] - y, b[2] - x: b[3] - x]), opts)
            join.add(part, average_samples(part.C, average))
        del Y
    return [_components(j.result(_local(o, b)), b, dims, tsub) for b, o, j in zip(boxes, owns, joins)]


def _local(own: tuple[int, int, int, int] | None, box: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """A patch's own tile in the patch's pixels."""
    return None if own is None else (own[0] - box[0], own[1] - box[0], own[2] - box[2], own[3] - box[2])


def _components(res: CNMFEPatch, box: tuple[int, int, int, int], dims: tuple[int, int],
                tsub: int) -> CNMFEPatchComponents:
    """A patch's neurons as sparse entries in global pixels, and its ring."""
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    pixels = np.arange(h * w)
    glob = (y0 + pixels // w) * dims[1] + (x0 + pixels % w)
    A = res.A.tocoo()
    return CNMFEPatchComponents(glob[A.row], A.col, A.data.astype(np.float32), res.A.shape[1], res.C,
                                glob, movie_noise(res.sn, tsub), res.ring, res.n_seeds,
                                res.images.correlation.ravel(), res.images.pnr.ravel())


def time_blocks(t: int, tsub: int, average: int, n_blocks: int) -> list[tuple[int, int]]:
    """``n_blocks`` consecutive spans of the ``t`` frames, about equal, each but the last a
    whole number of ``tsub * average`` frames (so that the blocks' traces, averaged to the
    client's rate, join end to end into the whole session's)."""
    unit = tsub * average
    edges = sorted({min(t, int(round(i * t / n_blocks / unit)) * unit) for i in range(n_blocks)} | {t})
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _collect(results: list[CNMFEPatchComponents], N: int, Tp: int) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray]:
    offsets = np.cumsum([0] + [r.K for r in results])
    rows = np.concatenate([r.rows for r in results])
    cols = np.concatenate([r.cols + o for r, o in zip(results, offsets)])
    vals = np.concatenate([r.vals for r in results])
    A = sp.csc_matrix((vals, (rows, cols)), shape=(N, int(offsets[-1])), dtype=np.float32)
    C = np.vstack([r.C for r in results if r.K]) if offsets[-1] else np.zeros((0, Tp), np.float32)
    sn = np.zeros(N, np.float32)
    for r in results:
        sn[r.pixels] = r.sn
    return A, C.astype(np.float32), sn


def fit_patches_cnmfe(movie: xr.DataArray, params: Params) -> CNMFEPatchSet:
    """CNMF-E on every patch (a task per block of neighbouring patches), the neurons merged
    across patches, the patches' rings kept for the refit.

    A session longer than a task's budget holds at ``init.tsub`` is fitted in consecutive
    time blocks that fit it (:func:`time_blocks`), at that rate: on averages of more frames
    a one-photon transient loses its peak and the dim neurons were lost (at 21,600 frames
    at 20 Hz on 2 GB workers, averages of 8 frames found 68-72 % of the neurons, 4 blocks 94 %).
    Each patch's blocks are joined (:class:`~.kernels.cnmfe.PatchJoin`), so a neuron is
    one unit over the session. The time of this stage grows with the frames; its memory
    does not.
    """
    t, h, w = movie.shape
    pp = params.patch
    boxes = patch_boxes((h, w), pp.rf, pp.stride, pp.border_pix)
    budget = task_budget(params)
    tsub = max(1, params.init.tsub)
    n_blocks = -(-patch_tsub(movie.shape, params) // tsub)
    average = max(1, -(-(t // tsub) // CLIENT_SAMPLES))
    spans = time_blocks(t, tsub, average, n_blocks)
    opts = cnmfe_options(params, tsub)
    tiles = own_boxes(boxes)
    returned = tiles if pp.del_duplicates else [None] * len(boxes)
    groups = patch_groups(boxes, max(b - a for a, b in spans) // tsub, budget)
    source = frame_source(movie)
    fit = dask.delayed(_fit_group, pure=True)
    tasks = []
    for g in groups:
        union = _union([boxes[i] for i in g])
        tasks.append(fit(source, union, [boxes[i] for i in g], [returned[i] for i in g], (h, w), tsub, average,
                         opts, spans))
    done = compute(tasks, label=f"CNMF-E on {len(boxes)} patches")
    results: list[CNMFEPatchComponents] = [None] * len(boxes)  # type: ignore[list-item]
    for g, out in zip(groups, done):
        for i, r in zip(g, out):
            results[i] = r
    A, C, sn = _collect(results, h * w, -(-(t // tsub) // average))
    if params.merging.do_merge and A.shape[1] > 1:
        A, C = merge_until_stable(A, C, params.merging.merge_thr, params.merging.max_merge_area)
    ring = PatchedRing(boxes, tiles, [r.ring for r in results], (h, w))
    correlation, pnr = (_stitch(results, tiles, boxes, key, (h, w)) for key in ("correlation", "pnr"))
    return CNMFEPatchSet(sp.csc_matrix(A), C, ring, sn, boxes, [r.K for r in results],
                         [r.seeds for r in results], tsub * average, tsub, correlation, pnr,
                         spans)


def _stitch(results: list[CNMFEPatchComponents], tiles: list, boxes: list, key: str, dims: tuple[int, int]) -> np.ndarray:
    """A per-patch image of the whole field, each pixel from the patch that owns it."""
    out = np.zeros(dims, np.float32)
    for r, (ty0, ty1, tx0, tx1), (y0, y1, x0, x1) in zip(results, tiles, boxes):
        img = getattr(r, key).reshape(y1 - y0, x1 - x0)
        out[ty0:ty1, tx0:tx1] = img[ty0 - y0:ty1 - y0, tx0 - x0:tx1 - x0]
    return out


def seeding_dataset(ps: CNMFEPatchSet, params: Params) -> xr.Dataset:
    """The images the patches' seeds were chosen on (the ``/corr_pnr`` group of a store):
    ``correlation``, ``pnr`` (per frame of the movie: the patches' PNR of averaged frames
    over ``sqrt(patch_tsub)``) and ``seeds``, the pixels that pass both thresholds."""
    pnr = ps.pnr / np.float32(pnr_scale(ps.patch_tsub))
    seeds = (ps.correlation >= params.init.min_corr) & (pnr >= params.init.min_pnr)
    dims = ("y", "x")
    return xr.Dataset({"correlation": (dims, ps.correlation), "pnr": (dims, pnr), "seeds": (dims, seeds)},
                      attrs={"min_corr": params.init.min_corr, "min_pnr": params.init.min_pnr, "tsub": ps.patch_tsub,
                             "source": "patches"})


def refit_cnmfe(source: FrameSource, ps: CNMFEPatchSet, dims: tuple[int, int], params: Params,
                arrays: TraceArrays, out: TraceArrays) -> RefitResult:
    """The patches' neurons on the whole field of view against the ring background:
    temporal update, merge, temporal update, as distributed passes (see the module's
    documentation); the traces go to ``out``.

    The stored background is one component, the ring model's baseline ``B(0)`` with a
    constant trace of ones (its fluctuating part is a function of the movie and the traces,
    not stored): evaluation measures r_values on the movie less it, and dF/F takes no
    background (CaImAn's CNMF-E).
    """
    topts = temporal_options(params)
    iterations = params.temporal.ITER
    ring = RingTerms(ps.ring.adjoint, ps.ring.constant())
    _write_initial(arrays, "c_initial", np.asarray(ps.C, np.float32), ps.tsub, ("unit", "frame"))
    arrays.create("f_initial", 0, dims=("background", "frame"))
    N = dims[0] * dims[1]
    st = TraceState(sp.csc_matrix(ps.A, dtype=np.float32), np.zeros((N, 0), np.float32), arrays, "c_initial",
                    "f_initial")
    if st.K:
        st, _ = temporal_update(source, st, topts, iterations, "CNMF-E refit: temporal update", "first", ring=ring)
        if params.merging.do_merge:
            st = merge_pass(st, params.merging.merge_thr, params.merging.max_merge_area, "CNMF-E refit: merge")
        st, tr = temporal_update(source, st, topts, iterations, "CNMF-E refit: final temporal update", "final",
                                 ring=ring)
        keep = np.flatnonzero((tr.abs_sum > 0) & (np.diff(st.A.indptr) > 0))
        for key, src in (("C", tr.C), ("S", tr.S), ("YrA", tr.YrA)):
            _gather(st.arrays, src, OUTPUT_NAMES[key], keep, out)
        A, g, bl, c1, neurons_sn = st.A[:, keep], tr.g[keep], tr.bl[keep], tr.c1[keep], tr.sn[keep]
    else:
        for name in ("traces", "spikes", "residuals"):
            out.create(name, 0)
        e = np.zeros(0)
        A, g, bl, c1, neurons_sn = st.A, np.zeros((0, params.temporal.p)), e, e.copy(), e.copy()
    _write_ones(out, OUTPUT_NAMES["f"])
    b = ps.ring.b0()[:, None]
    return RefitResult(sp.csc_matrix(A, dtype=np.float32), b.astype(np.float32), g, bl, c1, neurons_sn,
                       np.asarray(ps.sn, np.float32), dims, out, *OUTPUT_NAMES.values())


def _gather(arrays: TraceArrays, src: str, dst: str, keep: np.ndarray, out: TraceArrays) -> None:
    gather_rows(arrays, src, dst, keep, dst_arrays=out, label=f"CNMF-E refit: write {dst}")


def _ones_span(arrays: TraceArrays, name: str, span: tuple[int, int]) -> None:
    arrays.write(name, np.ones((1, span[1] - span[0]), np.float32), t0=span[0])


def _write_ones(arrays: TraceArrays, name: str) -> None:
    """A background trace of ones (the constant baseline's), written by frame tasks."""
    arrays.create(name, 1, dims=("background", "frame"))
    compute([dask.delayed(_ones_span, pure=True)(arrays, name, span) for span in arrays.layout.frame_spans()],
            label="CNMF-E refit: background trace")


def _peak(parts: list[np.ndarray]) -> np.ndarray:
    return np.maximum.reduce(parts)


def _moments_span(source: FrameSource, span: tuple[int, int], kernel: np.ndarray,
                  noise_range: tuple[float, float], noise_method: str) -> dict[str, np.ndarray]:
    return combine([filtered_moments(Y, kernel, noise_range=noise_range, noise_method=noise_method)
                    for _, Y in iter_blocks(source, *span)])


def _kept_span(source: FrameSource, span: tuple[int, int], kernel: np.ndarray, mean: np.ndarray,
               noise: np.ndarray, thresh_init: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    parts = [kept_sums(Y, kernel, mean, noise, thresh_init) for _, Y in iter_blocks(source, *span)]
    return combine([p[0] for p in parts]), _peak([p[1] for p in parts])


def correlation_pnr(mc: Any, params: Params, *, thresh_init: float = 2.0) -> xr.Dataset:
    """The correlation and peak-to-noise ratio images CNMF-E seeds on, for the whole movie.

    What :func:`~calcium_dask.cnmf.kernels.corr_pnr.corr_pnr_images` computes on a patch
    in memory, here in two passes of frame tasks over the movie (the first gives each
    pixel's mean and noise, the second the maxima and the correlation's sums), so the images
    of a long session cost two reads and no memory: choose ``min_corr`` and ``min_pnr`` on
    them (CaImAn's demo shows them side by side, :func:`calcium_dask.viz.plot_corr_pnr`).
    The noise is the mean over time chunks of each chunk's noise variance, which matches
    the whole trace's for white noise.

    Parameters
    ----------
    mc : MotionResult or xarray.DataArray
        The (motion-corrected) movie.
    params : Params
        ``init.gSig``, ``center_psf``, ``min_corr``, ``min_pnr``.

    Returns
    -------
    xarray.Dataset
        ``correlation``, ``pnr`` and ``noise`` (y, x) float32, and ``seeds`` (y, x) bool:
        the pixels that pass both ``min_corr`` and ``min_pnr``.
    """
    ip, pp = params.init, params.preprocess
    movie = mc if isinstance(mc, xr.DataArray) else mc.corrected
    kernel = psf_kernel(ip.gSig, center_psf=ip.center_psf)
    source = frame_source(movie.assign_attrs(check_nan=pp.check_nan))
    spans = TraceLayout.for_movie(movie.shape[0], source.t_chunk).frame_spans()
    moments = [dask.delayed(_moments_span, pure=True)(source.restrict(*s), s, kernel, pp.noise_range,
                                                      pp.noise_method) for s in spans]
    total = compute([], label="correlation and PNR: noise", sums=[(moments, combine)])[0]
    n = max(float(total["n"]), 1.0)
    mean = (total["s1"] / n).astype(np.float32)
    noise = np.maximum(np.sqrt(total["noise2"] / n), np.finfo(np.float32).tiny).astype(np.float32)
    kept = [dask.delayed(_kept_span, pure=True, nout=2)(source.restrict(*s), s, kernel, mean, noise, thresh_init)
            for s in spans]
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
