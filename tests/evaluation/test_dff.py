"""dF/F from the model: known baselines are recovered, drifts removed."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose

from calcium_dask.evaluation.kernels.dff import detrend_df_f

T = 2000


def _model(rng, *, K=3, bg_level=100.0):
    """Disjoint disc-like footprints, a flat background and sparse transients."""
    N = 30
    A = np.zeros((N, K))
    for k in range(K):
        A[10 * k : 10 * k + 6, k] = rng.uniform(0.5, 2.0, 6)
    b = np.full((N, 1), bg_level)
    f = np.ones((1, T))
    spikes = (rng.random((K, T)) < 0.005).astype(float)
    kernel = np.exp(-np.arange(60) / 10.0)
    C = 30 * np.array([np.convolve(s, kernel)[:T] for s in spikes])
    return sp.csc_matrix(A), b, C, f


def _true_dff(A, b, C, f, c0=0.0, noise=0.0):
    """(F - F0) / F0 of the fluorescence seen through each unit-norm footprint."""
    A = A.toarray()
    nA = np.linalg.norm(A, axis=0)
    F = nA[:, None] * (C + c0 + noise) + (A / nA).T @ b @ f
    F0 = nA[:, None] * c0 + (A / nA).T @ b @ f
    return (F - F0) / F0


@pytest.mark.parametrize("flag_auto", [True, False])
@pytest.mark.parametrize("use_fast", [False, True])
def test_known_baseline(flag_auto, use_fast):
    rng = np.random.default_rng(0)
    A, b, C, f = _model(rng)
    YrA = rng.normal(0, 0.3, C.shape)
    c0 = 5.0  # baseline carried by C itself
    dff = detrend_df_f(A, b, C + c0, f, YrA, flag_auto=flag_auto, use_fast=use_fast,
                       quantileMin=30, frames_window=500)
    expected = _true_dff(A, b, C, f, c0=c0, noise=YrA)
    peaks = C > 10
    assert_allclose(dff[peaks], expected[peaks], rtol=0.05)
    assert np.abs(dff - expected).max() < 0.01  # the baseline within 1 % of F0


def test_slow_drift_is_removed():
    rng = np.random.default_rng(1)
    A, b, C, f = _model(rng)
    t = np.arange(T)
    drift = 15 + 10 * np.sin(2 * np.pi * t / T)
    dff = detrend_df_f(A, b, C + drift, f, flag_auto=False, quantileMin=8,
                       frames_window=200)
    flat = detrend_df_f(A, b, C + drift, f, flag_auto=False, quantileMin=8,
                        frames_window=None)  # one baseline: the drift stays
    quiet = C < 1e-3
    assert np.abs(np.median(dff[quiet])) < 0.03
    for k in range(len(C)):
        q = quiet[k]
        assert np.ptp(dff[k, q]) < 0.3 * np.ptp(flat[k, q])


def test_detrend_only_subtracts_without_dividing():
    rng = np.random.default_rng(2)
    A, b, C, f = _model(rng)
    c0 = 7.0
    out = detrend_df_f(A, b, C + c0, f, flag_auto=False, quantileMin=10, frames_window=None,
                       detrend_only=True)
    nA = np.linalg.norm(A.toarray(), axis=0)
    assert_allclose(out, nA[:, None] * C, atol=1e-9)  # quantile 10 of C + c0 is c0
    with pytest.warns(UserWarning, match="detrend"):
        out2 = detrend_df_f(A, None, C + c0, None, flag_auto=False, quantileMin=10,
                            frames_window=None)
    assert_allclose(out2, out)


def test_whole_trace_percentile_when_window_exceeds_movie():
    rng = np.random.default_rng(3)
    A, b, C, f = _model(rng)
    a = detrend_df_f(A, b, C, f, flag_auto=False, quantileMin=20, frames_window=None)
    c = detrend_df_f(A, b, C, f, flag_auto=False, quantileMin=20, frames_window=10 * T)
    assert_allclose(a, c)
    assert_allclose(a, _true_dff(A, b, C, f), atol=1e-12)  # C rests at 0 > 20 % of the time


def test_window_ends_and_empty_components():
    rng = np.random.default_rng(4)
    A, b, C, f = _model(rng)
    A = sp.csc_matrix(np.column_stack([A.toarray(), np.zeros(A.shape[0])]))
    C = np.vstack([C + 3.0, np.ones(T)])
    out = detrend_df_f(A, b, C, f, flag_auto=False, quantileMin=8, frames_window=301)
    assert np.isfinite(out).all()
    assert_allclose(out[-1], 0.0)
    quiet = C[:-1] < 3.0 + 1e-3
    assert np.abs(out[:-1][quiet]).max() < 1e-9  # baseline exact also near both ends
