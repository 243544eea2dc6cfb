"""Component evaluation and dF/F over a movie that is never held in memory.

The trace SNR, the shape classifier and dF/F work on the small CNMF results; the spatial
correlation ``r_value`` needs the movie on each component's active frames, which is one
reduction over time chunks (each chunk adds its weighted frames on each footprint's pixels).
"""

from __future__ import annotations

from typing import Any

import dask
import numpy as np
import scipy.sparse as sp
import xarray as xr

from ..movie_blocks import time_blocks
from ..params import Params
from ..compute import compute
from .kernels.background_residue import background_correlation
from .kernels.classifier import classify
from .kernels.dff import detrend_df_f
from .kernels.duplicates import find_duplicates
from .kernels.motion_artifacts import border_weight, border_widths, is_motion_residue, motion_correlation
from .kernels.select import accept
from .kernels.snr import trace_snr
from .kernels.spatial import (active_frames, background_window_means, footprint_window, peak_window, r_values,
                      window_sums)

__all__ = ["evaluate_components", "footprints_matrix", "compute_dff", "motion_residue"]


def footprints_matrix(footprints: Any, units_per_read: int = 64) -> sp.csc_matrix:
    """(K, H, W) footprints -> (H*W, K) csc, pixel index ``y * W + x``.

    ``footprints`` may be numpy, dask or xarray (e.g. the results store's dense array): it
    is read ``units_per_read`` units at a time in this process, so neither this process nor
    a worker ever holds all the dense footprints (K x 1 MB at 512x512).
    """
    K, H, W = footprints.shape
    data = getattr(footprints, "data", footprints)
    parts = []
    with dask.config.set(scheduler="threads"):
        for lo in range(0, K, units_per_read):
            block = np.asarray(data[lo:lo + units_per_read], np.float32)
            parts.append(sp.csc_matrix(block.reshape(len(block), H * W).T))
    return sp.hstack(parts, format="csc") if parts else sp.csc_matrix((H * W, 0), dtype=np.float32)


def _sum(records: list[np.ndarray]) -> np.ndarray:
    return np.sum(records, axis=0)


def spatial_correlation(movie: xr.DataArray, A: sp.csc_matrix, C: np.ndarray, b: np.ndarray,
                        f: np.ndarray, fr: float) -> np.ndarray:
    """r_value of each component: one pass over the movie's time chunks."""
    dims = tuple(movie.shape[1:])
    tB, tA = peak_window(fr)
    weights = sp.csr_matrix(active_frames(C, A=A, n_max=10, tB=tB, tA=tA))
    windows = footprint_window(A, dims)
    blocks = time_blocks(movie)
    ends = [t0 for t0, _ in blocks[1:]] + [movie.shape[0]]
    win = dask.delayed(windows, pure=True)
    parts = [dask.delayed(window_sums, pure=True)(blk, weights[:, t0:t1], win)
             for (t0, blk), t1 in zip(blocks, ends)]
    total = compute([], label="evaluation: spatial correlation", sums=[(parts, _sum)])[0]
    background = background_window_means(b, f, weights, windows) if b.shape[1] else None
    return r_values(A, total, windows, background=background)


def compute_dff(A: sp.csc_matrix, b: np.ndarray, C: np.ndarray, f: np.ndarray, YrA: np.ndarray,
                params: Params) -> np.ndarray:
    """dF/F with ``params.dff`` (CaImAn's ``detrend_df_f``)."""
    dp = params.dff
    return detrend_df_f(A, b, C, f, YrA if dp.use_residuals else None, quantileMin=dp.quantileMin,
                        frames_window=dp.frames_window, flag_auto=dp.flag_auto, detrend_only=dp.detrend_only)


def motion_residue(A: sp.csc_matrix, traces: np.ndarray, dims: tuple[int, int],
                   motion: xr.Dataset | None) -> tuple[np.ndarray, np.ndarray]:
    """``motion_corr`` and ``border_weight`` of each unit (NaN without a usable ``motion``).

    The border is as wide as the largest shift of any patch (piecewise mode) or frame."""
    K, T = traces.shape
    nan = np.full(K, np.nan)
    if motion is None or "shifts" not in motion:
        return nan, nan
    with dask.config.set(scheduler="threads"):
        shifts = np.asarray(motion["shifts"].values, np.float64)
        extremes = np.asarray(motion["patch_shifts"].values) if "patch_shifts" in motion else shifts
    if shifts.shape != (T, 2):  # e.g. CNMF run on another movie than the one corrected here
        return nan, nan
    return motion_correlation(traces, shifts), border_weight(A, dims, border_widths(extremes))


def evaluate_components(movie: xr.DataArray, ds: xr.Dataset, params: Params,
                        motion: xr.Dataset | None = None) -> xr.Dataset:
    """snr, r_value, cnn_pred, motion_corr, border_weight, background_corr, accepted,
    duplicate_of and dff of the units in ``ds`` (the results' root group).

    A unit is accepted by CaImAn's thresholds, then rejected if it is a residue of motion
    correction's border fill, background CNMF took for a source
    (:mod:`~calcium_dask.evaluate.kernels.background_residue`) or a duplicate of a stronger unit.

    Parameters
    ----------
    movie : xarray.DataArray
        The motion-corrected movie the units were extracted from.
    ds : xarray.Dataset
        footprints, traces, residuals, background_footprints, background_traces.
    params : Params
        ``quality`` thresholds, ``data.fr``/``decay_time``, ``init.gSig``, ``dff``.
    motion : xarray.Dataset, optional
        The ``/motion`` group of the correction the movie went through (``shifts``, and
        ``patch_shifts`` in piecewise mode): without it ``motion_corr`` and
        ``border_weight`` are NaN and no unit is rejected as a residue of the correction.
    """
    movie = movie.assign_attrs(check_nan=params.preprocess.check_nan)  # what the readers fill
    K, H, W = ds["footprints"].shape
    A = footprints_matrix(ds["footprints"])
    with dask.config.set(scheduler="threads"):  # read here from the store, not through a worker
        C = np.asarray(ds["traces"].values, np.float64)
        YrA = np.asarray(ds["residuals"].values, np.float64)
        bfp = np.asarray(ds["background_footprints"].values, np.float32)
        f = np.asarray(ds["background_traces"].values, np.float64)
    b = bfp.reshape(len(bfp), H * W).T
    fr = float(movie.attrs.get("fr") or params.data.fr)
    q = params.quality
    if K:
        snr = trace_snr(C, YrA, fr=fr, decay_time=params.data.decay_time)
        rval = spatial_correlation(movie, A, C, b, f, fr)
        cnn = classify(A, (H, W), gSig=params.init.gSig)
        ok = accept(snr, rval, cnn, min_SNR=q.min_SNR, rval_thr=q.rval_thr, min_cnn_thr=q.min_cnn_thr,
                    SNR_lowest=q.SNR_lowest, rval_lowest=q.rval_lowest, cnn_lowest=q.cnn_lowest,
                    use_cnn=q.use_cnn)
        mcorr, border = motion_residue(A, C + YrA, (H, W), motion)
        if q.max_motion_corr is not None:
            ok &= ~is_motion_residue(mcorr, border, q.max_motion_corr)
        bcorr = background_correlation(C, f)
        if q.max_background_corr is not None:
            ok &= ~((bcorr >= q.max_background_corr) & ~(snr > q.min_SNR))
        dup = find_duplicates(A, C, snr, ok, thresh_subset=q.thresh_subset, corr_thr=q.dup_corr_thr)
        ok &= dup < 0
        dff = compute_dff(A, b, C, f, YrA, params)
    else:
        snr = rval = cnn = mcorr = border = bcorr = np.zeros(0)
        ok = np.zeros(0, bool)
        dup = np.zeros(0, np.int64)
        dff = np.zeros((0, C.shape[1]))
    unit: Any = ("unit",)
    units = np.asarray(ds["unit"].values)
    return xr.Dataset({"snr": (unit, snr.astype(np.float32)), "r_value": (unit, rval.astype(np.float32)),
                       "cnn_pred": (unit, cnn.astype(np.float32)),
                       "motion_corr": (unit, mcorr.astype(np.float32)), "border_weight": (unit, border.astype(np.float32)),
                       "background_corr": (unit, bcorr.astype(np.float32)),
                       "accepted": (unit, ok.astype(bool)),
                       "duplicate_of": (unit, np.where(dup >= 0, units[np.maximum(dup, 0)], -1)),
                       "dff": (("unit", "frame"), dff.astype(np.float32))},
                      coords={"unit": units})
