"""Summary images from streamed partial sums equal the images computed on the whole movie."""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from calcium_dask.summary import summary_images
from calcium_dask.summary.kernels import combine, finalize, partial_sums


def brute_correlation(movie: np.ndarray) -> np.ndarray:
    """Mean correlation of each pixel with its 8 neighbours, the slow obvious way."""
    t, h, w = movie.shape
    z = movie - movie.mean(0)
    z /= np.where(z.std(0) > 0, z.std(0), np.inf)
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            rs = [np.mean(z[:, y, x] * z[:, yy, xx]) for yy in range(y - 1, y + 2) for xx in range(x - 1, x + 2)
                  if (yy, xx) != (y, x) and 0 <= yy < h and 0 <= xx < w]
            out[y, x] = np.mean(rs)
    return out


def test_streamed_equals_whole_movie():
    rng = np.random.default_rng(1)
    common = rng.normal(size=(120, 1, 1))
    movie = (1000 + 20 * rng.normal(size=(120, 13, 11)) + 30 * common).astype(np.float32)
    movie[:, 4:8, 3:6] += 50 * common  # a correlated blob
    parts = [partial_sums(movie[a:a + 25], offset=movie[0]) for a in range(0, 120, 25)]
    img = finalize(combine(parts), offset=movie[0])
    np.testing.assert_allclose(img["mean"], movie.mean(0), rtol=1e-5)
    np.testing.assert_allclose(img["max"], movie.max(0))
    np.testing.assert_allclose(img["std"], movie.astype(np.float64).std(0), rtol=1e-3)
    np.testing.assert_allclose(img["correlation"], brute_correlation(movie.astype(np.float64)), atol=2e-3)
    assert img["correlation"][5, 4] > 0.7 > img["correlation"][0, 10]


def test_summary_images_dask_any_chunking():
    rng = np.random.default_rng(2)
    movie = rng.poisson(50, size=(90, 16, 12)).astype(np.uint16)
    expected = None
    for chunks in ((90, 16, 12), (17, 16, 12), (30, 8, 6)):
        ds = summary_images(xr.DataArray(da.from_array(movie, chunks=chunks), dims=("frame", "y", "x")))
        if expected is None:
            expected = ds
            np.testing.assert_allclose(ds["mean"], movie.mean(0), rtol=1e-5)
        else:
            xr.testing.assert_allclose(ds, expected, rtol=1e-5)


def test_constant_pixels_have_zero_correlation_not_nan():
    movie = np.ones((10, 5, 5), np.float32)
    img = finalize(partial_sums(movie))
    assert np.all(img["correlation"] == 0) and np.all(img["std"] == 0)
