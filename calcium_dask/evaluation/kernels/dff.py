"""dF/F of the components without the movie (CaImAn's ``detrend_df_f``)."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from ._baseline import binned_percentile, row_percentile, running_percentile
from ._mode import kde_mode_percentile

__all__ = ["detrend_df_f"]


def _scaled_traces(A: sp.spmatrix, b: np.ndarray | None, C: np.ndarray, f: np.ndarray | None,
                   YrA: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Traces in units of unit-norm footprints: ``F = |a_k| (C + YrA)`` and the background
    seen through each normalised footprint ``B = (a_k / |a_k|)^T b f``; ``(F, B, ok)``."""
    A = sp.csc_matrix(A, dtype=np.float64)
    C = np.atleast_2d(np.asarray(C, np.float64))
    if A.shape[1] != C.shape[0]:
        raise ValueError(f"A has {A.shape[1]} components but C has {C.shape[0]} traces")
    nA = np.sqrt(np.asarray(A.multiply(A).sum(axis=0)).ravel())
    ok = nA > 0
    inv = np.where(ok, 1.0 / np.where(ok, nA, 1.0), 0.0)
    F = C if YrA is None else C + np.asarray(YrA, np.float64)
    F = nA[:, None] * F
    if b is None or f is None:
        B = np.zeros_like(F)
    else:
        Ab = np.asarray(A.T @ np.asarray(b, np.float64)) * inv[:, None]  # (K, nb)
        B = Ab @ np.atleast_2d(np.asarray(f, np.float64))
    return F, B, ok


def _baselines(F: np.ndarray, B: np.ndarray, q: np.ndarray, *, frames_window: int | None,
               use_fast: bool) -> tuple[np.ndarray, np.ndarray]:
    """Percentile baselines ``(Fd, Df)`` of the traces and of the background, (K, T) each."""
    T = F.shape[1]
    if frames_window is None or frames_window > T:
        Fd, Df = row_percentile(F, q), row_percentile(B, q)
        return np.repeat(Fd[:, None], T, 1), np.repeat(Df[:, None], T, 1)
    if use_fast:
        return (binned_percentile(F, q, bin_len=frames_window, zoom_mode="nearest"),
                binned_percentile(B, q, bin_len=frames_window, zoom_mode="nearest"))
    return (running_percentile(F, q, window=frames_window),
            running_percentile(B, q, window=frames_window))


def detrend_df_f(A: sp.spmatrix, b: np.ndarray | None, C: np.ndarray, f: np.ndarray | None,
                 YrA: np.ndarray | None = None, *, quantileMin: float = 8.0,
                 frames_window: int | None = 500, flag_auto: bool = True,
                 use_fast: bool = False, detrend_only: bool = False) -> np.ndarray:
    """dF/F of each component, computed from the model alone.

    With unit-norm footprints, a component's trace is ``F = |a_k| (C_k + YrA_k)`` and the
    background under it is ``B = a_k^T b f / |a_k|``. The baselines ``Fd`` and ``Df`` are
    running percentiles of ``F`` and ``B`` over ``frames_window`` frames, and

    ``F_dff = (F - Fd) / (Fd + Df)``   (or ``F - Fd`` with ``detrend_only``).

    Parameters
    ----------
    A : sparse (N, K)
        Footprints.
    b : ndarray (N, nb) or None
        Background footprints; None (or ``f`` None) forces ``detrend_only``.
    C : ndarray (K, T)
        Denoised traces.
    f : ndarray (nb, T) or None
        Background traces.
    YrA : ndarray (K, T), optional
        Residuals: given, the raw trace ``C + YrA`` is used.
    quantileMin : float
        Baseline percentile when ``flag_auto`` is False.
    frames_window : int or None
        Window of the running percentile, frames; None or longer than the movie: one
        percentile over the whole trace.
    flag_auto : bool
        Choose each trace's percentile as the one at which the mode of its values over
        the first ``frames_window`` frames lies (a diffusion kernel density estimate):
        for a trace that rests at baseline most of the time, the baseline.
    use_fast : bool
        Approximate the running percentile by percentiles of consecutive blocks of
        ``frames_window`` frames joined by a cubic spline.
    detrend_only : bool
        Subtract the baseline without dividing (one-photon data, whose background
        does not tell the baseline fluorescence).

    Returns
    -------
    F_dff : ndarray (K, T) float64
        Rows of empty footprints are 0.

    Notes
    -----
    Near the ends the running window is mirrored. Where CaImAn's code departs from its
    own description these semantics follow the description: with ``use_fast`` the
    baseline (not the detrended trace) enters the formula, and with ``flag_auto`` False
    the running percentile runs along time.

    References
    ----------
    Giovannucci et al. 2019, CaImAn an open source tool for scalable calcium imaging
    data analysis, eLife 8:e38173, doi:10.7554/eLife.38173.
    """
    if b is None or f is None:
        if not detrend_only:
            warnings.warn("no background components: the result is only detrended, "
                          "not divided by a baseline (detrend_only=True)", stacklevel=2)
        detrend_only = True
    F, B, ok = _scaled_traces(A, b, C, f, YrA)
    K, T = F.shape
    if K == 0 or T == 0:
        return np.zeros((K, T))
    if frames_window is not None and int(frames_window) < 1:
        raise ValueError(f"frames_window must be >= 1 or None, got {frames_window}")
    window = None if frames_window is None else int(frames_window)
    if flag_auto:
        q = kde_mode_percentile(F[:, : (window or T)])[0]
    else:
        q = np.full(K, float(quantileMin))
    Fd, Df = _baselines(F, B, q, frames_window=window, use_fast=use_fast)
    if detrend_only:
        out = F - Fd
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = (F - Fd) / (Fd + Df)
    out[~ok] = 0.0
    return out
