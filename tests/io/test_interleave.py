"""The de-interleaving arithmetic (numpy kernels) against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from calcium_dask.io.kernels.interleave import (canvas_positions, channel_pages, mroi_rows, plane_slots, read_runs,
                                                unpack_samples)


def test_pages_of_one_plane_and_channel():
    # 3 planes (the last a flyback) x 2 channels: plane 1, channel 1 of volumes 2..4
    slots = plane_slots(2, 5, nplanes=3, plane=1)
    assert slots.tolist() == [7, 10, 13]
    assert channel_pages(slots, nchannels=2, channel=1).tolist() == [15, 21, 27]
    with pytest.raises(ValueError):
        plane_slots(0, 1, nplanes=3, plane=3)
    with pytest.raises(ValueError):
        channel_pages(slots, nchannels=2, channel=2)


def test_read_runs_cover_every_index_once_and_bound_the_waste():
    rng = np.random.default_rng(1)
    for _ in range(50):
        idx = np.unique(rng.integers(0, 200, rng.integers(1, 40)))
        runs = read_runs(idx, max_waste=2.0)
        covered = np.concatenate([np.arange(a, b) for a, b in runs])
        assert np.all(np.isin(idx, covered)) and len(np.unique(covered)) == len(covered)
        for a, b in runs:
            inside = np.count_nonzero((idx >= a) & (idx < b))
            assert b - a <= 2.0 * inside and a in idx and b - 1 in idx
    assert read_runs(np.array([0, 1, 2, 3])) == [(0, 4)]
    assert read_runs(np.array([0, 2, 4]), max_waste=0.5) == [(0, 1), (2, 3), (4, 5)]
    with pytest.raises(ValueError):
        read_runs(np.array([3, 1]))


def test_mesoscope_rows_exclude_the_fly_to_lines():
    assert mroi_rows([100, 100, 50], 274) == [(0, 100), (112, 212), (224, 274)]
    assert mroi_rows([64], 64) == [(0, 64)]
    for heights, page in (([100, 100], 199), ([100, 100, 50], 251), ([64], 70)):
        with pytest.raises(ValueError):
            mroi_rows(heights, page)


def test_canvas_positions_in_pixels_from_scan_angles():
    # two 2x1-degree ROIs side by side at 50 pixels per degree, a third below the first
    centers = np.array([[1.0, 0.5], [3.0, 0.5], [1.0, 1.5]])
    sizes = np.array([[2.0, 1.0]] * 3)
    pixels = np.array([[100, 50]] * 3)
    np.testing.assert_allclose(canvas_positions(centers, sizes, pixels), [[0, 0], [0, 100], [50, 0]])


def test_pixel_interleaved_channels_unpack_and_invert():
    frames = np.arange(2 * 3 * 4 * 2, dtype=np.uint16).reshape(2, 3, 4 * 2)  # 2 channels per pixel
    ch1 = unpack_samples(frames, nchannels=2, channel=1)
    np.testing.assert_array_equal(ch1, frames[..., 1::2])
    np.testing.assert_array_equal(unpack_samples(frames, nchannels=2, channel=0, invert=True),
                                  65535 - frames[..., 0::2])
    with pytest.raises(ValueError):
        unpack_samples(frames[..., :7], nchannels=2, channel=0)
