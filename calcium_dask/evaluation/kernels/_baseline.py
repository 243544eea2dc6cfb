"""Baselines of traces: percentiles per row, running and block-wise (fast) percentiles."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage

__all__ = ["binned_percentile", "row_percentile", "running_percentile"]


def row_percentile(x: np.ndarray, q: float | np.ndarray) -> np.ndarray:
    """Percentile ``q[k]`` (0-100, linear interpolation) of each row ``x[k]`` along the last axis.

    Parameters
    ----------
    x : ndarray (K, ..., n)
    q : float or ndarray (K,)

    Returns
    -------
    ndarray (K, ...)
    """
    s = np.sort(np.asarray(x, np.float64), axis=-1)
    n = s.shape[-1]
    q = np.broadcast_to(np.asarray(q, np.float64), (s.shape[0],))
    pos = np.clip(q, 0, 100) / 100 * (n - 1)
    pos = pos.reshape((-1,) + (1,) * (s.ndim - 1))
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    shape = s.shape[:-1] + (1,)
    vlo = np.take_along_axis(s, np.broadcast_to(lo, shape), axis=-1)[..., 0]
    vhi = np.take_along_axis(s, np.broadcast_to(hi, shape), axis=-1)[..., 0]
    w = (pos - lo)[..., 0]
    return vlo + w * (vhi - vlo)


def binned_percentile(x: np.ndarray, q: float | np.ndarray, *, bin_len: int,
                      zoom_mode: Literal["nearest", "constant"] = "nearest") -> np.ndarray:
    """Fast approximate running percentile: percentiles of blocks, spline-interpolated.

    The trace is mirrored at both ends up to a multiple of ``bin_len`` frames (half of the
    padding at each end), cut into consecutive blocks of ``bin_len`` frames, the ``q``-th
    percentile of each block is taken and the block values are upsampled back to one per
    frame with a cubic spline (:func:`scipy.ndimage.zoom`, order 3).

    Parameters
    ----------
    x : ndarray (K, T)
    q : float or ndarray (K,)
        Percentile(s), 0-100.
    bin_len : int
        Frames per block.
    zoom_mode : {"nearest", "constant"}
        Boundary mode of the spline upsampling.

    Returns
    -------
    ndarray (K, T) float64
        The baseline.
    """
    x = np.atleast_2d(np.asarray(x, np.float64))
    K, T = x.shape
    d = int(max(1, min(bin_len, T)))
    missing = -T % d
    before, after = missing // 2, missing - missing // 2
    xp = _mirror_pad(x, before, after)
    blocks = row_percentile(xp.reshape(K, -1, d), q)  # (K, n_blocks)
    up = ndimage.zoom(blocks.astype(np.float32), (1, d), order=3, mode=zoom_mode,
                      cval=0.0, prefilter=True)
    return up[:, before : before + T].astype(np.float64)


def _mirror_pad(x: np.ndarray, before: int, after: int) -> np.ndarray:
    if before == 0 and after == 0:
        return x
    mode = "reflect" if x.shape[1] > 1 else "edge"
    return np.pad(x, ((0, 0), (before, after)), mode=mode)


def running_percentile(x: np.ndarray, q: float | np.ndarray, *, window: int) -> np.ndarray:
    """Running ``q``-th percentile over ``window`` frames centred on each frame.

    A rank filter (:func:`scipy.ndimage.percentile_filter`, rank ``int(window * q / 100)``
    of the sorted window) with the trace mirrored at its ends.

    Parameters
    ----------
    x : ndarray (K, T)
    q : float or ndarray (K,)
        Percentile(s), 0-100.
    window : int
        Window length, frames.

    Returns
    -------
    ndarray (K, T) float64
    """
    x = np.atleast_2d(np.asarray(x, np.float64))
    q = np.broadcast_to(np.asarray(q, np.float64), (x.shape[0],))
    out = np.empty_like(x)
    for k in range(x.shape[0]):  # scipy's 1-D rank filter is ~100x faster than its n-D one
        out[k] = ndimage.percentile_filter(x[k], float(q[k]), size=int(window), mode="reflect")
    return out
