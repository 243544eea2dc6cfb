"""Scoring against ground truth: the corrected mean image against the motion-free mean."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from calcium_dask.datasets.scoring import crispness, score_mean_image


def _cells(seed: int = 0, shape=(96, 96)) -> np.ndarray:
    """Bright round blobs of radius ~5 px on a smooth background."""
    rng = np.random.default_rng(seed)
    img = np.zeros(shape)
    ys, xs = rng.integers(8, shape[0] - 8, 40), rng.integers(8, shape[1] - 8, 40)
    img[ys, xs] = rng.uniform(1, 3, 40)
    return ndimage.gaussian_filter(img, 2.5) * 50 + ndimage.gaussian_filter(rng.normal(size=shape), 8) + 10


def test_a_translated_mean_scores_perfectly_and_its_offset_is_found():
    clean = _cells()
    mean = ndimage.shift(clean, (0.7, -1.3), order=3, mode="nearest")
    r = score_mean_image(mean, clean)
    np.testing.assert_allclose(r["offset_yx"], [0.7, -1.3], atol=0.02)
    assert r["corr"] > 0.99999 and abs(r["crispness_norm"] - 1) < 0.01


def test_a_start_offset_reaches_a_translation_beyond_the_first_simplex():
    clean = _cells(1)
    mean = ndimage.shift(clean, (3.2, 2.6), order=3, mode="nearest")
    assert score_mean_image(mean, clean, offset=(3.0, 3.0))["corr"] > 0.99999


def test_blur_lowers_crispness_and_deformation_lowers_correlation():
    clean = _cells(2)
    blurred = score_mean_image(ndimage.gaussian_filter(clean, 1.0), clean)
    assert blurred["crispness_norm"] < 0.96  # 0.94: a 1 px blur of 2.5 px blobs
    # a smooth 0.3 px (rms) deformation: no translation undoes it
    yy, xx = np.mgrid[0:96, 0:96].astype(float)
    dy, dx = 0.42 * np.sin(2 * np.pi * xx / 96), 0.42 * np.cos(2 * np.pi * yy / 96)
    warped = ndimage.map_coordinates(clean, [yy - dy, xx - dx], order=3, mode="nearest")
    r = score_mean_image(warped, clean)
    assert 0.99 < r["corr"] < 0.999 and abs(r["crispness_norm"] - 1) < 0.02


def test_crispness_ignores_brightness_and_contrast():
    img = _cells(3)
    assert np.isclose(crispness(3 * img + 7), crispness(img))
    assert crispness(ndimage.gaussian_filter(img, 1.5)) < crispness(img)
