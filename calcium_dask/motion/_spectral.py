"""Fourier-domain building blocks shared by rigid and piecewise registration.

Everything here works on batches: ``N`` images of shape ``(h, w)`` whose real-to-complex
spectra have shape ``(N, h, w // 2 + 1)``. The correlation ``c(s) = sum_x t(x) f(x - s)``
of a template ``t`` and an image ``f`` peaks at the shift ``s`` that, applied to the image,
aligns it to the template (the NoRMCorre convention used throughout the package). It is
computed from the conjugated cross-power spectrum ``Q = F * conj(T)``, whose inverse
transform is ``c(-s)``.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

__all__ = ["as_stack", "cross_power", "rfft2", "taper", "taper_1d", "tapered"]


def as_stack(frames: np.ndarray) -> tuple[np.ndarray, bool]:
    """Return ``frames`` as a C-contiguous float32 (T, H, W) stack and whether it was one frame.

    Parameters
    ----------
    frames : ndarray, shape (H, W) or (T, H, W)
        Any real dtype.

    Returns
    -------
    stack : ndarray, shape (T, H, W), float32
    single : bool
        True when the input was a single (H, W) frame.
    """
    arr = np.asarray(frames)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected a frame (H, W) or a stack (T, H, W), got shape {arr.shape}")
    single = arr.ndim == 2
    stack = np.ascontiguousarray(arr[None] if single else arr, dtype=np.float32)
    return stack, single


def rfft2(images: np.ndarray) -> np.ndarray:
    """Real 2-D FFT over the last two axes on one thread (float32 in, complex64 out)."""
    return scipy.fft.rfft2(images, axes=(-2, -1), workers=1)


def taper_1d(n: int, width: int) -> np.ndarray:
    """1 inside, a raised-cosine ramp over ``width`` samples at each end, float64 (n,)."""
    r = int(min(max(width, 0), n // 2))
    out = np.ones(n)
    if r:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / r)
        out[:r] = ramp
        out[n - r :] = ramp[::-1]
    return out


def taper(shape: tuple[int, int], width: int) -> np.ndarray:
    """Separable window ``taper_1d(h) x taper_1d(w)``, float32 (h, w)."""
    return np.outer(taper_1d(shape[0], width), taper_1d(shape[1], width)).astype(np.float32)


def tapered(
    images: np.ndarray, window: np.ndarray, *, norm: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """``window * (f - m)`` for each image, with ``m`` the window-weighted mean.

    Parameters
    ----------
    images : ndarray, shape (..., h, w)
    window : ndarray, shape (h, w), float32
    norm : bool
        Also return the Euclidean norm of each result.

    Returns
    -------
    out : ndarray, shape (..., h, w), float32
    norms : ndarray, shape (...), float64, or None
    """
    lead = images.shape[:-2]
    # Per-image pairwise sums (not BLAS, whose rounding can depend on the batch size):
    # a frame's result must not depend on the other frames of its block.
    out = np.multiply(images, window, dtype=np.float32)
    mean = out.sum(axis=(-2, -1), dtype=np.float64) / window.sum(dtype=np.float64)
    np.subtract(images, mean.astype(np.float32)[..., None, None], out=out, dtype=np.float32)
    out *= window
    norms = None
    if norm:
        norms = np.sqrt(np.square(out).sum(axis=(-2, -1), dtype=np.float64)).reshape(lead)
    return out, norms


def cross_power(template_fft_conj: np.ndarray, images_fft: np.ndarray) -> np.ndarray:
    """Conjugated cross-power spectrum ``F * conj(T)``, broadcasting the template over the batch.

    Its inverse transform is ``c(-s)``; the peak search accounts for that, which saves a
    conjugation pass over every frame's spectrum.

    Parameters
    ----------
    template_fft_conj : ndarray, shape (..., h, w//2+1), complex64
        Conjugated spectrum of the template (or of template patches).
    images_fft : ndarray, shape (N, ..., h, w//2+1), complex64
        Spectra of the images to register; overwritten with the result.
    """
    images_fft *= template_fft_conj
    return images_fft
