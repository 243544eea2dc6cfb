"""One-photon-like frames with planted rigid motion, for the motion tests (no test_ prefix).

Blurry cells on a bright background whose large blobs brighten and fade on their own, all
of it moving with the brain; the optics' vignetting fixed to the sensor; shot-like noise.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from .motion_synth import PAD, fourier_shift


def tissue(shape: tuple[int, int], seed: int = 0, pad: int = PAD) -> tuple[np.ndarray, np.ndarray]:
    """Cells (blurred dots) and 12 background blobs on a padded canvas: (cells, blobs (12, ...))."""
    rng = np.random.default_rng(seed)
    big = (shape[0] + 2 * pad, shape[1] + 2 * pad)
    dots = np.zeros(big)
    idx = rng.integers(0, big[0] * big[1], size=big[0] * big[1] // 120)
    dots.flat[idx] = rng.uniform(0.5, 1.5, idx.size)
    cells = ndi.gaussian_filter(dots, 2.5) * 300
    yy, xx = np.mgrid[: big[0], : big[1]]
    blobs = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 14.0**2))
                      for cy, cx in rng.uniform(0, big, (12, 2))]) * 60
    return cells, blobs


def vignette(shape: tuple[int, int], depth: float = 0.5) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r2 = ((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2) / (0.25 * (shape[0] ** 2 + shape[1] ** 2))
    return 1 - depth * r2


def slow_shifts(n: int, seed: int = 1, amp: float = 3.0) -> np.ndarray:
    """A smooth displacement trajectory (T, 2): content moves by it, pixels."""
    rng = np.random.default_rng(seed)
    walk = ndi.gaussian_filter1d(rng.standard_normal((n, 2)).cumsum(0), 4.0, axis=0)
    walk -= walk.mean(0)
    return amp * walk / np.abs(walk).max()


def movie(displacements: np.ndarray, *, shape: tuple[int, int] = (96, 96), noise: float = 10.0,
          seed: int = 0, pad: int = PAD) -> np.ndarray:
    """Frames (T, H, W) float32 of the tissue moved by ``displacements``, under a vignette and
    a background that fluctuates, plus Gaussian noise of SD ``noise`` (about 100 photons at rest)."""
    cells, blobs = tissue(shape, seed, pad)
    rng = np.random.default_rng(seed + 100)
    T = len(displacements)
    level = 1 + 0.8 * np.abs(ndi.gaussian_filter1d(rng.standard_normal((len(blobs), T)), 3.0, axis=1))
    gain = vignette(shape)
    out = np.empty((T, *shape), np.float32)
    for t, d in enumerate(displacements):
        scene = 100 + cells + np.tensordot(level[:, t], blobs, axes=1)
        out[t] = fourier_shift(scene, d)[pad:-pad, pad:-pad] * gain + rng.normal(0, noise, shape)
    return out


def template(shape: tuple[int, int] = (96, 96), seed: int = 0, pad: int = PAD) -> np.ndarray:
    """The motion-free mean frame (background at its mean level, under the vignette)."""
    cells, blobs = tissue(shape, seed, pad)
    scene = 100 + cells + blobs.sum(0) * 1.64  # mean of 1 + 0.8 |N(0, 1)|
    return (scene[pad:-pad, pad:-pad] * vignette(shape)).astype(np.float32)


def rmse(found: np.ndarray, displacements: np.ndarray) -> float:
    """RMSE of applied shifts against minus the displacements (offset removed), pixels."""
    err = np.asarray(found, float) + displacements
    err -= err.mean(0)
    return float(np.sqrt((err**2).sum(1).mean()))
