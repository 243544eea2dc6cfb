"""Where things are: blood vessels and the neurons' positions, sizes and pairs.

Coordinates are ``(y, x)`` pixels of the padded canvas for vessels and of the
field of view (FOV) for neurons; the canvas is the FOV grown by ``pad`` on every side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Extent of a footprint's 20 %-of-max mask beyond its elliptical rim, pixels.
RIM = 1.2
ECC_MAX = 0.15


@dataclass(frozen=True)
class Layout:
    """Geometry of the neurons (all arrays have length K).

    Attributes
    ----------
    centers : ndarray (K, 2)
        Soma centres in FOV pixels ``(y, x)``.
    radii : ndarray (K,)
        Mean soma radius, pixels.
    ecc : ndarray (K,)
        Ellipticity: semi-axes are ``r * (1 + ecc)`` and ``r * (1 - ecc)``.
    angle : ndarray (K,)
        Orientation of the long axis, radians.
    ring : ndarray (K,) of bool
        Dark nucleus, bright rim.
    partner : ndarray (K,) of int
        Index of the overlapping partner, -1 if none.
    """

    centers: np.ndarray
    radii: np.ndarray
    ecc: np.ndarray
    angle: np.ndarray
    ring: np.ndarray
    partner: np.ndarray

    @property
    def extent(self) -> np.ndarray:
        """Radius of the disk that holds each footprint's 20 %-of-max mask."""
        return self.radii * (1 + np.abs(self.ecc)) + RIM


def vessel_attenuation(rng: np.random.Generator, shape: tuple[int, int],
                       n_vessels: int, contrast: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Dark stripes left by blood vessels.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : (int, int)
        Canvas shape.
    n_vessels : int
    contrast : float
        Scale of the vessels' depth (1: they absorb 50-85 % of the light at their axis).

    Returns
    -------
    atten : ndarray (Hc, Wc) float32
        Multiplicative transmission in (0, 1].
    clearance : ndarray (Hc, Wc) float32
        Distance, pixels, to the nearest vessel wall (negative inside a vessel).
    """
    atten = np.ones(shape, np.float32)
    clearance = np.full(shape, np.inf, np.float32)
    for _ in range(n_vessels):
        dist = ndimage.distance_transform_edt(~_vessel_line(rng, shape))
        half_width = rng.uniform(2.0, 5.0)
        depth = rng.uniform(0.5, 0.85) * contrast
        atten *= (1 - depth * np.exp(-((dist / half_width) ** 2))).astype(np.float32)
        clearance = np.minimum(clearance, dist - half_width)
    return atten, clearance


def _vessel_line(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a gently curving line that crosses the canvas."""
    H, W = shape
    span = float(np.hypot(H, W))
    y, x = rng.uniform(0, H), rng.uniform(0, W)
    theta = rng.uniform(0, np.pi)
    n = int(2 * span / 0.5)
    # a random walk of the heading makes the line curve; the start point is its middle
    heading = theta + np.cumsum(rng.normal(0, 0.03, n))
    ys, xs = 0.5 * np.cumsum(np.sin(heading)), 0.5 * np.cumsum(np.cos(heading))
    ys, xs = y + ys - ys[n // 2], x + xs - xs[n // 2]
    ok = (ys >= 0) & (ys < H) & (xs >= 0) & (xs < W)
    line = np.zeros(shape, bool)
    line[ys[ok].astype(int), xs[ok].astype(int)] = True
    return line


def place_neurons(rng: np.random.Generator, *, K: int, shape: tuple[int, int],
                  radius_range: tuple[float, float], pair_frac: float, ring_frac: float,
                  min_gap: float, clearance: np.ndarray | None = None,
                  pad: int = 0, max_tries: int = 4096) -> Layout:
    """Draw soma positions: non-overlapping singles plus overlapping pairs.

    A single's 20 %-of-max mask never touches another's (rims at least ``min_gap``
    apart); the two members of a pair sit at 0.55-0.85 of the sum of their radii, so
    their masks overlap. Somata avoid vessels.

    Parameters
    ----------
    rng : numpy.random.Generator
    K : int
        Number of neurons.
    shape : (int, int)
        FOV shape.
    radius_range : (float, float)
    pair_frac : float
        Fraction of the K neurons in pairs (rounded to an even count).
    ring_frac : float
    min_gap : float
    clearance : ndarray, optional
        Canvas distance to the nearest vessel (see :func:`vessel_attenuation`).
    pad : int
        Offset of the FOV inside the ``clearance`` map.
    max_tries : int
        Rejection-sampling budget per neuron.

    Returns
    -------
    Layout
    """
    radii = rng.uniform(*radius_range, K)
    ecc = rng.uniform(-ECC_MAX, ECC_MAX, K)
    ext = radii * (1 + np.abs(ecc)) + RIM
    n_pairs = min(int(round(pair_frac * K / 2)), K // 2)
    partner = np.full(K, -1, np.int64)
    centers = np.full((K, 2), np.nan)
    sampler = _Sampler(rng, shape, ext, min_gap, clearance, pad, radii, max_tries)
    for i in range(0, 2 * n_pairs, 2):
        partner[i], partner[i + 1] = i + 1, i
        centers[i], centers[i + 1] = sampler.pair(i, i + 1, centers)
    for i in range(2 * n_pairs, K):
        centers[i] = sampler.anywhere(i, centers)
    order = rng.permutation(K)  # so that the index says nothing about pairing
    inverse = np.argsort(order)
    partner = np.where(partner[order] >= 0, inverse[np.maximum(partner[order], 0)], -1)
    return Layout(centers=centers[order], radii=radii[order], ecc=ecc[order],
                  angle=rng.uniform(0, np.pi, K), ring=rng.random(K) < ring_frac,
                  partner=partner.astype(np.int64))


class _Sampler:
    """Rejection sampler of soma centres against the ones placed so far.

    Candidates are tested in vectorised batches; when random batches keep failing, every
    free position on a half-pixel grid is tried, so placement fails only when no room
    is left.
    """

    BATCH = 256

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], ext: np.ndarray,
                 min_gap: float, clearance: np.ndarray | None, pad: int, radii: np.ndarray,
                 max_tries: int) -> None:
        self.rng, self.shape, self.ext, self.gap = rng, shape, ext, min_gap
        self.clearance, self.pad, self.radii, self.max_tries = clearance, pad, radii, max_tries

    def _valid(self, i: int, cand: np.ndarray, centers: np.ndarray,
               skip: int = -1) -> np.ndarray:
        """Boolean mask of the candidate centres ``cand`` (n, 2) where ``i`` fits."""
        H, W = self.shape
        ok = ((cand[:, 0] >= 1) & (cand[:, 0] <= H - 2) & (cand[:, 1] >= 1)
              & (cand[:, 1] <= W - 2))
        if self.clearance is not None:
            cy = np.clip(np.round(cand[:, 0]).astype(int) + self.pad, 0, self.clearance.shape[0] - 1)
            cx = np.clip(np.round(cand[:, 1]).astype(int) + self.pad, 0, self.clearance.shape[1] - 1)
            ok &= self.clearance[cy, cx] >= 0.6 * self.radii[i]
        placed = np.flatnonzero(~np.isnan(centers[:, 0]))
        placed = placed[placed != skip]
        if placed.size:
            d = np.linalg.norm(cand[:, None, :] - centers[placed][None], axis=2)
            ok &= np.all(d >= self.ext[placed] + self.ext[i] + self.gap, axis=1)
        return ok

    def _first(self, i: int, cand: np.ndarray, centers: np.ndarray,
               skip: int = -1) -> np.ndarray | None:
        hits = np.flatnonzero(self._valid(i, cand, centers, skip))
        return cand[hits[0]] if hits.size else None

    def _uniform(self, n: int) -> np.ndarray:
        return self.rng.uniform((1, 1), (self.shape[0] - 2, self.shape[1] - 2), (n, 2))

    def anywhere(self, i: int, centers: np.ndarray) -> np.ndarray:
        for _ in range(max(1, self.max_tries // self.BATCH)):
            c = self._first(i, self._uniform(self.BATCH), centers)
            if c is not None:
                return c
        grid = np.stack(np.mgrid[1 : self.shape[0] - 2 : 0.5, 1 : self.shape[1] - 2 : 0.5], -1)
        grid = self.rng.permutation(grid.reshape(-1, 2))
        for b in range(0, len(grid), 16 * self.BATCH):  # batches bound the distance matrix
            c = self._first(i, grid[b : b + 16 * self.BATCH], centers)
            if c is not None:
                return c
        raise self._fail(i)

    def pair(self, i: int, j: int, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Place ``i`` anywhere and ``j`` overlapping it (retrying both together)."""
        for _ in range(self.max_tries // 16):
            centers[i] = self.anywhere(i, centers)
            dist = self.rng.uniform(0.55, 0.85, self.BATCH) * (self.radii[i] + self.radii[j])
            phi = self.rng.uniform(0, 2 * np.pi, self.BATCH)
            cand = centers[i] + dist[:, None] * np.stack([np.sin(phi), np.cos(phi)], 1)
            cj = self._first(j, cand, centers, skip=i)
            if cj is not None:
                return centers[i].copy(), cj
            centers[i] = np.nan
        raise self._fail(j)

    def _fail(self, i: int) -> ValueError:
        return ValueError(
            f"could not place neuron {i + 1} of {len(self.ext)} in a {self.shape} field of "
            "view: no room left; lower K, pair_frac, min_gap or radius_range, or enlarge "
            "H and W")
