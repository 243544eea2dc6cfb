"""Duplicates: a fragment of an accepted cell that follows its trace is named; overlapping
cells that fire independently are not."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from calcium_dask.evaluation.kernels.duplicates import find_duplicates

H = W = 40
T = 500


def disk(cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    return np.where(d2 <= r * r, np.exp(-d2 / (2 * (r / 2) ** 2)), 0.0)


def spikes(rng: np.random.Generator) -> np.ndarray:
    s = (rng.random(T) < 0.03).astype(float)
    return np.convolve(s, np.exp(-np.arange(30) / 8.0))[:T]


def scene():
    rng = np.random.default_rng(3)
    cell, other = spikes(rng), spikes(rng)
    big = disk(12, 12, 6)
    fragment = big * (np.mgrid[:H, :W][0] >= 13)  # the lower part of the same cell
    small = disk(28, 27, 4)
    partner = disk(28, 29, 6)  # a cell under most of ``small`` but firing on its own
    fps = [big, fragment, small, partner]
    C = np.stack([cell, 0.6 * cell + 0.05 * rng.standard_normal(T), other,
                  spikes(rng)])
    A = sp.csc_matrix(np.stack([f.ravel() for f in fps], 1))
    return A, C


def test_a_fragment_that_follows_its_cell_is_its_duplicate():
    A, C = scene()
    snr = np.array([9.0, 3.0, 5.0, 6.0])
    dup = find_duplicates(A, C, snr, np.ones(4, bool))
    np.testing.assert_array_equal(dup, [-1, 0, -1, -1])


def test_independent_overlapping_cells_and_weaker_containers_are_kept():
    A, C = scene()
    # the partner covers most of the small cell's mask, so only the trace tells them apart
    inside = (A[:, 2].toarray() > 0.2 * A[:, 2].max()) & (A[:, 3].toarray() > 0.2 * A[:, 3].max())
    assert inside.sum() / (A[:, 2].toarray() > 0.2 * A[:, 2].max()).sum() > 0.6
    # a fragment stronger than the cell around it is not dropped for it
    dup = find_duplicates(A, C, np.array([2.0, 3.0, 5.0, 6.0]), np.ones(4, bool))
    np.testing.assert_array_equal(dup, [-1, -1, -1, -1])
    # nor in favour of a rejected component
    dup = find_duplicates(A, C, np.array([9.0, 3.0, 5.0, 6.0]), np.array([False, True, True, True]))
    np.testing.assert_array_equal(dup, [-1, -1, -1, -1])


def test_thresholds_switch_it_off():
    A, C = scene()
    snr, every = np.array([9.0, 3.0, 5.0, 6.0]), np.ones(4, bool)
    assert (find_duplicates(A, C, snr, every, thresh_subset=1.01) == -1).all()
    assert (find_duplicates(A, C, snr, every, corr_thr=0.999) == -1).all()
    # with no trace test the independent small cell falls to its partner
    assert find_duplicates(A, C, snr, every, corr_thr=-1.0)[2] == 3


def test_shapes_are_checked():
    A, C = scene()
    with pytest.raises(ValueError, match="4 components"):
        find_duplicates(A, C[:3], np.ones(4), np.ones(4, bool))
    assert (find_duplicates(A, C, np.ones(4), np.zeros(4, bool)) == -1).all()
