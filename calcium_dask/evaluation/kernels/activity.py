"""Frames at which each component is significantly active, excluding those shared with
overlapping components (CaImAn's ``find_activity_intervals`` and the overlap rule of
``classify_components_ep``)."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy import signal

__all__ = ["active_frames", "active_weights", "peak_frames", "peak_window"]


def peak_window(fr: float) -> tuple[int, int]:
    """Frames kept around each peak, ``(tB, tA)``: ``range(peak + tB, peak + tA)``.

    About 1/6 s before and 5/6 s after the peak, at least 2 before and 5 after
    (CaImAn's ``evaluate_components``).
    """
    tB = min(-2, math.floor(-5.0 / 30 * fr))
    tA = max(5, math.ceil(25.0 / 30 * fr))
    return int(tB), int(tA)


def _peak_frames(trace: np.ndarray, *, n_max: int, thresh: float) -> np.ndarray:
    """The ``n_max`` highest local maxima above ``min + thresh * (max - min)``."""
    lo, hi = float(trace.min()), float(trace.max())
    if not hi > lo:
        return np.zeros(0, np.int64)
    peaks, _ = signal.find_peaks(trace, height=lo + thresh * (hi - lo))
    order = np.argsort(-trace[peaks], kind="stable")[:n_max]
    return peaks[order].astype(np.int64)


def _overlaps(A: sp.spmatrix, Athresh: float) -> sp.csr_matrix:
    """Boolean (K, K) graph of pairs whose normalised footprint overlap exceeds Athresh."""
    A = sp.csc_matrix(A, dtype=np.float64)
    norms = np.sqrt(np.asarray(A.multiply(A).sum(axis=0)).ravel())
    An = A @ sp.diags(1.0 / np.where(norms > 0, norms, 1.0))
    AA = (An.T @ An).tocsr()
    AA.setdiag(0)
    AA.eliminate_zeros()
    return (AA > Athresh).astype(np.float64).tocsr()


def peak_frames(traces: np.ndarray, *, n_max: int = 5, thresh: float = 0.3) -> list[np.ndarray]:
    """The ``n_max`` highest peaks of each trace above ``min + thresh * (max - min)``.

    Parameters
    ----------
    traces : ndarray (K, T)

    Returns
    -------
    list of K int64 arrays (frames, highest peak first)
    """
    return [_peak_frames(np.asarray(tr, np.float64), n_max=n_max, thresh=thresh) for tr in np.atleast_2d(traces)]


def active_weights(peaks: list[np.ndarray], A: sp.spmatrix, n_frames: int, *, tB: int = -3, tA: int = 10,
                   Athresh: float = 0.1) -> sp.csr_matrix:
    """Averaging weights of the frames around each component's ``peaks`` (see
    :func:`active_frames`), frames at which an overlapping component is also active removed
    unless that leaves none. Needs the peaks only, not the traces."""
    K, T = len(peaks), int(n_frames)
    if A.shape[1] != K:
        raise ValueError(f"A has {A.shape[1]} components but there are {K} lists of peaks")
    offsets = np.arange(int(tB), int(tA))
    rows, cols = [], []
    for k, pk in enumerate(peaks):
        frames = np.unique(np.clip(np.asarray(pk, np.int64)[:, None] + offsets[None, :], 0, T - 1))
        rows.append(np.full(frames.size, k))
        cols.append(frames)
    rows_a = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    cols_a = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    M = sp.csr_matrix((np.ones(rows_a.size), (rows_a, cols_a)), shape=(K, T))
    busy = (_overlaps(A, Athresh) @ M) > 0  # a neighbour is active
    own = M - M.multiply(busy)
    own.eliminate_zeros()
    alone = np.diff(own.indptr) == 0
    keep = sp.diags(alone.astype(np.float64)) @ M + sp.diags((~alone).astype(np.float64)) @ own
    keep = sp.csr_matrix(keep)
    keep.eliminate_zeros()
    n = np.diff(keep.indptr)
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(n, 1)) @ keep)


def active_frames(C: np.ndarray, YrA: np.ndarray | None = None, *, A: sp.spmatrix,
                  n_max: int = 5, tB: int = -3, tA: int = 10, thresh: float = 0.3,
                  Athresh: float = 0.1) -> sp.csr_matrix:
    """Frames at which each component is significantly active, as averaging weights.

    For each component, the ``n_max`` highest peaks of its trace above ``min + thresh *
    (max - min)`` are found and the frames ``peak + tB ... peak + tA - 1`` (clipped to the
    movie) kept; frames at which a component overlapping it (normalised footprint
    overlap ``> Athresh``) is also active are removed, unless that leaves none.

    Parameters
    ----------
    C : ndarray (K, T)
        Denoised traces (CaImAn finds the peaks on these).
    YrA : ndarray (K, T), optional
        Residuals: given, the peaks are found on the raw trace ``C + YrA``.
    A : sparse (N, K)
        Footprints (for the overlaps).
    n_max : int
        Peaks per component (CaImAn's ``Npeaks``; its automatic evaluation uses 10).
    tB, tA : int
        Frames before (negative) and after each peak, see :func:`peak_window`.
    thresh : float
        Minimum peak height as a fraction of the trace's range (``thresh_C``).
    Athresh : float
        Overlap above which a neighbour's activity is excluded.

    Returns
    -------
    weights : csr_matrix (K, T) float64
        ``1 / n_k`` on the ``n_k`` active frames of component ``k``, so that a product
        with the movie gives the mean active frame; empty rows for components without
        activity (a constant trace). ``weights > 0`` is the boolean activity matrix.
    """
    traces = np.asarray(C, np.float64)
    if YrA is not None:
        traces = traces + np.asarray(YrA, np.float64)
    if A.shape[1] != traces.shape[0]:
        raise ValueError(f"A has {A.shape[1]} components but C has {traces.shape[0]}")
    peaks = peak_frames(traces, n_max=n_max, thresh=thresh)
    return active_weights(peaks, A, traces.shape[1], tB=tB, tA=tA, Athresh=Athresh)
