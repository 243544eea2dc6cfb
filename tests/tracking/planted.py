"""Planted answers for the tracking kernels: a textured field of view seen through a known
transform, and synthetic footprints on known positions."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from calcium_dask.tracking.kernels.align import map_coordinates_of


def tissue(n: int = 256, seed: int = 1, cells: int = 300) -> np.ndarray:
    """A large image of soft blobs (cells) on a smooth background."""
    rng = np.random.default_rng(seed)
    img = np.zeros((n, n), np.float32)
    yy, xx = np.ogrid[:n, :n]
    for _ in range(cells):
        y, x = rng.uniform(0, n, 2)
        r = rng.uniform(3, 6)
        img += (np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * r * r)) * rng.uniform(0.5, 2)).astype(np.float32)
    img += 2 * ndimage.gaussian_filter(rng.standard_normal((n, n)), 8).astype(np.float32)
    return img


def rotation(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])


def about_centre(deg: float, shift, size: int, scale: float = 1.0, size_moving: int | None = None) -> np.ndarray:
    """``q = c_m + scale * R (p - c) + shift``: reference pixel p -> session pixel q."""
    c = np.full(2, (size - 1) / 2)
    cm = np.full(2, ((size_moving or size) - 1) / 2)
    L = scale * rotation(deg)
    return np.column_stack([L, cm + np.asarray(shift, float) - L @ c])


def smooth_field(size: int, amp: float, seed: int = 0) -> np.ndarray:
    """A smooth (2, size, size) displacement of largest component about ``amp``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    ph, w = rng.uniform(0, 6, 4), rng.uniform(1.0, 1.6, 4) * size
    return np.stack([amp * np.sin(2 * np.pi * xx / w[0] + ph[0]) * np.cos(2 * np.pi * yy / w[1] + ph[1]),
                     amp * np.cos(2 * np.pi * yy / w[2] + ph[2]) * np.sin(2 * np.pi * xx / w[3] + ph[3])]
                    ).astype(np.float32)


def invert_map(affine: np.ndarray, flow: np.ndarray | None, size_moving: int) -> np.ndarray:
    """For each session pixel q, the reference position p with q = affine(p + flow(p))."""
    L = np.linalg.inv(affine[:, :2])
    q = np.mgrid[0:size_moving, 0:size_moving].astype(float)
    base = np.einsum("ij,jhw->ihw", L, q - affine[:, 2, None, None])
    p = base.copy()
    for _ in range(40 if flow is not None else 0):
        p = base - np.stack([ndimage.map_coordinates(flow[c], p, order=1, mode="nearest") for c in range(2)])
    return p


def view(world: np.ndarray, origin, affine: np.ndarray, flow: np.ndarray | None, size_moving: int,
         noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """The session's image: ``session(q) = world(origin + p(q))`` plus a little noise."""
    p = invert_map(affine, flow, size_moving) + np.asarray(origin, float)[:, None, None]
    img = ndimage.map_coordinates(world, p, order=3).astype(np.float32)
    return img + np.random.default_rng(seed).normal(0, noise, img.shape).astype(np.float32)


def true_coordinates(affine: np.ndarray, flow: np.ndarray | None, size: int) -> np.ndarray:
    return map_coordinates_of(affine, flow, (size, size))


def disk_footprints(centres: np.ndarray, radii: np.ndarray, shape, ecc: np.ndarray | None = None) -> sp.csc_matrix:
    """Soft elliptic footprints (pixels in C order, one column per unit), max-normalised."""
    H, W = shape
    yy, xx = np.mgrid[0:H, 0:W].astype(float)
    cols = []
    for k, ((cy, cx), r) in enumerate(zip(centres, radii)):
        e = 0.0 if ecc is None else ecc[k]
        rho = np.hypot((yy - cy) / (r * (1 + e)), (xx - cx) / (r * (1 - e)))
        a = 1.0 / (1.0 + np.exp((rho - 1.0) * r / 0.7))
        a[a < 0.01] = 0
        cols.append(sp.csc_matrix(a.reshape(-1, 1).astype(np.float32)))
    return sp.hstack(cols, format="csc") if cols else sp.csc_matrix((H * W, 0), dtype=np.float32)
