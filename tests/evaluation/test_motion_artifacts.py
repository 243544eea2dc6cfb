"""Residues of motion correction: traces that follow the displacement, in the filled border."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from calcium_dask.evaluation.kernels.motion_artifacts import border_weight, border_widths, motion_correlation

T = 600


def _shifts(rng):
    drift = np.cumsum(rng.normal(0, 0.3, (T, 2)), axis=0)
    return drift - drift.mean(0)


def test_a_trace_that_follows_the_displacement_correlates_and_activity_does_not():
    rng = np.random.default_rng(0)
    s = _shifts(rng)
    spikes = (rng.random(T) < 0.02).astype(float)
    activity = np.convolve(spikes, np.exp(-np.arange(40) / 10.0))[:T]
    traces = np.stack([3 * s[:, 0] + rng.normal(0, 0.5, T),  # the shift itself
                       np.abs(s[:, 1] - np.median(s[:, 1])) + rng.normal(0, 0.2, T),  # its size
                       activity + rng.normal(0, 0.1, T),  # a neuron
                       np.ones(T)])  # constant
    r = motion_correlation(traces, s)
    assert r[0] > 0.9 and r[1] > 0.8 and r[2] < 0.3 and r[3] == 0
    with pytest.raises(ValueError, match="shifts must be"):
        motion_correlation(traces, s[:-1])


def test_border_widths_follow_the_applied_shifts():
    s = np.array([[2.2, -1.0], [-3.5, 0.4], [0.0, 0.0]])
    # +dy leaves the top rows empty, -dy the bottom ones; likewise for x
    assert border_widths(s) == (3, 4, 1, 1)
    assert border_widths(np.zeros((5, 2))) == (0, 0, 0, 0)
    assert border_widths(np.zeros((2, 3, 3, 2)) + [1.5, -0.5]) == (2, 0, 0, 1)  # patch shifts


def test_border_weight_is_the_share_of_a_footprint_in_the_border():
    H, W = 20, 30
    imgs = np.zeros((3, H, W))
    imgs[0, 0:2, 10:14] = 1  # inside the top border
    imgs[1, 8:12, 10:14] = 1  # in the middle
    imgs[2, 2:6, 10:12] = 1  # half in the top border (rows 2-3 of 2-5)
    A = sp.csc_matrix(imgs.reshape(3, -1).T)
    w = border_weight(A, (H, W), (4, 0, 0, 0))
    np.testing.assert_allclose(w, [1.0, 0.0, 0.5])
    np.testing.assert_allclose(border_weight(A, (H, W), (0, 0, 0, 0)), 0.0)


def test_a_residue_needs_both_the_correlation_and_the_border():
    from calcium_dask.evaluation.kernels.motion_artifacts import MOSTLY_IN_BORDER, is_motion_residue

    corr = np.array([0.9, 0.9, 0.3, np.nan, 0.9])
    border = np.array([MOSTLY_IN_BORDER, MOSTLY_IN_BORDER - 0.01, 0.9, 0.9, np.nan])
    assert is_motion_residue(corr, border, 0.6).tolist() == [True, False, False, False, False]
    assert not is_motion_residue(corr, border, 0.95).any()
