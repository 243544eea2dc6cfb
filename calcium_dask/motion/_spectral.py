"""Fourier-domain building blocks shared by rigid and piecewise registration.

Everything here works on batches: ``N`` images of shape ``(h, w)`` whose real-to-complex
spectra have shape ``(N, h, w // 2 + 1)``. The correlation ``c(s) = sum_x t(x) f(x - s)``
of a template ``t`` and an image ``f`` peaks at the shift ``s`` that, applied to the image,
aligns it to the template (the NoRMCorre convention used throughout the package). It is
computed from the conjugated cross-power spectrum ``Q = F * conj(T)``, whose inverse
transform is ``c(-s)``.
"""

from __future__ import annotations

import numba
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
    lead, (h, w) = images.shape[:-2], images.shape[-2:]
    flat = np.ascontiguousarray(images.reshape(-1, h, w))
    if flat.dtype not in (np.float32, np.uint16, np.int16, np.uint8):
        flat = flat.astype(np.float32)
    out = np.empty(flat.shape, np.float32)
    norms = np.empty(len(flat))
    window = np.ascontiguousarray(window, dtype=np.float32)
    _taper_kernel(flat, window, float(window.sum(dtype=np.float64)), out, norms)
    return out.reshape(images.shape), (norms.reshape(lead) if norm else None)


@numba.njit(cache=True, nogil=True)
def _taper_kernel(images, window, wsum, out, norms):  # pragma: no cover - numba
    """One image at a time, so that a frame's result does not depend on its batch; four
    float64 accumulators per sum let the loop run without waiting on each addition."""
    n, h, w = images.shape
    w4 = w - w % 4
    for i in range(n):
        s0 = s1 = s2 = s3 = 0.0
        for y in range(h):
            for x in range(0, w4, 4):
                s0 += images[i, y, x] * window[y, x]
                s1 += images[i, y, x + 1] * window[y, x + 1]
                s2 += images[i, y, x + 2] * window[y, x + 2]
                s3 += images[i, y, x + 3] * window[y, x + 3]
            for x in range(w4, w):
                s0 += images[i, y, x] * window[y, x]
        m = np.float32((s0 + s1 + s2 + s3) / wsum)
        q0 = q1 = q2 = q3 = 0.0
        for y in range(h):
            for x in range(0, w4, 4):
                v0 = (np.float32(images[i, y, x]) - m) * window[y, x]
                v1 = (np.float32(images[i, y, x + 1]) - m) * window[y, x + 1]
                v2 = (np.float32(images[i, y, x + 2]) - m) * window[y, x + 2]
                v3 = (np.float32(images[i, y, x + 3]) - m) * window[y, x + 3]
                out[i, y, x], out[i, y, x + 1], out[i, y, x + 2], out[i, y, x + 3] = v0, v1, v2, v3
                q0 += v0 * v0
                q1 += v1 * v1
                q2 += v2 * v2
                q3 += v3 * v3
            for x in range(w4, w):
                v = (np.float32(images[i, y, x]) - m) * window[y, x]
                out[i, y, x] = v
                q0 += v * v
        norms[i] = np.sqrt(q0 + q1 + q2 + q3)


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
