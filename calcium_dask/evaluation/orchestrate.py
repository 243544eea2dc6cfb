"""Component evaluation and dF/F as tasks, over traces and a movie never held in memory.

Traces are read as dask arrays (from the results store, chunk by chunk): unit tasks
compute each unit's SNR, motion and background correlations and activity peaks over its
whole trace; the spatial correlation ``r_value`` needs the movie at each unit's active
frames, one pass of frame tasks (each adds its span's weighted frames on each footprint's
pixels); duplicates need the trace correlation of a few pairs (moments summed over frame
spans); dF/F is a lazy array of unit tasks, computed when read or saved. The client holds
footprints and per-unit numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp
import xarray as xr

from ..compute import compute
from ..movie_blocks import FrameSource, frame_source, iter_blocks
from ..params import Params
from ..traces import UNIT_CHUNK, TraceLayout, pair_correlations, unit_spans
from .kernels.activity import active_weights, peak_frames, peak_window
from .kernels.background_residue import background_correlation
from .kernels.classifier import classify
from .kernels.dff import detrend_df_f
from .kernels.duplicates import duplicate_candidates, resolve_duplicates
from .kernels.motion_artifacts import border_weight, border_widths, is_motion_residue, motion_correlation
from .kernels.select import accept
from .kernels.snr import trace_snr
from .kernels.spatial import footprint_window, r_values, window_background, window_sums
from .kernels.spread import footprint_spread

__all__ = ["evaluate_components", "footprints_matrix", "lazy_dff", "compute_dff", "N_PEAKS"]

N_PEAKS = 10  # active peaks per unit for r_value (CaImAn's automatic evaluation)


def footprints_matrix(footprints: Any, units_per_read: int = 64) -> sp.csc_matrix:
    """(K, H, W) footprints -> (H*W, K) csc, pixel index ``y * W + x`` (C order).

    ``footprints`` may be numpy, dask or xarray (e.g. the results store's array): it is read
    ``units_per_read`` units at a time in this process, so no process ever holds all the
    dense footprints (K x 1 MB at 512x512).
    """
    K, H, W = footprints.shape
    data = getattr(footprints, "data", footprints)
    parts = []
    with dask.config.set(scheduler="threads"):  # read here, not gathered through a worker
        for lo in range(0, K, units_per_read):
            block = np.asarray(data[lo:lo + units_per_read], np.float32)
            parts.append(sp.csc_matrix(block.reshape(len(block), H * W).T))
    return sp.hstack(parts, format="csc") if parts else sp.csc_matrix((H * W, 0), dtype=np.float32)


@dataclass
class UnitMetrics:
    """What a unit task measures on its units' whole traces."""

    snr: np.ndarray
    motion_corr: np.ndarray
    background_corr: np.ndarray
    peaks: list[np.ndarray]


def _unit_metrics(C: np.ndarray, YrA: np.ndarray, f: np.ndarray, shifts: np.ndarray | None, fr: float,
                  decay_time: float) -> UnitMetrics:
    C = np.asarray(C, np.float64)
    raw = C + np.asarray(YrA, np.float64)
    snr = trace_snr(C, YrA, fr=fr, decay_time=decay_time)
    mcorr = motion_correlation(raw, shifts) if shifts is not None else np.full(len(C), np.nan)
    return UnitMetrics(snr, mcorr, background_correlation(C, f), peak_frames(C, n_max=N_PEAKS))


def _r_value_span(source: FrameSource, span: tuple[int, int], weights: sp.csr_matrix, f: np.ndarray,
                  windows: Any) -> tuple[np.ndarray, np.ndarray]:
    """Weighted frames of one span on each footprint's window, and ``weights @ f.T``
    (``weights`` and ``f``: the span's columns)."""
    W = weights
    vals = np.zeros(windows.pixels.size)
    for t0, Y in iter_blocks(source, *span):
        vals += window_sums(Y, W[:, t0 - span[0]:t0 - span[0] + len(Y)], windows)
    return vals, np.asarray(W @ np.asarray(f, np.float64).T)


def _sum_pairs(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def _spans(T: int, step: int) -> list[tuple[int, int]]:
    return TraceLayout.for_movie(T, step).frame_spans()


def spatial_correlation(movie: xr.DataArray, A: sp.csc_matrix, peaks: list[np.ndarray], b: np.ndarray,
                        f: da.Array, fr: float) -> np.ndarray:
    """r_value of each component: one pass of frame tasks over the movie."""
    dims = tuple(movie.shape[1:])
    T = movie.shape[0]
    tB, tA = peak_window(fr)
    weights = active_weights(peaks, A, T, tB=tB, tA=tA)
    windows = footprint_window(A, dims)
    source = frame_source(movie)
    win = dask.delayed(windows, pure=True)
    parts = [dask.delayed(_r_value_span, pure=True)(source.restrict(*s), s, weights[:, s[0]:s[1]].tocsr(),
                                                    f[:, s[0]:s[1]], win)
             for s in _spans(T, source.t_chunk)]
    vals, fw = compute([], label="evaluation: spatial correlation", sums=[(parts, _sum_pairs)])[0]
    background = window_background(b, fw, windows) if b.shape[1] else None
    return r_values(A, vals, windows, background=background)


def _lazy(ds: xr.Dataset, name: str) -> da.Array:
    """A (unit, frame) variable as dask, whether the Dataset is lazy or in memory."""
    data = ds[name].data
    return data if isinstance(data, da.Array) else da.from_array(np.asarray(data), chunks=(UNIT_CHUNK, -1))


def _unit_pass(ds: xr.Dataset, shifts: np.ndarray | None, fr: float, decay_time: float) -> UnitMetrics:
    C, YrA, f = _lazy(ds, "traces"), _lazy(ds, "residuals"), _lazy(ds, "background_traces")
    shifts_ = dask.delayed(shifts, pure=True) if shifts is not None else None
    f_ = f.rechunk(-1).to_delayed().ravel()[0] if f.shape[0] else np.zeros((0, C.shape[1]))
    tasks = [dask.delayed(_unit_metrics, pure=True)(C[u0:u1], YrA[u0:u1], f_, shifts_, fr, decay_time)
             for u0, u1 in unit_spans(C.shape[0], UNIT_CHUNK)]
    parts = compute(tasks, label="evaluation: traces")
    return UnitMetrics(np.concatenate([p.snr for p in parts]), np.concatenate([p.motion_corr for p in parts]),
                       np.concatenate([p.background_corr for p in parts]), [pk for p in parts for pk in p.peaks])


def _motion_inputs(A: sp.csc_matrix, dims: tuple[int, int], T: int, motion: xr.Dataset | None
                   ) -> tuple[np.ndarray | None, np.ndarray]:
    """The shifts the motion test correlates traces with (None without a usable ``motion``:
    then ``motion_corr`` and ``border_weight`` are NaN), and each unit's border weight.

    The border is as wide as the largest shift of any patch (piecewise mode) or frame."""
    nan = np.full(A.shape[1], np.nan)
    if motion is None or "shifts" not in motion or motion.sizes.get("frame") != T:
        return None, nan  # e.g. CNMF run on another movie than the one corrected here
    with dask.config.set(scheduler="threads"):
        shifts = np.asarray(motion["shifts"].values, np.float64)
        name = "patch_shifts" if "patch_shifts" in motion else "shifts"
        extremes = np.stack([motion[name].max(dim="frame").values, motion[name].min(dim="frame").values])
    return shifts, border_weight(A, dims, border_widths(extremes.reshape(-1, 2)))


def evaluate_components(movie: xr.DataArray, ds: xr.Dataset, params: Params,
                        motion: xr.Dataset | None = None) -> xr.Dataset:
    """snr, r_value, cnn_pred, motion_corr, border_weight, background_corr, spread,
    accepted, duplicate_of and dff of the units in ``ds`` (the results' root group).

    A unit is accepted by CaImAn's thresholds, then rejected if it is a residue of motion
    correction's border fill, background CNMF took for a source
    (:mod:`~calcium_dask.evaluation.kernels.background_residue`), out-of-focus light wider
    than a neuron (``max_spread``, :mod:`~calcium_dask.evaluation.kernels.spread`) or a
    duplicate of a stronger unit. With ``method_init='corr_pnr'`` (CNMF-E) dF/F takes no
    background (the ring model's baseline is out-of-focus light, not the neurons').

    Parameters
    ----------
    movie : xarray.DataArray
        The motion-corrected movie the units were extracted from.
    ds : xarray.Dataset
        footprints, traces, residuals, background_footprints, background_traces (lazy).
    params : Params
        ``quality`` thresholds, ``data.fr``/``decay_time``, ``init.gSig``, ``dff``.
    motion : xarray.Dataset, optional
        The ``/motion`` group of the correction the movie went through (``shifts``, and
        ``patch_shifts`` in piecewise mode): without it ``motion_corr`` and
        ``border_weight`` are NaN and no unit is rejected as a residue of the correction.

    Returns
    -------
    xarray.Dataset
        Per-unit metrics (in memory) and ``dff`` (lazy).
    """
    movie = movie.assign_attrs(check_nan=params.preprocess.check_nan)  # what the readers fill
    K, H, W = ds["footprints"].shape
    T = int(ds.sizes["frame"])
    A = footprints_matrix(ds["footprints"])
    bfp = np.asarray(ds["background_footprints"].values, np.float32)
    b = bfp.reshape(len(bfp), H * W).T
    fr = float(movie.attrs.get("fr") or params.data.fr)
    q = params.quality
    if K:
        shifts, border = _motion_inputs(A, (H, W), T, motion)
        um = _unit_pass(ds, shifts, fr, params.data.decay_time)
        rval = spatial_correlation(movie, A, um.peaks, b, _lazy(ds, "background_traces"), fr)
        cnn = classify(A, (H, W), gSig=params.init.gSig)
        ok = accept(um.snr, rval, cnn, min_SNR=q.min_SNR, rval_thr=q.rval_thr, min_cnn_thr=q.min_cnn_thr,
                    SNR_lowest=q.SNR_lowest, rval_lowest=q.rval_lowest, cnn_lowest=q.cnn_lowest,
                    use_cnn=q.use_cnn)
        if q.max_motion_corr is not None:
            ok &= ~is_motion_residue(um.motion_corr, border, q.max_motion_corr)
        if q.max_background_corr is not None:
            ok &= ~((um.background_corr >= q.max_background_corr) & ~(um.snr > q.min_SNR))
        spread = footprint_spread(A, (H, W))
        if q.max_spread is not None:
            ok &= ~(spread > q.max_spread * float(np.mean(params.init.gSig)))  # NaN (empty) compares False
        dup = _duplicates(A, _lazy(ds, "traces"), um.snr, ok, params)
        ok &= dup < 0
        snr, mcorr, bcorr = um.snr, um.motion_corr, um.background_corr
    else:
        snr = rval = cnn = mcorr = border = bcorr = spread = np.zeros(0)
        ok = np.zeros(0, bool)
        dup = np.zeros(0, np.int64)
    dff = compute_dff(ds, A, params)
    unit: Any = ("unit",)
    units = np.asarray(ds["unit"].values)
    f32 = np.float32
    return xr.Dataset({"snr": (unit, snr.astype(f32)), "r_value": (unit, rval.astype(f32)),
                       "cnn_pred": (unit, cnn.astype(f32)), "motion_corr": (unit, mcorr.astype(f32)),
                       "border_weight": (unit, border.astype(f32)), "background_corr": (unit, bcorr.astype(f32)),
                       "spread": (unit, spread.astype(f32)),
                       "accepted": (unit, ok.astype(bool)),
                       "duplicate_of": (unit, np.where(dup >= 0, units[np.maximum(dup, 0)], -1)),
                       "dff": (("unit", "frame"), dff)},
                      coords={"unit": units})


def _duplicates(A: sp.csc_matrix, C: da.Array, snr: np.ndarray, ok: np.ndarray, params: Params) -> np.ndarray:
    q = params.quality
    cands = duplicate_candidates(A, snr, ok, thresh_subset=q.thresh_subset)
    if not len(cands.pairs):
        return np.full(A.shape[1], -1, np.int64)
    corr = pair_correlations(C, cands.pairs, _spans(C.shape[1], C.chunks[1][0]),
                             label="evaluation: duplicates")
    return resolve_duplicates(A.shape[1], cands, corr, corr_thr=q.dup_corr_thr)


def _dff_block(A: sp.csc_matrix, b: np.ndarray | None, C: np.ndarray, f: np.ndarray | None, YrA: np.ndarray | None,
               opts: dict[str, Any]) -> np.ndarray:
    return detrend_df_f(A, b, C, f, YrA, **opts).astype(np.float32)


def lazy_dff(ds: xr.Dataset, A: sp.csc_matrix, *, quantileMin: float = 8.0, frames_window: int | None = 500,
             flag_auto: bool = True, use_fast: bool = False, use_residuals: bool = True,
             detrend_only: bool = False, use_background: bool = True) -> da.Array:
    """dF/F of every unit (CaImAn's ``detrend_df_f``) as a lazy (unit, frame) array: one
    task per block of units, each over the units' whole traces (``use_background=False``:
    no background light in the baseline, as for CNMF-E's ring model)."""
    C = _lazy(ds, "traces")
    K, T = C.shape
    YrA = _lazy(ds, "residuals") if use_residuals and "residuals" in ds else None
    bfp = ds["background_footprints"].values if "background_footprints" in ds else np.zeros((0,))
    has_bg = use_background and bfp.ndim == 3 and len(bfp) > 0
    b = bfp.reshape(len(bfp), -1).T if has_bg else None
    f = _lazy(ds, "background_traces").rechunk(-1).to_delayed().ravel()[0] if has_bg else None
    opts = dict(quantileMin=quantileMin, frames_window=frames_window, flag_auto=flag_auto, use_fast=use_fast,
                detrend_only=detrend_only or not use_background)  # no background: detrended (said, not warned)
    b_ = dask.delayed(b, pure=True) if b is not None else None
    blocks = [da.from_delayed(dask.delayed(_dff_block, pure=True)(
        A[:, u0:u1], b_, C[u0:u1], f, None if YrA is None else YrA[u0:u1], opts), (u1 - u0, T), dtype=np.float32)
        for u0, u1 in unit_spans(K, UNIT_CHUNK)]
    return da.concatenate(blocks, axis=0) if blocks else da.zeros((0, T), dtype=np.float32)


def compute_dff(ds: xr.Dataset, A: sp.csc_matrix, params: Params) -> da.Array:
    """dF/F with ``params.dff`` (CaImAn's ``detrend_df_f``), lazy."""
    dp = params.dff
    return lazy_dff(ds, A, quantileMin=dp.quantileMin, frames_window=dp.frames_window, flag_auto=dp.flag_auto,
                    use_residuals=dp.use_residuals, detrend_only=dp.detrend_only,
                    use_background=params.init.method_init != "corr_pnr")
