"""Soma footprints as small square patches, and their dense (K, H, W) form."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .layout import ECC_MAX, Layout

# Softness of the soma's rim: logistic width, pixels.
EDGE_PX = 0.7


def patch_half_width(r_max: float, blur: float = 0.0) -> int:
    """Half-width of the square patch that holds a soma of radius up to ``r_max``, blurred
    by a Gaussian of SD ``blur``."""
    return int(math.ceil(r_max * (1 + ECC_MAX) + 3)) + int(math.ceil(3 * blur))


def make_patches(rng: np.random.Generator, layout: Layout,
                 half: int, *, blur: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Draw every neuron's footprint on a ``(2 half + 1)`` square patch.

    A footprint is a soft-edged ellipse with a faint texture; ring neurons have a
    darker nucleus (GCaMP is excluded from it), so their rim is brightest. Each patch
    is scaled to a maximum of 1.

    Parameters
    ----------
    rng : numpy.random.Generator
    layout : Layout
    half : int
        Patch half-width, see :func:`patch_half_width`.
    blur : float
        SD, pixels, of a Gaussian blur of each soma (out-of-focus light); 0: none.

    Returns
    -------
    patches : ndarray (K, P, P) float32
    origins : ndarray (K, 2) int64
        FOV coordinates ``(y, x)`` of each patch's top-left pixel (may be negative).
    """
    K = len(layout.radii)
    P = 2 * half + 1
    patches = np.zeros((K, P, P), np.float32)
    origins = np.floor(layout.centers).astype(np.int64) - half
    for k in range(K):
        offset = layout.centers[k] - origins[k]  # centre inside the patch
        patches[k] = _soma(rng, P, offset, layout.radii[k], layout.ecc[k],
                           layout.angle[k], bool(layout.ring[k]))
        if blur > 0:
            patches[k] = _blurred(patches[k], blur)
    return patches, origins


def _blurred(a: np.ndarray, blur: float) -> np.ndarray:
    """A footprint blurred by a Gaussian, support kept compact, maximum 1."""
    a = ndimage.gaussian_filter(a.astype(np.float64), blur, mode="constant")
    a[a < 1e-3 * a.max()] = 0
    return (a / a.max()).astype(np.float32)


def _soma(rng: np.random.Generator, P: int, center: np.ndarray, r: float, ecc: float,
          angle: float, ring: bool) -> np.ndarray:
    u, v = np.mgrid[0:P, 0:P].astype(np.float64)
    u, v = u - center[0], v - center[1]
    along = u * np.cos(angle) + v * np.sin(angle)
    across = -u * np.sin(angle) + v * np.cos(angle)
    rho = np.hypot(along / (r * (1 + ecc)), across / (r * (1 - ecc)))  # 1 on the rim
    a = 1.0 / (1.0 + np.exp((rho - 1.0) * r / EDGE_PX))
    if ring:
        depth = rng.uniform(0.35, 0.65)
        a *= 1 - depth * np.exp(-((rho / 0.6) ** 4))
    else:
        a *= 0.8 + 0.2 * np.clip(1 - rho**2, 0, 1)  # cytosol thicker at the centre
    texture = ndimage.gaussian_filter(rng.standard_normal((P, P)), 1.0)
    a *= 1 + 0.08 * texture / max(texture.std(), 1e-12)  # uneven expression
    a = np.clip(a, 0, None)
    a[a < 1e-3 * a.max()] = 0  # keep the support compact
    return (a / a.max()).astype(np.float32)


def dense_footprint(patch: np.ndarray, origin: np.ndarray,
                    shape: tuple[int, int]) -> np.ndarray:
    """Paste one patch into a zero ``(H, W)`` image, cropping at the borders."""
    out = np.zeros(shape, np.float32)
    add_patch(out, patch, origin, 1.0)
    return out


def add_patch(image: np.ndarray, patch: np.ndarray, origin: np.ndarray,
              weight: float | np.ndarray) -> None:
    """``image[..., window] += weight * patch`` for the part of the patch inside the image.

    Parameters
    ----------
    image : ndarray (..., H, W)
        Modified in place.
    patch : ndarray (P, P)
    origin : (int, int)
        Image coordinates of the patch's top-left pixel.
    weight : float or ndarray
        Scalar, or one value per leading index of ``image`` (e.g. per frame).
    """
    H, W = image.shape[-2:]
    P = patch.shape[0]
    y0, x0 = int(origin[0]), int(origin[1])
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(H, y0 + P), min(W, x0 + P)
    if ys >= ye or xs >= xe:
        return
    piece = patch[ys - y0:ye - y0, xs - x0:xe - x0]
    w = np.asarray(weight, np.float32)
    if w.ndim:
        image[..., ys:ye, xs:xe] += w[:, None, None] * piece
    else:
        image[..., ys:ye, xs:xe] += w * piece


def dense_footprints(patches: np.ndarray, origins: np.ndarray,
                     shape: tuple[int, int]) -> np.ndarray:
    """All footprints as a dense ``(K, H, W)`` float32 array (max-normalised)."""
    out = np.zeros((len(patches), *shape), np.float32)
    for k in range(len(patches)):
        add_patch(out[k], patches[k], origins[k], 1.0)
    return out
