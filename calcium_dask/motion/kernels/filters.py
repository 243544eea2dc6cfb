"""Spatial high-pass filter used to register one-photon (or strongly inhomogeneous) movies."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["high_pass_filter", "high_pass_kernel"]


def _pair(value: float | Sequence[float]) -> tuple[float, float]:
    if np.ndim(value) == 0:
        return float(value), float(value)  # type: ignore[arg-type]
    vy, vx = value  # type: ignore[misc]
    return float(vy), float(vx)


def high_pass_kernel(gSig_filt: float | Sequence[float]) -> np.ndarray:
    """Zero-mean, truncated Gaussian kernel of width ``gSig_filt``.

    Parameters
    ----------
    gSig_filt : float or (float, float)
        Gaussian standard deviation (pixels) along (y, x).

    Returns
    -------
    ndarray, shape (ky, kx), float32
        ``k = 2 * floor(1.5 * sigma) + 1`` taps per axis. The Gaussian is kept on the
        roughly circular support where it is at least as large as anywhere on the kernel's
        border, made zero-mean there, and zero elsewhere.

    Notes
    -----
    Convolving with a zero-mean Gaussian keeps structures of about the Gaussian's size and
    removes the slowly varying background (a difference of a Gaussian and a local box mean).
    This is the filter CaImAn applies when ``gSig_filt`` is set (Giovannucci et al. 2019,
    doi:10.7554/eLife.38173); the shifts are estimated on the filtered frames only.
    """
    sy, sx = _pair(gSig_filt)
    if sy <= 0 or sx <= 0:
        raise ValueError(f"gSig_filt must be positive, got {gSig_filt!r}")
    axes = []
    for sigma in (sy, sx):
        half = int(np.floor(1.5 * sigma))
        t = np.arange(-half, half + 1, dtype=np.float64)
        g = np.exp(-0.5 * (t / sigma) ** 2)
        axes.append(g / g.sum())
    ker = np.outer(axes[0], axes[1])
    edge = max(ker[0].max(), ker[-1].max(), ker[:, 0].max(), ker[:, -1].max())
    support = ker >= edge * (1 - 1e-12)
    ker = np.where(support, ker - ker[support].mean(), 0.0)
    return ker.astype(np.float32)


def high_pass_filter(frames: np.ndarray, gSig_filt: float | Sequence[float]) -> np.ndarray:
    """High-pass filter each frame with :func:`high_pass_kernel` (reflected borders).

    Parameters
    ----------
    frames : ndarray, shape (H, W) or (T, H, W)
    gSig_filt : float or (float, float)

    Returns
    -------
    ndarray, same shape, float32
    """
    arr = np.ascontiguousarray(frames, dtype=np.float32)
    ker = high_pass_kernel(gSig_filt)
    if arr.ndim == 2:
        return cv2.filter2D(arr, -1, ker, borderType=cv2.BORDER_REFLECT)
    out = np.empty(arr.shape, dtype=np.float32)
    for t in range(arr.shape[0]):
        out[t] = cv2.filter2D(arr[t], -1, ker, borderType=cv2.BORDER_REFLECT)
    return out
