"""Static autofluorescence (with vessels), the neuropil background, out-of-focus neurons and
the sensor's vignetting."""

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


def sensor_gain(shape: tuple[int, int], depth: float) -> np.ndarray:
    """Vignetting of the optics, fixed to the sensor: ``1 - depth * r**2`` (float32).

    ``r`` is the distance to the frame's centre over half its diagonal (1 at the corners).
    """
    H, W = shape
    yy, xx = np.mgrid[0:H, 0:W]
    r2 = ((yy - (H - 1) / 2) ** 2 + (xx - (W - 1) / 2) ** 2) / (0.25 * ((H - 1) ** 2 + (W - 1) ** 2))
    return (1.0 - float(depth) * r2).astype(np.float32)


def support_box(image: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of the non-zero pixels of a 2-D image (empty slices if none)."""
    rows, cols = np.flatnonzero(image.any(1)), np.flatnonzero(image.any(0))
    if not rows.size:
        return slice(0, 0), slice(0, 0)
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def blurred_neurons(rng: np.random.Generator, shape: tuple[int, int], n: int,
                    sigma_range: tuple[float, float], level: float,
                    atten: np.ndarray, crop: tuple[slice, slice] | None = None) -> np.ndarray:
    """Out-of-focus neurons: Gaussian blobs of light, photons at rest, zero beyond 3 SD.

    Parameters
    ----------
    shape : (int, int)
        Shape of the world the centres are uniform over.
    n : int
    sigma_range : (float, float)
        Range of the blobs' SD, pixels (uniform).
    level : float
        Median resting light at the centre of a blob of the smallest SD (log-normal, SD 0.5
        in log units); a wider blob spreads the same light, so its centre is dimmer by the
        square of the ratio of the SDs (a neuron's light, out of focus).
    atten : ndarray
        Vessel transmission on the world (vessels shade them too).
    crop : (slice, slice), optional
        The part of the world drawn (the canvas); default all of it.

    Returns
    -------
    ndarray (n, Hc, Wc) float32
    """
    crop = crop or (slice(0, shape[0]), slice(0, shape[1]))
    y0, x0 = crop[0].start, crop[1].start
    Hc, Wc = crop[0].stop - y0, crop[1].stop - x0
    out = np.zeros((n, Hc, Wc), np.float32)
    centres = rng.uniform((0, 0), shape, (n, 2)) - (y0, x0)  # canvas coordinates
    sigmas = rng.uniform(*sigma_range, n)
    levels = level * np.exp(rng.normal(0.0, 0.5, n)) * (sigma_range[0] / sigmas) ** 2
    for j, ((cy, cx), sig, lev) in enumerate(zip(centres, sigmas, levels)):
        r = int(np.ceil(3 * sig))
        ys = slice(min(Hc, max(0, int(cy) - r)), min(Hc, max(0, int(cy) + r + 1)))
        xs = slice(min(Wc, max(0, int(cx) - r)), min(Wc, max(0, int(cx) + r + 1)))
        if ys.start == ys.stop or xs.start == xs.stop:
            continue  # wholly outside the canvas
        yy, xx = np.mgrid[ys, xs]
        d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / sig**2
        out[j][ys, xs] = np.where(d2 <= 9.0, lev * np.exp(-0.5 * d2), 0.0) * atten[y0 + ys.start:y0 + ys.stop,
                                                                                  x0 + xs.start:x0 + xs.stop]
    return out


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
