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

__all__ = ["as_stack", "cross_power", "rfft2", "taper", "taper_1d", "tapered", "tapered_windows"]


#: dtypes the numba kernels read as they are: a movie's integers need no float32 copy
NATIVE = (np.dtype(np.float32), np.dtype(np.uint16), np.dtype(np.int16), np.dtype(np.uint8))


def as_stack(frames: np.ndarray, *, native: bool = False) -> tuple[np.ndarray, bool]:
    """Return ``frames`` as a C-contiguous float32 (T, H, W) stack and whether it was one frame.

    Parameters
    ----------
    frames : ndarray, shape (H, W) or (T, H, W)
        Any real dtype.
    native : bool
        Keep the dtypes in :data:`NATIVE` (for callers whose kernels read them).

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
    dtype = arr.dtype if native and arr.dtype in NATIVE else np.float32
    stack = np.ascontiguousarray(arr[None] if single else arr, dtype=dtype)
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
    flat = images.reshape(-1, h, w)
    origin = np.zeros((len(flat), 1), np.int64)
    out, norms = tapered_windows(flat, origin, origin, window)
    return out.reshape(images.shape), (norms.reshape(lead) if norm else None)


def tapered_windows(images: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                    window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`tapered` of the windows ``images[t, rows[t, i]:+h, cols[t, j]:+w]``, read in
    place (no copy of the patches first).

    Parameters
    ----------
    images : ndarray (T, H, W)
    rows, cols : int ndarray (T, ny), (T, nx)
        Top-left corner of every window; every window must lie inside its image.
    window : ndarray (h, w)

    Returns
    -------
    out : ndarray (T, ny, nx, h, w) float32
    norms : ndarray (T, ny, nx) float64
    """
    images, _ = as_stack(images, native=True)
    window = np.ascontiguousarray(window, dtype=np.float32)
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    h, w = window.shape
    if len(images) and (rows.min(initial=0) < 0 or cols.min(initial=0) < 0
                        or rows.max(initial=0) + h > images.shape[1] or cols.max(initial=0) + w > images.shape[2]):
        raise ValueError("a window reaches outside its image")
    out = np.empty((len(images), rows.shape[1], cols.shape[1], h, w), np.float32)
    norms = np.empty(out.shape[:3])
    _taper_kernel(images, rows, cols, window, float(window.sum(dtype=np.float64)), out, norms)
    return out, norms


@numba.njit(cache=True, nogil=True)
def _taper_kernel(images, rows, cols, window, wsum, out, norms):  # pragma: no cover - numba
    """One window at a time, so that a frame's result does not depend on its batch."""
    for t in range(images.shape[0]):
        for i in range(rows.shape[1]):
            for j in range(cols.shape[1]):
                norms[t, i, j] = _taper_one(images[t], rows[t, i], cols[t, j], window, wsum, out[t, i, j])


_SUMS = {"reassoc", "nsz", "contract"}  # lets the float64 sums run in SIMD lanes


@numba.njit(cache=True, nogil=True)
def _taper_one(img, r0, c0, window, wsum, dst):  # pragma: no cover - numba
    """Taper the window of ``img`` at (r0, c0) into ``dst``; return its norm."""
    m = np.float32(_weighted_sum(img, r0, c0, window) / wsum)
    return _centre_and_weigh(img, r0, c0, window, m, dst)


@numba.njit(cache=True, nogil=True, fastmath=_SUMS)
def _weighted_sum(img, r0, c0, window):  # pragma: no cover - numba
    h, w = window.shape
    s = 0.0
    for y in range(h):
        row, wr = img[r0 + y], window[y]
        for x in range(w):
            s += np.float64(row[c0 + x] * wr[x])
    return s


@numba.njit(cache=True, nogil=True, fastmath=_SUMS)
def _centre_and_weigh(img, r0, c0, window, m, dst):  # pragma: no cover - numba
    """``dst = (window of img - m) * window``; returns the norm of ``dst``."""
    h, w = window.shape
    q = 0.0
    for y in range(h):
        row, wr, d = img[r0 + y], window[y], dst[y]
        for x in range(w):
            v = (np.float32(row[c0 + x]) - m) * wr[x]
            d[x] = v
            q += np.float64(v * v)
    return np.sqrt(q)


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
