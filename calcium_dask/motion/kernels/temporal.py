"""Registration of noisy frames in time: frames smoothed before they are registered, and shifts
whose correlation peak is not significant replaced by their neighbours' (one-photon movies)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["TRUNCATE", "fill_unreliable", "halo_frames", "smooth_frames"]

TRUNCATE = 3.0  # the temporal Gaussian is cut at this many SDs


def halo_frames(smooth_sigma_time: float) -> int:
    """Frames on each side of a block that its temporal smoothing reads (0 without)."""
    return int(math.ceil(TRUNCATE * smooth_sigma_time)) if smooth_sigma_time > 0 else 0


def smooth_frames(frames: np.ndarray, smooth_sigma_time: float) -> np.ndarray:
    """Gaussian smoothing of a (T, H, W) stack along time (suite2p's ``smooth_sigma_time``).

    Parameters
    ----------
    frames : ndarray (T, H, W)
    smooth_sigma_time : float
        SD of the Gaussian, frames; 0 returns the frames (as float32).

    Returns
    -------
    ndarray (T, H, W) float32
        Each frame is the weighted mean of the frames within ``halo_frames(sigma)`` of it;
        at the ends of the stack the nearest frame is repeated, so a block that must match
        the whole movie's result has to carry that many frames of its neighbours.

    Notes
    -----
    Registering a frame averaged with its neighbours divides the independent noise of the
    frame by up to ``sqrt(2 sqrt(pi) sigma)`` while the slow part of the motion is kept; what
    moves faster than ``sigma`` frames is averaged (Pachitariu et al. 2017,
    doi:10.1101/061507).
    """
    x = np.asarray(frames, dtype=np.float32)
    if smooth_sigma_time <= 0 or len(x) < 2:
        return x
    return ndimage.gaussian_filter1d(x, float(smooth_sigma_time), axis=0, mode="nearest", truncate=TRUNCATE)


def fill_unreliable(shifts: np.ndarray, reliable: np.ndarray) -> np.ndarray:
    """Shifts of unreliable frames replaced by linear interpolation between reliable ones.

    Parameters
    ----------
    shifts : ndarray (T, 2)
    reliable : ndarray (T,) bool
        Frames whose shift is trusted (e.g. a significant correlation peak).

    Returns
    -------
    ndarray (T, 2) float32
        Frames before the first (after the last) reliable frame take its shift; with no
        reliable frame at all the shifts are returned unchanged (nothing to trust more).
    """
    out = np.array(shifts, dtype=np.float32, copy=True)
    ok = np.asarray(reliable, bool)
    if ok.all() or not ok.any():
        return out
    t = np.arange(len(out))
    for axis in range(out.shape[1]):
        out[~ok, axis] = np.interp(t[~ok], t[ok], out[ok, axis])
    return out
