"""CNMF on patches as dask tasks, and the reduction of their results to one set of components.

Each patch runs :func:`~calcium_dask.cnmf.kernels.fit.fit_patch` on numpy data and returns, as
sparse footprints in global pixel coordinates, only the components centred in its own tile
(:func:`~calcium_dask.cnmf.kernels.grid.own_boxes`): a neuron in the overlap of two patches is
reported once, and the K seeds of a patch are not spent on its neighbours' neurons.
Neighbouring patches are fitted by one task that reads their union once. The components are
then merged where they overlap and correlate, and the patches' backgrounds (averaged where
patches overlap) are reduced to one low-rank background (CaImAn's ``run_CNMF_patches``
followed by ``merge_components``).

The seeding departs from CaImAn's ``greedyROI`` where its failures were found on simulated
movies with exact ground truth: seeds are taken by significance of their transients in a
detrended movie, with the neuropil shared by the patch and the flicker of residual motion
removed, and seeding stops when nothing stands out of the noise
(:func:`~calcium_dask.cnmf.kernels.init.greedy_roi`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import dask
import numpy as np
import scipy.sparse as sp
import xarray as xr

from ..errors import MovieError, ParamsError
from ..params import Params
from ..compute import compute
from .kernels.background import low_rank_background
from .kernels.fit import fit_patch
from .kernels.grid import own_boxes, patch_boxes
from .kernels.merge import merge_until_stable
from .options import patch_update_options
from ..movie_blocks import FrameSource, frame_source, read_downsampled

__all__ = ["fit_patches", "PatchSet", "PatchComponents", "patch_options", "patch_tsub", "task_budget",
           "worker_share", "patch_groups",
           "average_samples", "movie_noise", "CLIENT_SAMPLES"]

PATCH_BUDGET = 4 * 2**30  # bytes a patch task may use when the workers' memory limit is unknown
WORKER_BASELINE = 600 * 2**20  # a worker's own memory between tasks (bench_long: 0.35-0.58 GiB)
MIN_SHARE = 0.25  # of a worker's memory limit a patch task may use however small the limit
LOCAL_SCHEDULERS = ("sync", "synchronous", "single-threaded", "threads", "threading", "processes",
                    "multiprocessing")
FIT_COPIES = 7  # fit_patch's peak working memory in copies of its patch's data (measured: 6.3-6.7)
DETREND_DECAYS = 2.5  # seeding detrend window, in indicator decay times
GROUP_SIDE = 2  # patches per task along each axis (they share the tiles they read)
MAX_TYPICAL = 1e15  # median |pixel| above which float32 sums of squares over a patch overflow
CLIENT_SAMPLES = 20_000  # samples per trace the patches send back for merging and seeding the refit
MIN_PATCH_SAMPLES = 50  # samples a downsampled patch needs (noise spectrum, AR fit, seeding windows)


@dataclass
class PatchSet:
    """Components of all patches, in global coordinates, after merging duplicates.

    ``A`` (N, K) csc footprints; ``C`` (K, Tp) traces, each sample the average of ``tsub``
    frames of the movie (the patches' own downsampling for memory, times a further one
    that keeps ``Tp <= CLIENT_SAMPLES``: the client never holds a full-rate trace);
    ``b`` (N, nb), ``f`` (nb, Tp) one low-rank background; ``sn`` (N,) pixel noise;
    ``boxes`` the patch grid; ``n_per_patch`` components found in each patch before
    merging; ``tsub`` frames of the movie per sample of ``C`` and ``f``.
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
    return dict(K=ip.K or 0, gSig=ip.gSig, gSiz=params.gSiz(), p=params.patch.p_patch, nb=params.patch.nb_patch,
                merge_thr=params.merging.merge_thr, max_merge_area=params.merging.max_merge_area,
                method_init=ip.method_init, ssub=ip.ssub,
                tsub=ip.tsub, noise_range=params.preprocess.noise_range,
                noise_method=params.preprocess.noise_method, lags=params.preprocess.lags,
                bas_nonneg=tp.bas_nonneg, fudge_factor=tp.fudge_factor, do_merge=params.merging.do_merge,
                only_init=params.patch.only_init, nIter=ip.nIter, maxIter=ip.maxIter,
                rolling_sum=ip.rolling_sum, rolling_length=ip.rolling_length,
                normalize_init=ip.normalize_init, detrend_window=detrend_window(params),
                min_snr_init=ip.min_snr_init, decay_frames=params.data.decay_time * params.data.fr,
                remove_common=True, remove_motion=True, **patch_update_options(params))


def detrend_window(params: Params) -> int:
    """Frames of the running mean removed before seeding: a few indicator decay times.

    Long enough to keep most of a transient, short enough to remove the drift and the slow
    neuropil that would otherwise outweigh dim neurons (odd, so the mean is centred).
    """
    n = int(round(DETREND_DECAYS * params.data.decay_time * params.data.fr))
    return n + 1 - n % 2 if n > 1 else 0


def task_budget(params: Params) -> float:
    """Bytes one patch task may use on the current client's workers, times ``patch.memory_fact``.

    A task leaves the worker below the fraction of its memory limit at which dask starts
    spilling (:func:`worker_share` of the smallest limit): above it the worker moves data
    to disk and, a little higher, stops taking tasks. ``PATCH_BUDGET`` when no limit is
    known, or when a local scheduler set in dask's config (``synchronous``, ``threads``...)
    runs the tasks here, not on the client's workers."""
    limits: list[int] = []
    if dask.config.get("scheduler", None) in LOCAL_SCHEDULERS:
        return PATCH_BUDGET * params.patch.memory_fact
    try:
        from distributed import get_client

        workers = get_client().scheduler_info().get("workers", {}).values()
        limits = [int(w.get("memory_limit") or 0) for w in workers]
    except (ImportError, ValueError):
        pass
    limits = [m for m in limits if m > 0]
    return (worker_share(min(limits)) if limits else PATCH_BUDGET) * params.patch.memory_fact


def worker_share(limit: float) -> float:
    """Bytes a task may use on a worker of memory limit ``limit``: up to dask's spill threshold
    (``distributed.worker.memory.spill``, else pause, else terminate; 0.7 by default) less the
    worker's own ``WORKER_BASELINE``, and at least ``MIN_SHARE`` of the limit."""
    fraction = next((float(f) for key in ("spill", "pause", "terminate")
                     if (f := dask.config.get(f"distributed.worker.memory.{key}", None))), 0.7)
    return max(fraction * limit - WORKER_BASELINE, MIN_SHARE * limit)


def _box_bytes(n_frames: int, box: tuple[int, int, int, int]) -> int:
    return n_frames * (box[1] - box[0]) * (box[3] - box[2]) * 4


def _read(source: FrameSource, box: tuple[int, int, int, int], tsub: int,
          span: tuple[int, int] | None = None) -> np.ndarray:
    """The movie inside ``box`` over frames ``span`` (default: all) as (T, h, w) float32,
    averaged over ``tsub`` frames."""
    first, last = span if span is not None else (0, source.shape[0])
    return read_downsampled(source, box, tsub, (first, last)) if tsub > 1 else source.read(first, last, box)


def _check_range(Y: np.ndarray, source: FrameSource) -> None:
    """Refuse a movie whose typical value overflows float32 sums of squares over a patch."""
    typical = float(np.median(np.abs(Y[:: max(1, len(Y) // 64)]))) if Y.size else 0.0
    if typical > MAX_TYPICAL:
        raise MovieError(source.name, f"typical pixel value {typical:.3g} is beyond float32 arithmetic "
                                      f"(limit {MAX_TYPICAL:.0e}); divide the movie by a constant")


@dataclass
class PatchComponents:
    """What one patch task sends back: its own tile's components in global pixels.

    ``rows``, ``cols``, ``vals``: the footprints' entries (global pixel, component in the
    patch, value); ``K`` components; ``C`` (K, Tp) and ``f`` (nb, Tp) traces averaged to
    the client's rate; ``pixels`` the patch's global pixel indices; ``b`` (pixels, nb)
    its background footprints; ``sn`` its pixels' noise.
    """

    rows: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    K: int
    C: np.ndarray
    pixels: np.ndarray
    b: np.ndarray
    f: np.ndarray
    sn: np.ndarray


def _fit_group(source: FrameSource, union: tuple[int, int, int, int], boxes: list[tuple[int, int, int, int]],
               owns: list[tuple[int, int, int, int]], dims: tuple[int, int], tsub: int, average: int,
               opts: dict[str, Any]) -> list[PatchComponents]:
    """One task: read the union of neighbouring patches once, run CNMF on each patch."""
    Y = _read(source, union, tsub)
    _check_range(Y, source)
    if tsub > 1:  # windows counted in frames of the full-rate movie
        opts = dict(opts, rolling_length=max(1, opts["rolling_length"] // tsub),
                    detrend_window=opts["detrend_window"] // tsub,
                    decay_frames=opts["decay_frames"] / tsub)
    y, x = union[0], union[2]
    out = [_fit_one(Y[:, b[0] - y: b[1] - y, b[2] - x: b[3] - x], b, o, dims, average, opts)
           for b, o in zip(boxes, owns)]
    return [replace(r, sn=movie_noise(r.sn, tsub)) for r in out]


def movie_noise(sn: np.ndarray, tsub: int) -> np.ndarray:
    """The movie's pixel noise from that of its averages over ``tsub`` frames: white noise
    averaged over ``tsub`` frames has ``sqrt(tsub)`` times less (the refit's spatial update
    and the stored ``pixel_noise`` are at the movie's own rate)."""
    return np.asarray(sn, np.float32) * np.float32(np.sqrt(tsub))


def average_samples(X: np.ndarray, factor: int) -> np.ndarray:
    """Rows of ``X`` averaged over groups of ``factor`` samples (a last partial group too)."""
    X = np.asarray(X, np.float32)
    if factor <= 1:
        return X
    n = -(-X.shape[1] // factor)
    pad = n * factor - X.shape[1]
    Xp = np.concatenate([X, np.repeat(X[:, -1:], pad, axis=1)], axis=1) if pad and X.shape[1] else X
    return Xp.reshape(X.shape[0], n, factor).mean(axis=2) if X.shape[1] else X


def _fit_one(Y: np.ndarray, box: tuple[int, int, int, int], own: tuple[int, int, int, int] | None,
             dims: tuple[int, int], average: int, opts: dict[str, Any]) -> PatchComponents:
    """CNMF on one patch; its own tile's components as sparse entries in global pixels."""
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    local = None if own is None else (own[0] - y0, own[1] - y0, own[2] - x0, own[3] - x0)
    res = fit_patch(np.ascontiguousarray(Y), own=local, **opts)
    local = np.arange(h * w)
    glob = (y0 + local // w) * dims[1] + (x0 + local % w)  # patch pixel -> global pixel
    A = res.A.tocoo()
    return PatchComponents(glob[A.row], A.col, A.data.astype(np.float32), res.A.shape[1],
                           average_samples(res.C, average), glob, np.asarray(res.b, np.float32),
                           average_samples(res.f, average), np.asarray(res.sn, np.float32))


def patch_groups(boxes: list[tuple[int, int, int, int]], n_frames: int, budget: float,
                 side: int = GROUP_SIDE) -> list[list[int]]:
    """Indices of the patches each task fits: blocks of ``side x side`` neighbours.

    Neighbouring patches share most of their tiles, so a task that reads their union once
    decompresses far less than one task per patch; a block whose union would exceed
    ``budget`` bytes (with ``FIT_COPIES`` of its largest patch, fitted one at a time) falls
    back to one patch per task. Patches keep their grid order.
    """
    rows = sorted({(b[0], b[1]) for b in boxes})
    cols = sorted({(b[2], b[3]) for b in boxes})
    key = [(rows.index((b[0], b[1])) // side, cols.index((b[2], b[3])) // side) for b in boxes]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, k in enumerate(key):
        groups.setdefault(k, []).append(i)
    out = []
    for members in groups.values():
        if len(members) > 1 and _group_bytes(n_frames, [boxes[i] for i in members]) > budget:
            out.extend([i] for i in members)
        else:
            out.append(members)
    return out


def _group_bytes(n_frames: int, boxes: list[tuple[int, int, int, int]]) -> int:
    """Peak bytes of a task fitting ``boxes`` one after another from their union's data."""
    return _box_bytes(n_frames, _union(boxes)) + FIT_COPIES * max(_box_bytes(n_frames, b) for b in boxes)


def _union(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    return (min(b[0] for b in boxes), max(b[1] for b in boxes),
            min(b[2] for b in boxes), max(b[3] for b in boxes))


def _collect(results: list[PatchComponents], dims: tuple[int, int]) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray,
                                                                             np.ndarray, np.ndarray]:
    """Stack the patches' components into global A, C, background factors and pixel noise."""
    N = dims[0] * dims[1]
    offsets = np.cumsum([0] + [r.K for r in results])
    rows = np.concatenate([r.rows for r in results]) if results else np.zeros(0, int)
    cols = np.concatenate([r.cols + o for r, o in zip(results, offsets)]) if results else np.zeros(0, int)
    vals = np.concatenate([r.vals for r in results]) if results else np.zeros(0, np.float32)
    A = sp.csc_matrix((vals, (rows, cols)), shape=(N, int(offsets[-1])), dtype=np.float32)
    C = np.vstack([r.C for r in results if r.K]) if offsets[-1] else np.zeros((0, results[0].f.shape[1]))
    f_all = np.vstack([r.f for r in results if r.f.shape[0]]) if any(r.f.shape[0] for r in results) \
        else np.zeros((0, C.shape[1]), np.float32)
    sn = np.zeros(N, np.float32)
    cover = np.zeros(N, np.float32)
    for r in results:
        sn[r.pixels] = r.sn
        cover[r.pixels] += 1
    # pixels in the overlaps belong to several patches: their backgrounds average, not add
    b_all = (sp.diags(1.0 / np.maximum(cover, 1)) @ _patch_backgrounds(results, N)).tocsr()
    return A, C, b_all, f_all, sn


def _patch_backgrounds(results: list[PatchComponents], N: int) -> sp.csr_matrix:
    """(N, P) sparse matrix of every patch's background footprints in global pixels."""
    rows, cols, vals, j = [], [], [], 0
    for r in results:
        for m in range(r.b.shape[1]):
            rows.append(r.pixels)
            cols.append(np.full(len(r.pixels), j))
            vals.append(r.b[:, m])
            j += 1
    if not j:
        return sp.csr_matrix((N, 0), dtype=np.float32)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(N, j), dtype=np.float32)


def patch_tsub(shape: tuple[int, int, int], params: Params) -> int:
    """Frames a patch averages per sample so that a task fitting its block of neighbours
    (:func:`patch_groups`) fits the task's budget (:func:`task_budget`): the blocks stay
    whole at any length, so the movie's tiles are read as often per frame in a long
    session as in a short one. A clear error, before any work, when downsampling (that,
    and ``init.tsub``) leaves a patch too few samples (a movie short to begin with is not
    refused)."""
    t, h, w = shape
    boxes = patch_boxes((h, w), params.patch.rf, params.patch.stride, params.patch.border_pix)
    budget = task_budget(params)
    blocks = patch_groups(boxes, 0, budget)  # no frames: every block of neighbours whole
    tsub = max(max(1, -(-_group_bytes(t, [boxes[i] for i in g]) // int(budget))) for g in blocks)
    samples = t // (tsub * params.init.tsub)
    if tsub * params.init.tsub > 1 and samples < MIN_PATCH_SAMPLES:
        why = f"averaged by {tsub} to fit a patch task's memory and by init.tsub={params.init.tsub}"
        raise ParamsError(f"{t} frames {why} leave {samples} samples per patch, fewer than the "
                          f"{MIN_PATCH_SAMPLES} CNMF needs: raise patch.memory_fact or lower init.tsub")
    return tsub


def fit_patches(movie: xr.DataArray, params: Params) -> PatchSet:
    """Run CNMF on every patch of ``movie`` (a task per block of neighbouring patches),
    collect the components of each patch's tile, merge them and reduce the backgrounds."""
    t, h, w = movie.shape
    boxes = patch_boxes((h, w), params.patch.rf, params.patch.stride, params.patch.border_pix)
    budget = task_budget(params)
    tsub = patch_tsub(movie.shape, params)
    average = max(1, -(-(t // tsub) // CLIENT_SAMPLES))
    opts = patch_options(params)
    # del_duplicates: each patch returns only its own tile's components (else all, merged later)
    tiles = own_boxes(boxes) if params.patch.del_duplicates else [None] * len(boxes)
    groups = patch_groups(boxes, t // tsub, budget)
    source = frame_source(movie)
    fit = dask.delayed(_fit_group, pure=True)
    tasks = []
    for g in groups:
        union = _union([boxes[i] for i in g])
        tasks.append(fit(source, union, [boxes[i] for i in g], [tiles[i] for i in g], (h, w), tsub, average, opts))
    done = compute(tasks, label=f"CNMF on {len(boxes)} patches")
    results: list[PatchComponents] = [None] * len(boxes)  # type: ignore[list-item]
    for g, out in zip(groups, done):
        for i, r in zip(g, out):
            results[i] = r
    A, C, b_all, f_all, sn = _collect(results, (h, w))
    if params.merging.do_merge:
        A, C = merge_until_stable(A, C, params.merging.merge_thr, params.merging.max_merge_area)
    b, f = low_rank_background(b_all, f_all, params.init.nb, seed=params.compute.seed)
    return PatchSet(A, C, b, f, sn, boxes, [r.K for r in results], tsub * average)
