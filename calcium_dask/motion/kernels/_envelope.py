"""Tapered circular correlation, normalised by the taper's own autocorrelation.

NoRMCorre correlates frames (and patches) with the template circularly: the images wrap
around, and the seam where the right edge meets the left one is at the same place in both
images, so it pulls every shift towards 0. Multiplying both images by the same smooth
window ``w`` (flat inside, raised-cosine edges) removes the seam, but the fixed envelope
then pulls towards 0 in its turn: the correlation of the two tapered images carries the
factor ``A(s) = sum_x w(x) w(x + s)``. ``A`` is known exactly, so the correlation is
divided by it (a first-order correction in the spirit of the normalised correlations of
Lewis 1995 and Padfield 2012, doi:10.1109/TIP.2011.2181402). The images keep their size
(no zero-padding) and everything stays smooth in ``s``, so the upsampled-DFT refinement
applies unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["Envelope", "taper_width"]


def taper_width(bound: float, size: int) -> int:
    """Raised-cosine edge width (pixels): a little wider than the largest shift searched,
    at least 8, at most a quarter of the image."""
    return int(max(1, min(max(8, int(np.ceil(bound)) + 2), size // 4)))


@lru_cache(maxsize=64)
def _autocorr_spectrum(window: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    w = np.asarray(window)
    n = w.size
    power = np.abs(np.fft.rfft(w)) ** 2
    weight = np.full(power.size, 2.0)  # an rfft bin stands for itself and its mirror
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    return np.arange(power.size, dtype=np.float64), weight * power / n


@lru_cache(maxsize=64)
def _autocorr_table(window: tuple[float, ...], factor: int) -> np.ndarray:
    """A(m / factor) for m = 0 ... n * factor - 1 (A is periodic in n)."""
    n = len(window)
    return _autocorr(window, np.arange(n * factor) / factor)


def _autocorr(window: tuple[float, ...], s: np.ndarray) -> np.ndarray:
    """Circular autocorrelation of a 1-D window at (fractional) shifts ``s``."""
    k, coef = _autocorr_spectrum(window)
    return np.cos((2 * np.pi / len(window)) * np.multiply.outer(s, k)) @ coef


@dataclass(frozen=True)
class Envelope:
    """Scores ``corr / A(s)`` for a separable taper ``wy (h,) x wx (w,)``."""

    wy: tuple[float, ...]
    wx: tuple[float, ...]

    def take(self, idx: np.ndarray) -> Envelope:
        return self

    def score_integer(self, corr: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
        return self.score_grid(corr, sy, sx, 1)

    def score_grid(self, corr: np.ndarray, my: np.ndarray, mx: np.ndarray, factor: int) -> np.ndarray:
        """``corr`` (N, ry, rx) divided by A(s) at shifts ``my / factor`` (N, ry), ``mx /
        factor`` (N, rx) (integer arrays), with ``A`` read from a table of the grid rather
        than a cosine sum per image (the peak searches evaluate every patch of every frame
        on such grids)."""
        ay = _autocorr_table(self.wy, factor)[np.asarray(my) % (len(self.wy) * factor)]
        ax = _autocorr_table(self.wx, factor)[np.asarray(mx) % (len(self.wx) * factor)]
        return corr / (ay[:, :, None] * ax[:, None, :])

    def autocorr(self, shifts: np.ndarray) -> np.ndarray:
        """A(s) at shifts (N, 2)."""
        return _autocorr(self.wy, shifts[:, 0]) * _autocorr(self.wx, shifts[:, 1])
