"""Synthetic images with planted motion, for the motion-kernel tests (no test_ prefix)."""

from __future__ import annotations

import cv2
import numpy as np
import scipy.fft
import scipy.ndimage as ndi

PAD = 24


def smooth_image(
    shape: tuple[int, int], *, sigma: float = 2.0, blob_sigma: float = 1.5, seed: int = 0, pad: int = PAD
) -> np.ndarray:
    """A textured, non-periodic float64 image of ``shape + 2 * pad`` (blobs on smooth noise)."""
    rng = np.random.default_rng(seed)
    big = (shape[0] + 2 * pad, shape[1] + 2 * pad)
    img = ndi.gaussian_filter(rng.standard_normal(big), sigma) * 10
    blobs = np.zeros(big)
    idx = rng.integers(0, big[0] * big[1], size=big[0] * big[1] // 150)
    blobs.flat[idx] = rng.uniform(5, 20, size=idx.size)
    return img + ndi.gaussian_filter(blobs, blob_sigma) * 20 + 100


def fourier_shift(img: np.ndarray, shift) -> np.ndarray:
    """Move the content of a periodic image by ``shift`` (exact for band-limited data)."""
    ky = np.fft.fftfreq(img.shape[0])[:, None]
    kx = np.fft.rfftfreq(img.shape[1])[None, :]
    ramp = np.exp(-2j * np.pi * (ky * shift[0] + kx * shift[1]))
    return scipy.fft.irfft2(scipy.fft.rfft2(img) * ramp, s=img.shape)


def moved_frames(big: np.ndarray, displacements, pad: int = PAD) -> np.ndarray:
    """Frames whose content moved by each displacement (dy, dx), cropped from a padded image.

    The shift is done on the padded image in Fourier space, then the centre is cropped, so
    new content enters at the edges as in a real recording (no wrap-around in the crop).
    """
    frames = [fourier_shift(big, d)[pad:-pad, pad:-pad] for d in np.atleast_2d(displacements)]
    return np.asarray(frames, dtype=np.float32)


def field_fn(amp: float = 1.0, length: float = 800.0, offset=(0.0, 0.0), centre=(0.0, 0.0)):
    """A smooth applied-shift field (dy, dx)(y, x): ``offset`` plus sinusoids.

    With ``centre`` at the frame's centre the sinusoidal part is odd about it, so its mean
    over the frame is zero and the rigid shift of the frame is ``offset``.
    """

    def fn(y, x):
        v, u = 2 * np.pi * (y - centre[0]) / length, 2 * np.pi * (x - centre[1]) / length
        dy = offset[0] + amp * np.sin(u) * np.cos(v)
        dx = offset[1] + 0.8 * amp * np.sin(v + 0.5 * u)
        return dy, dx

    return fn


def deform(big: np.ndarray, fn, pad: int = PAD) -> np.ndarray:
    """Frame (cropped from a padded image) that the field ``fn`` maps back onto the template.

    ``fn(y, x)`` is an applied-shift field in the cropped frame's coordinates: correcting
    the frame with ``out(y) = frame(y - f(y))`` gives back ``big[pad:-pad, pad:-pad]``.
    The frame is the image at the inverse map, found by iterating ``y = z + f(y)``.
    """
    h, w = big.shape
    zy, zx = np.mgrid[:h, :w].astype(np.float64)
    y, x = zy.copy(), zx.copy()
    for _ in range(40):
        dy, dx = fn(y - pad, x - pad)
        y, x = zy + dy, zx + dx
    out = cv2.remap(big.astype(np.float32), x.astype(np.float32), y.astype(np.float32), cv2.INTER_CUBIC,
                    borderMode=cv2.BORDER_REFLECT)
    return out[pad:-pad, pad:-pad]


def interior_corr(a: np.ndarray, b: np.ndarray, margin: int) -> float:
    sl = (slice(margin, -margin), slice(margin, -margin))
    return float(np.corrcoef(a[sl].ravel(), b[sl].ravel())[0, 1])
