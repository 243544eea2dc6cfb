"""Synthetic footprints for training and testing the shape classifier.

Positives are true soma footprints of simulated movies, degraded the way CNMF
estimates are (noise on a dilated support, small values cut, a little of an
overlapping neighbour). Negatives are the false positives CNMF produces: background
blobs, vessel fragments (long stripes), split cells (half discs), merged cells (two
somata summed), dendrites (thin curved lines), noise-only footprints (sparse pixels),
filled boxes (a greedy initialisation left unrefined) and cells drowned in noise.
Every function returns a nonnegative dense ``(H, W)`` image; ``center`` is ``(y, x)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage

__all__ = ["NEGATIVE_KINDS", "blob", "box", "dendrite", "merged_cells", "noise_fill",
           "noisy_cell", "positive_variant", "sparse_noise", "split_cell", "stripe"]

Center = tuple[float, float]


def _coords(dims: tuple[int, int], center: Center) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0 : dims[0], 0 : dims[1]].astype(np.float64)
    return yy - center[0], xx - center[1]


def _noise_on_support(rng: np.random.Generator, img: np.ndarray, sigma: float,
                      dilate: int) -> np.ndarray:
    """Add Gaussian noise (relative to the maximum) on the dilated support; clip at 0."""
    mask = img > 0.02 * img.max()
    if dilate > 0:
        mask = ndimage.binary_dilation(mask, iterations=dilate)
    out = img + mask * rng.normal(0, sigma * img.max(), img.shape)
    return np.clip(out, 0, None)


def _com_radius(img: np.ndarray) -> tuple[Center, float]:
    yy, xx = np.indices(img.shape)
    m = img.sum()
    c = (float((img * yy).sum() / m), float((img * xx).sum() / m))
    return c, math.sqrt(max((img > 0.5 * img.max()).sum(), 1) / math.pi)


def shift_image(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``img`` moved by whole pixels, zero-filled."""
    out = np.zeros_like(img)
    H, W = img.shape
    if abs(dy) >= H or abs(dx) >= W:
        return out
    ys, yd = (slice(0, H - dy), slice(dy, H)) if dy >= 0 else (slice(-dy, H), slice(0, H + dy))
    xs, xd = (slice(0, W - dx), slice(dx, W)) if dx >= 0 else (slice(-dx, W), slice(0, W + dx))
    out[yd, xd] = img[ys, xs]
    return out


def positive_variant(rng: np.random.Generator, fp: np.ndarray,
                     partner: np.ndarray | None = None) -> np.ndarray:
    """A true footprint as CNMF might estimate it (still a neuron)."""
    img = fp.astype(np.float64).copy()
    if partner is not None and rng.random() < 0.6:
        img += rng.uniform(0, 0.2) * partner
    if rng.random() < 0.8:
        sigma = 0.2 * rng.random() ** 2  # mostly clean, sometimes quite noisy
        img = _noise_on_support(rng, img, sigma, int(rng.integers(0, 4)))
    img[img < rng.uniform(0, 0.15) * img.max()] = 0
    return img


def split_cell(rng: np.random.Generator, fp: np.ndarray) -> np.ndarray:
    """A soma cut by a straight line near its centre, one side kept."""
    (cy, cx), r = _com_radius(fp)
    theta = rng.uniform(0, 2 * np.pi)
    dy, dx = _coords(fp.shape, (cy, cx))
    side = dy * math.sin(theta) + dx * math.cos(theta) - rng.uniform(-0.25, 0.25) * r
    img = fp * (1 / (1 + np.exp(-side / rng.uniform(0.2, 0.8))))
    return _noise_on_support(rng, img, rng.uniform(0, 0.08), 1)


def merged_cells(rng: np.random.Generator, fp: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Two somata summed, the second moved next to the first (1.4-2.4 radii apart)."""
    (cy, cx), r = _com_radius(fp)
    (oy, ox), r2 = _com_radius(other)
    d = rng.uniform(1.4, 2.4) * 0.5 * (r + r2 + 2.0)
    phi0 = rng.uniform(0, 2 * np.pi)
    for phi in phi0 + np.arange(8) * np.pi / 4:  # a direction that keeps the cell in view
        moved = shift_image(other, int(round(cy + d * math.sin(phi) - oy)),
                            int(round(cx + d * math.cos(phi) - ox)))
        if moved.sum() > 0.7 * other.sum():
            break
    img = fp + rng.uniform(0.5, 1.0) * moved / max(moved.max(), 1e-12)
    return _noise_on_support(rng, img, rng.uniform(0, 0.08), 1)


def noisy_cell(rng: np.random.Generator, fp: np.ndarray, gSig: float) -> np.ndarray:
    """A soma drowned in noise on a box around it: the shape is no longer visible."""
    (cy, cx), _ = _com_radius(fp)
    dy, dx = _coords(fp.shape, (cy, cx))
    half = rng.uniform(1.5, 3.0) * gSig
    support = (np.abs(dy) <= half) & (np.abs(dx) <= half)
    img = fp * rng.uniform(0.2, 0.6) + support * rng.normal(0, rng.uniform(0.6, 1.2),
                                                              fp.shape)
    return np.clip(img, 0, None)


def box(rng: np.random.Generator, dims: tuple[int, int], gSig: float,
        center: Center) -> np.ndarray:
    """Filled rectangles around ``gSiz x gSiz`` (``gSiz = 2 gSig + 1``, sides 0.8-2.2
    times that), sometimes two joined, with a textured or noisy fill and maybe a faint
    soma inside: a greedy initialisation's search area left unrefined."""
    dy, dx = _coords(dims, center)
    gsiz = 2 * round(gSig) + 1
    img = np.zeros(dims)
    for i in range(1 + int(rng.random() < 0.3)):
        hy, hx = gsiz * rng.uniform(0.8, 2.2, 2) / 2
        oy, ox = (0.0, 0.0) if i == 0 else rng.choice([-1, 1], 2) * rng.uniform(0.5, 1.0, 2) * (
            hy, hx)
        img = np.maximum(img, ((np.abs(dy - oy) <= hy) & (np.abs(dx - ox) <= hx))
                         * rng.uniform(0.6, 1.0))
    support = img > 0
    img *= 1 + rng.uniform(-0.3, 0.3) * dy / gsiz + rng.uniform(-0.3, 0.3) * dx / gsiz
    if rng.random() < 0.4:
        r = gSig * rng.uniform(0.6, 1.0)
        img += rng.uniform(0.2, 0.6) * (np.hypot(dy, dx) < r) * support
    noise = rng.normal(0, rng.uniform(0.05, 0.35), dims)
    if rng.random() < 0.5:  # spatially correlated texture (background structure)
        noise = ndimage.gaussian_filter(noise, rng.uniform(0.7, 1.5)) * 2.5
    return np.clip(img + support * noise, 0, None)


def stripe(rng: np.random.Generator, dims: tuple[int, int], gSig: float,
           center: Center) -> np.ndarray:
    """A long smooth stripe (a vessel fragment), 4-12 gSig long, slightly bent."""
    dy, dx = _coords(dims, center)
    theta = rng.uniform(0, np.pi)
    along = dy * math.sin(theta) + dx * math.cos(theta)
    across = -dy * math.cos(theta) + dx * math.sin(theta)
    across = across - rng.uniform(-0.03, 0.03) * along**2 / gSig
    width = gSig * rng.uniform(0.3, 0.8)
    length = gSig * rng.uniform(4, 12) / 2
    img = np.exp(-(across**2) / (2 * width**2)) / (1 + np.exp((np.abs(along) - length) / 1.0))
    img *= 1 + 0.2 * np.sin(along / gSig * rng.uniform(0.3, 1.2) + rng.uniform(0, 6))
    img[img < 0.05] = 0
    return _noise_on_support(rng, img, rng.uniform(0, 0.1), 1)


def dendrite(rng: np.random.Generator, dims: tuple[int, int], gSig: float,
             center: Center) -> np.ndarray:
    """Thin curved lines (1-2 pixels wide), 3-8 gSig long, with up to two branches."""
    img = np.zeros(dims)
    starts = [np.array(center, np.float64)]
    for branch in range(int(rng.integers(1, 4))):
        p = starts[int(rng.integers(len(starts)))].copy()
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(int(gSig * rng.uniform(3, 8) / 0.5)):
            heading += rng.normal(0, 0.08)
            p += 0.5 * np.array([math.sin(heading), math.cos(heading)])
            iy, ix = int(round(p[0])), int(round(p[1]))
            if 0 <= iy < dims[0] and 0 <= ix < dims[1]:
                img[iy, ix] = 1.0
            starts.append(p.copy())
    img = ndimage.gaussian_filter(img, rng.uniform(0.4, 0.9))
    img *= 1 + 0.3 * rng.standard_normal(dims) * (img > 0)
    img = np.clip(img, 0, None)
    img[img < 0.1 * img.max()] = 0
    return img


def blob(rng: np.random.Generator, dims: tuple[int, int], gSig: float,
         center: Center) -> np.ndarray:
    """A smooth patch of background, two to four times wider than a neuron, cut to a
    search area."""
    dy, dx = _coords(dims, center)
    img = np.zeros(dims)
    for _ in range(int(rng.integers(1, 4))):
        s = gSig * rng.uniform(1.8, 3.2)
        oy, ox = rng.normal(0, gSig, 2)
        img += rng.uniform(0.5, 1) * np.exp(-((dy - oy) ** 2 + (dx - ox) ** 2) / (2 * s**2))
    reach = gSig * rng.uniform(2.5, 4.5)
    cut = np.hypot(dy, dx) > reach if rng.random() < 0.5 else np.maximum(
        np.abs(dy), np.abs(dx)) > reach
    img[cut] = 0
    return _noise_on_support(rng, img, rng.uniform(0, 0.1), 0)


def sparse_noise(rng: np.random.Generator, dims: tuple[int, int], gSig: float,
                 center: Center) -> np.ndarray:
    """Scattered positive pixels around a point (no shape), sometimes a tiny speck."""
    dy, dx = _coords(dims, center)
    if rng.random() < 0.2:  # a few pixels much smaller than a neuron
        return np.clip((np.hypot(dy, dx) < rng.uniform(0.5, 1.5)) * rng.uniform(0.5, 1, dims),
                       0, None)
    region = np.hypot(dy, dx) < gSig * rng.uniform(1.5, 3.5)
    img = region * (rng.random(dims) < rng.uniform(0.05, 0.5)) * rng.exponential(1.0, dims)
    if rng.random() < 0.5:
        img = ndimage.gaussian_filter(img, 0.5)
    return img


def noise_fill(rng: np.random.Generator, dims: tuple[int, int], gSig: float,
               center: Center) -> np.ndarray:
    """A neuron-sized disc, square or rounded square filled with flat noise (no soma
    profile): a search area that captured only noise."""
    dy, dx = _coords(dims, center)
    half = (gSig + 0.5) * rng.uniform(0.8, 1.5)
    p = rng.choice([2.0, 4.0, 50.0])  # disc, rounded square, square
    support = (np.abs(dy / half) ** p + np.abs(dx / half) ** p) <= 1
    img = rng.normal(rng.uniform(0.4, 0.7), rng.uniform(0.15, 0.35), dims)
    if rng.random() < 0.4:
        img = ndimage.gaussian_filter(img, 0.6) * 1.3
    return np.clip(img, 0, None) * support


NEGATIVE_KINDS: dict[str, Callable[..., np.ndarray]] = {
    "box": box, "stripe": stripe, "dendrite": dendrite, "blob": blob,
    "sparse_noise": sparse_noise, "noise_fill": noise_fill,
}
"""Negatives drawn from ``(rng, dims, gSig, center)``; ``split_cell``,
``merged_cells`` and ``noisy_cell`` start from true footprints instead."""
