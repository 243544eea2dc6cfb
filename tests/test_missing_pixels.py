"""Missing pixels: filled from the nearest finite pixel of the same frame, or a clear error."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from calcium_dask.errors import MovieError
from calcium_dask.io.kernels.missing_pixels import fill_missing
from calcium_dask.movie_blocks import fill_missing_lazy


def test_finite_frames_are_returned_as_they_are():
    frames = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert fill_missing(frames) is frames
    ints = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    assert fill_missing(ints) is ints


def test_a_missing_pixel_takes_its_nearest_finite_neighbour():
    frames = np.zeros((3, 5, 5), np.float32)
    frames[1] = np.arange(25, dtype=np.float32).reshape(5, 5)
    frames[1, 0, 0] = np.nan  # nearest finite pixels: (0, 1)=1 and (1, 0)=5, both at distance 1
    frames[1, 2, 2] = np.inf
    frames[1, 4, 4] = -np.inf
    out = fill_missing(frames)
    assert np.isfinite(out).all()
    assert out[1, 0, 0] in (1.0, 5.0)
    assert out[1, 2, 2] in (7.0, 11.0, 13.0, 17.0)
    assert out[1, 4, 4] in (19.0, 23.0)
    untouched = np.isfinite(frames)
    np.testing.assert_array_equal(out[untouched], frames[untouched])
    assert np.isnan(frames[1, 0, 0]), "the input is not modified"


def test_an_entirely_missing_frame_takes_the_mean_of_the_others():
    frames = np.stack([np.full((4, 4), v, np.float32) for v in (2.0, np.nan, 4.0)])
    out = fill_missing(frames)
    np.testing.assert_array_equal(out[1], np.full((4, 4), 3.0, np.float32))
    np.testing.assert_array_equal(fill_missing(np.full((2, 3, 3), np.nan)), np.zeros((2, 3, 3)))


def test_without_check_nan_a_missing_pixel_is_an_error_naming_the_frame():
    frames = np.ones((10, 4, 4), np.float32)
    frames[7, 1, 1] = np.nan
    with pytest.raises(MovieError, match="frame 107"):
        fill_missing(frames, fill=False, t0=100)


def test_lazy_fill_names_frames_of_the_whole_movie():
    frames = np.ones((30, 4, 4), np.float32)
    frames[25, 0, 0] = np.nan
    lazy = da.from_array(frames, chunks=(10, 4, 4))
    assert np.isfinite(fill_missing_lazy(lazy).compute()).all()
    with pytest.raises(MovieError, match="frame 25"):
        fill_missing_lazy(lazy, check_nan=False).compute()
    with pytest.raises(MovieError, match="frame 25"):  # a slice of the movie, from frame 20
        fill_missing_lazy(lazy[20:], check_nan=False, first=20).compute()
