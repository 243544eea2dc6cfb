"""Components made by motion correction rather than by cells.

Where a frame was shifted, the pixels along the edges it was shifted away from had no data
and were filled (``border_nan``: copied edge, zero or NaN). The filled values change with
the shift, so CNMF can find a "component" in that border whose trace follows the frame's
displacement. A neuron's activity does not follow it closely (on the simulated movies,
accepted true units correlate with the displacement at ``|r| <= 0.51``, these residues at
0.57-0.94), and a neuron rarely lies mostly in the border; a unit needs both to be called
a residue. Neurons driven by locomotion can follow the displacement too (the animal runs,
the brain moves), which is why the border is required: only a cell cut by the frame's edge,
whose visible part comes and goes with the motion, risks being taken for a residue.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ._stats import zscore

__all__ = ["motion_correlation", "border_weight", "border_widths", "is_motion_residue", "MOSTLY_IN_BORDER"]

#: The border rule: a unit lies mostly in the filled border when at least this fraction of
#: its footprint's weight is there (:func:`border_weight`). A constant, not a parameter: a
#: cell cut by the frame's edge reaches it only when most of it is outside the frame.
MOSTLY_IN_BORDER = 0.5


def motion_correlation(traces: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Largest absolute Pearson correlation of each trace with the frame's displacement.

    The displacement is described by the shift along y and along x and by the distance of
    each from its median (a trace may follow the size of a movement, not its direction).

    Parameters
    ----------
    traces : ndarray (K, T)
        Raw traces (``C + YrA``).
    shifts : ndarray (T, 2)
        Shift applied to each frame, (y, x).

    Returns
    -------
    ndarray (K,) float64 in [0, 1]; 0 for a constant trace or a still movie.
    """
    X = np.atleast_2d(np.asarray(traces, np.float64))
    s = np.asarray(shifts, np.float64)
    if s.ndim != 2 or s.shape[1] != 2 or len(s) != X.shape[1]:
        raise ValueError(f"shifts must be ({X.shape[1]}, 2) for traces of {X.shape[1]} frames, got {s.shape}")
    feats = np.column_stack([s, np.abs(s - np.median(s, axis=0))])
    r = zscore(X, 1) @ zscore(feats, 0) / X.shape[1]
    return np.abs(r).max(axis=1) if len(X) else np.zeros(0)


def border_widths(shifts: np.ndarray) -> tuple[int, int, int, int]:
    """Rows/columns filled in some frame along each edge, (top, bottom, left, right).

    A frame shifted by ``+dy`` (content moved down, CaImAn's convention for applied
    shifts) has no data in its top ``dy`` rows, and so on.
    """
    s = np.asarray(shifts, np.float64).reshape(-1, 2)
    if not len(s):
        return 0, 0, 0, 0
    hi, lo = np.nanmax(s, axis=0), np.nanmin(s, axis=0)
    return (math.ceil(max(0.0, hi[0])), math.ceil(max(0.0, -lo[0])),
            math.ceil(max(0.0, hi[1])), math.ceil(max(0.0, -lo[1])))


def border_weight(A: sp.spmatrix, dims: tuple[int, int], widths: tuple[int, int, int, int]) -> np.ndarray:
    """Fraction of each footprint's weight in the filled border (see :func:`border_widths`).

    Parameters
    ----------
    A : sparse (H * W, K)
        Footprints, pixel index ``y * W + x``.
    dims : (H, W)
    widths : (top, bottom, left, right)

    Returns
    -------
    ndarray (K,) float64; 0 for an empty footprint.
    """
    H, W = dims
    top, bottom, left, right = widths
    yy, xx = np.divmod(np.arange(H * W), W)
    band = (yy < top) | (yy >= H - bottom) | (xx < left) | (xx >= W - right)
    A = sp.csc_matrix(A, dtype=np.float64)
    total = np.asarray(A.sum(axis=0)).ravel()
    inside = np.asarray(A[band].sum(axis=0)).ravel() if band.any() else np.zeros(A.shape[1])
    return np.where(total > 0, inside / np.where(total > 0, total, 1.0), 0.0)


def is_motion_residue(motion_corr: np.ndarray, border: np.ndarray, max_motion_corr: float) -> np.ndarray:
    """Units taken for a residue of the border fill: a raw trace that follows the frame's
    displacement (``motion_corr >= max_motion_corr``) and a footprint mostly in the filled
    border (``border >= MOSTLY_IN_BORDER``); NaN metrics are no residue.

    Parameters
    ----------
    motion_corr, border : ndarray (K,)
        :func:`motion_correlation` and :func:`border_weight` of each unit.
    max_motion_corr : float
        ``quality.max_motion_corr``.

    Returns
    -------
    ndarray (K,) bool
    """
    with np.errstate(invalid="ignore"):
        return (np.asarray(motion_corr) >= max_motion_corr) & (np.asarray(border) >= MOSTLY_IN_BORDER)
