"""Input of the shape classifier: footprints cropped around their centre of mass,
resized to a fixed grid in units of ``gSig``, plus rotation-invariant shape measures."""

from __future__ import annotations

import math

import cv2
import numpy as np
import scipy.sparse as sp
from scipy import ndimage

__all__ = ["CROP_SIGMAS", "N_FEATURES", "crop_footprints", "crop_image", "shape_features"]

CROP_SIGMAS = 3.0  # the crop spans +-3 gSig around the centre of mass
_EIGHT = np.ones((3, 3), bool)
_ANNULI = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)  # radial bins, gSig units
_DISKS = (0.75, 1.25, 1.75, 2.5)
N_FEATURES = len(_ANNULI) - 1 + len(_DISKS) + 14


def _half_widths(gSig: tuple[float, float]) -> tuple[int, int]:
    hy, hx = (max(2, int(math.ceil(CROP_SIGMAS * g))) for g in gSig)
    return hy, hx


def _as_pair(gSig: float | tuple[float, float]) -> tuple[float, float]:
    g = np.broadcast_to(np.asarray(gSig, np.float64), (2,))
    if np.any(g <= 0):
        raise ValueError(f"gSig must be > 0, got {gSig!r}")
    return float(g[0]), float(g[1])


def _complete_at_edges(y: np.ndarray, x: np.ndarray, val: np.ndarray, dims: tuple[int, int],
                       gSig: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points of a footprint cut by the field's edge, with the missing part filled in.

    A cell is taken to be symmetric about its peak (of the footprint smoothed by gSig/2,
    so the centre of a ring, not a point on it): a position outside the field of view gets
    the value of its mirror image through the peak. Footprints that do not reach the edge
    are returned unchanged, so a cell near the edge looks as it would inside the field
    (mirroring at the edge itself would add a second, reflected cell). The smoothed peak
    of a cell cut near its centre lies a little inward of that centre, so such a cell is
    completed a little smaller than it is.
    """
    H, W = dims
    if y.min() > 0 and x.min() > 0 and y.max() < H - 1 and x.max() < W - 1:
        return y, x, val
    y0, x0 = int(y.min()), int(x.min())
    img = np.zeros((int(y.max()) - y0 + 1, int(x.max()) - x0 + 1))
    img[y - y0, x - x0] = val
    smooth = ndimage.gaussian_filter(img, (gSig[0] / 2, gSig[1] / 2), mode="constant")
    py, px = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    ry, rx = 2 * (py + y0) - y, 2 * (px + x0) - x
    out_y, out_x = (ry < 0) | (ry >= H), (rx < 0) | (rx >= W)
    both = out_y & out_x
    return (np.concatenate([y, ry[out_y], y[out_x], ry[both]]),
            np.concatenate([x, x[out_y], rx[out_x], rx[both]]),
            np.concatenate([val, val[out_y], val[out_x], val[both]]))


def crop_image(idx: np.ndarray, val: np.ndarray, dims: tuple[int, int], *,
               gSig: float | tuple[float, float], size: int) -> np.ndarray:
    """One footprint (flat indices and values) as a ``(size, size)`` crop, maximum 1.

    The crop spans ``+-ceil(3 gSig)`` pixels around the centre of mass (rounded). A
    footprint cut by the field's edge is first completed by symmetry about its peak
    (:func:`_complete_at_edges`), so a cell cut by the border looks whole; the rest of the
    crop is zero. Resized with area interpolation.
    """
    H, W = dims
    g = _as_pair(gSig)
    hy, hx = _half_widths(g)
    ok = np.isfinite(val) & (val > 0)
    idx, val = idx[ok], val[ok].astype(np.float64)
    if val.size == 0:
        return np.zeros((size, size), np.float32)
    y, x = np.divmod(idx, W)
    y, x, val = _complete_at_edges(y, x, val, (H, W), g)
    m = val.sum()
    cy, cx = int(round(float(val @ y) / m)), int(round(float(val @ x) / m))
    patch = np.zeros((2 * hy + 1, 2 * hx + 1), np.float32)
    sel = (np.abs(y - cy) <= hy) & (np.abs(x - cx) <= hx)
    patch[y[sel] - cy + hy, x[sel] - cx + hx] = val[sel]
    out = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    top = float(out.max())
    return out / top if top > 0 else out


def crop_footprints(A: sp.spmatrix, dims: tuple[int, int], *,
                    gSig: float | tuple[float, float], size: int = 24) -> np.ndarray:
    """Crops of every column of ``A`` (see :func:`crop_image`), ``(K, size, size)`` float32."""
    A = sp.csc_matrix(A)
    if A.shape[0] != dims[0] * dims[1]:
        raise ValueError(f"A has {A.shape[0]} pixels but dims {tuple(dims)} hold "
                         f"{dims[0] * dims[1]}")
    out = np.empty((A.shape[1], size, size), np.float32)
    for k in range(A.shape[1]):
        sl = slice(A.indptr[k], A.indptr[k + 1])
        out[k] = crop_image(A.indices[sl].astype(np.int64), A.data[sl], dims, gSig=gSig,
                            size=size)
    return out


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates of the crop in gSig units (centre 0)."""
    c = (np.arange(size) - (size - 1) / 2) * (2 * CROP_SIGMAS / size)
    return np.meshgrid(c, c, indexing="ij")


def _largest_share(mask: np.ndarray, img: np.ndarray) -> tuple[float, float]:
    """Number of connected pieces of ``mask`` and the mass share of the largest."""
    lab, n = ndimage.label(mask, _EIGHT)
    if n == 0:
        return 0.0, 0.0
    mass = ndimage.sum(img, lab, index=np.arange(1, n + 1))
    return float(n), float(np.max(mass) / max(np.sum(mass), 1e-12))


def _solidity(mask: np.ndarray) -> float:
    pts = np.argwhere(mask).astype(np.int32)
    if len(pts) < 3:
        return 0.0
    hull = cv2.convexHull(pts[:, ::-1].reshape(-1, 1, 2))
    area = cv2.contourArea(hull)
    return float(min(1.0, mask.sum() / (area + 0.5 * len(hull) + 1.0)))


def _one(img: np.ndarray, uy: np.ndarray, ux: np.ndarray, rr: np.ndarray) -> np.ndarray:
    m = max(float(img.sum()), 1e-12)
    annuli = [img[(rr >= lo) & (rr < hi)].mean() for lo, hi in zip(_ANNULI[:-1], _ANNULI[1:])]
    disks = [img[rr < r].sum() / m for r in _DISKS]
    my, mx = float((img * uy).sum() / m), float((img * ux).sum() / m)
    cyy = float((img * (uy - my) ** 2).sum() / m)
    cxx = float((img * (ux - mx) ** 2).sum() / m)
    cxy = float((img * (uy - my) * (ux - mx)).sum() / m)
    tr, det = cyy + cxx, cyy * cxx - cxy**2
    disc = math.sqrt(max(tr * tr / 4 - det, 0.0))
    lmax, lmin = tr / 2 + disc, max(tr / 2 - disc, 0.0)
    px = (2 * CROP_SIGMAS / img.shape[0]) ** 2  # area of a crop pixel, gSig^2
    m20, m50 = img > 0.2, img > 0.5
    pieces, share = _largest_share(m20, img)
    lap = np.abs(ndimage.laplace(img))
    rough = float(lap[m20].mean() / max(img[m20].mean(), 1e-6)) if m20.any() else 0.0
    ys, xs = np.nonzero(m50)
    fill = m50.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1)) if ys.size else 0.0
    iy, ix = np.unravel_index(int(np.argmax(img)), img.shape)
    border = np.concatenate([img[:2].ravel(), img[-2:].ravel(), img[:, :2].ravel(),
                             img[:, -2:].ravel()]).sum() / m
    flat = float(img[m20].mean()) if m20.any() else 0.0
    return np.array([*annuli, *disks, math.sqrt(lmax), math.sqrt(lmin),
                     lmin / max(lmax, 1e-12), m20.sum() * px / 10, m50.sum() * px / 10,
                     math.log1p(pieces), share, rough, fill, _solidity(img > 0.3),
                     math.hypot(uy[iy, ix], ux[iy, ix]), border, flat,
                     math.hypot(my, mx)], np.float32)


def shape_features(crops: np.ndarray) -> np.ndarray:
    """Rotation-invariant shape measures of each crop, ``(K, N_FEATURES)`` float32.

    Mean level in rings of 0.5 gSig, mass fraction inside disks, second moments (axes
    and their ratio), areas above 20 % and 50 % of the maximum, number of connected
    pieces and share of the largest, roughness (|Laplacian| over level), fill of the
    bounding box, solidity, distance of the maximum and of the centroid from the crop
    centre, mass on the crop's rim, mean level of the support.
    """
    crops = np.asarray(crops, np.float32)
    if crops.ndim != 3 or crops.shape[1] != crops.shape[2]:
        raise ValueError(f"crops must be (K, S, S), got {crops.shape}")
    uy, ux = _grid(crops.shape[1])
    rr = np.hypot(uy, ux)
    out = np.zeros((len(crops), N_FEATURES), np.float32)
    for k, img in enumerate(crops):
        if img.max() > 0:
            out[k] = _one(img, uy, ux, rr)
    return out
