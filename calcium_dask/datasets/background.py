"""Static autofluorescence (with vessels) and the low-rank neuropil background."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Spatial scale (Gaussian sigma, pixels) of each neuropil component; cycled if more.
NEUROPIL_SIGMA_PX = (24.0, 12.0)


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-SD Gaussian-filtered white noise."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / max(f.std(), 1e-12)


def smooth_noise_1d(rng: np.random.Generator, n: int, sigma: float, *, mean_free: bool = True) -> np.ndarray:
    """Low-pass noise of length ``n`` (Gaussian, ``sigma`` in samples), unit SD.

    ``mean_free``: the sample has exactly zero mean and unit SD. Otherwise it is scaled
    by the process's SD, not the sample's, so it keeps the chance mean of a finite sample.
    """
    sigma = max(sigma, 1e-3)
    f = ndimage.gaussian_filter1d(rng.standard_normal(n), sigma, mode="reflect")
    if not mean_free:
        return f * np.sqrt(2.0 * np.sqrt(np.pi) * sigma)
    f = f - f.mean()
    return f / max(f.std(), 1e-12)


def baseline_image(rng: np.random.Generator, shape: tuple[int, int], level: float,
                   atten: np.ndarray) -> np.ndarray:
    """Static autofluorescence, photons: vignetting, tissue texture and vessels.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : (int, int)
        Canvas shape.
    level : float
        Mean level, photons.
    atten : ndarray
        Vessel transmission (see ``layout.vessel_attenuation``).
    """
    H, W = shape
    yy, xx = np.mgrid[0:H, 0:W]
    r2 = ((yy - H / 2) ** 2 + (xx - W / 2) ** 2) / (0.25 * (H * H + W * W))
    vignette = 1.05 - 0.25 * r2 + 0.05 * rng.uniform(-1, 1)
    texture = 1 + 0.10 * smooth_field(rng, shape, 2.0) + 0.08 * smooth_field(rng, shape, 10.0)
    img = level * vignette * texture * atten
    return np.clip(img, 0.05 * level, None).astype(np.float32)


def neuropil_spatial(rng: np.random.Generator, shape: tuple[int, int],
                     levels: tuple[float, ...], atten: np.ndarray) -> np.ndarray:
    """Smooth, positive spatial components of the neuropil, photons at unit activity.

    Returns
    -------
    ndarray (nb, Hc, Wc) float32
    """
    comps = []
    for j, level in enumerate(levels):
        sigma = NEUROPIL_SIGMA_PX[j % len(NEUROPIL_SIGMA_PX)]
        f = np.clip(1 + 0.35 * smooth_field(rng, shape, sigma), 0.2, None)
        comps.append(level * f * atten)
    return np.asarray(comps, np.float32).reshape(len(levels), *shape)


def neuropil_temporal(rng: np.random.Generator, n_comp: int, T: int, fr: float,
                      population: np.ndarray) -> np.ndarray:
    """Temporal components of the neuropil, mean about 1, always positive.

    The first is slow drift (seconds); the others follow the smoothed population
    activity, as out-of-focus neurites do, plus slow drift.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_comp, T : int
    fr : float
    population : ndarray (T,)
        Mean calcium of the simulated neurons.

    Returns
    -------
    ndarray (n_comp, T) float32
    """
    pop = ndimage.gaussian_filter1d(np.asarray(population, float), 0.5 * fr)
    pop = (pop - pop.mean()) / max(pop.std(), 1e-12)
    out = np.empty((n_comp, T))
    for j in range(n_comp):
        drift = smooth_noise_1d(rng, T, 4.0 * fr)
        if j == 0:
            out[j] = 1 + 0.12 * drift
        else:
            out[j] = 1 + 0.25 * pop + 0.08 * drift
    return np.clip(out, 0.3, None).astype(np.float32)
