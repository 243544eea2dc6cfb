"""Tests of OASIS and of the noise-constrained deconvolution (constrained_foopsi)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose

from calcium_dask.cnmf.kernels.deconvolution import FoopsiResult, constrained_foopsi
from calcium_dask.cnmf.kernels.noise import ar_from_time_constants
from calcium_dask.cnmf.kernels.oasis import ar_roots, oasis_ar1, oasis_ar2

GCAMP6F = ar_from_time_constants(0.05, 0.4, 30.0)  # rise 50 ms, decay 400 ms at 30 Hz


@pytest.fixture(scope="module")
def reference():
    """The GPL reference implementation (oasis-deconv, a test dependency only): the tests
    that compare against it skip without it; all the others run."""
    return pytest.importorskip("oasis.oasis_methods")


def simulate(g, T, *, rate=0.03, sigma=0.2, baseline=1.0, seed=0):
    """Trace, true calcium and true spikes: Poisson spikes through the AR kernel."""
    rng = np.random.default_rng(seed)
    s = rng.poisson(rate, T).astype(float)
    c = scipy.signal.lfilter([1.0], np.r_[1.0, -np.asarray(g)], s)
    return baseline + c + sigma * rng.standard_normal(T), c, s


def kernel_matrix(g, T):
    """``c = K s``; column 0 is the initial condition decaying with the larger root."""
    impulse = np.zeros(T)
    impulse[0] = 1.0
    response = scipy.signal.lfilter([1.0], np.r_[1.0, -np.asarray(g)], impulse)
    K = scipy.linalg.toeplitz(response, np.zeros(T))
    K[:, 0] = ar_roots(*np.r_[g, 0.0][:2])[0] ** np.arange(T)
    return K


@pytest.mark.parametrize("g", [0.0, 0.5, 0.9, 0.97])
@pytest.mark.parametrize("seed", [0, 1])
def test_ar1_without_penalty_is_nnls(g, seed):
    y, _, _ = simulate([g], 60, rate=0.1, baseline=-0.1, seed=seed)
    s_nnls, _ = scipy.optimize.nnls(kernel_matrix([g], 60), y)
    c, s = oasis_ar1(y, g)
    assert_allclose(c, kernel_matrix([g], 60) @ s_nnls, atol=1e-9)
    assert_allclose(s[1:], s_nnls[1:], atol=1e-9)


@pytest.mark.parametrize("lam", [0.3, 2.0])
def test_ar1_penalized_meets_kkt(lam):
    # optimality of min 1/2|y - K s|^2 + lam sum(s), s >= 0
    y, _, _ = simulate([0.9], 200, seed=2)
    K = kernel_matrix([0.9], 200)
    c, s = oasis_ar1(y, 0.9, lam=lam)
    s_full = np.r_[c[0], s[1:]]
    grad = K.T @ (c - y) + lam
    assert_allclose(K @ s_full, c, atol=1e-10)
    assert np.all(grad > -1e-8)
    assert_allclose(grad[s_full > 1e-10], 0, atol=1e-8)


def test_no_dynamics_is_soft_threshold():
    y = np.random.default_rng(3).normal(size=100)
    c, _ = oasis_ar1(y, 0.0, lam=0.4)
    assert_allclose(c, np.maximum(y - 0.4, 0), atol=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("smin", [0.0, 0.3])
def test_ar1_matches_reference(lam, smin, reference):
    y, _, _ = simulate([0.95], 3000, baseline=0.0, seed=4)
    c, s = oasis_ar1(y.astype(np.float32), 0.95, lam=lam, smin=smin)
    c_ref, s_ref = reference.oasisAR1(y.astype(np.float32).astype(float), 0.95, lam=lam, s_min=smin)
    assert_allclose(c, c_ref, rtol=1e-9, atol=1e-12)
    assert_allclose(s[1:], s_ref[1:], atol=1e-9)


@pytest.mark.parametrize("lam", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("smin", [0.0, 0.3])
def test_ar2_matches_reference(lam, smin, reference):
    y, _, _ = simulate(GCAMP6F, 3000, baseline=0.0, seed=5)
    c, s = oasis_ar2(y, *GCAMP6F, lam=lam, smin=smin)
    c_ref, s_ref = reference.oasisAR2(y, *GCAMP6F, lam=lam, s_min=smin)
    assert_allclose(c, c_ref, rtol=1e-9, atol=1e-12)
    assert_allclose(s[2:], s_ref[2:], atol=1e-9)
    assert np.all(s[s > 1e-9] >= smin - 1e-9)


def test_ar2_close_roots_take_the_direct_path(reference):
    g = [2 * 0.9, -0.81]  # double root: critically damped
    y, _, _ = simulate(g, 500, baseline=0.0, seed=6)
    c, _ = oasis_ar2(y, *g, lam=0.5)
    c_ref, _ = reference.oasisAR2(y, 0.9 + 0.9001, -0.9 * 0.9001, lam=0.5)
    assert_allclose(c, c_ref, atol=1e-2 * c_ref.max())


def test_ar2_greedy_is_near_nnls_optimum():
    y, _, _ = simulate(GCAMP6F, 80, rate=0.05, baseline=0.0, seed=7)
    _, rnorm = scipy.optimize.nnls(kernel_matrix(GCAMP6F, 80), y)
    c, s = oasis_ar2(y, *GCAMP6F)
    cost = np.sum((y - c) ** 2)
    assert rnorm**2 - 1e-9 <= cost <= 1.03 * rnorm**2
    assert np.all(c >= 0) and np.all(s >= 0)


@settings(max_examples=60, deadline=None)
@given(
    y=hnp.arrays(np.float64, st.integers(1, 150), elements=st.floats(-1e3, 1e3)),
    g=st.sampled_from([(0.0, 0.0), (0.9, 0.0), (0.5, 0.0), tuple(GCAMP6F), (1.8, -0.81)]),
    lam=st.floats(0, 10),
    smin=st.floats(0, 5),
)
def test_oasis_output_is_a_nonnegative_ar_trace(y, g, lam, smin):
    c, s = oasis_ar2(y, *g, lam=lam, smin=smin)
    d = ar_roots(*g)[0]
    assert np.all(np.isfinite(c)) and np.all(c >= 0) and np.all(s >= 0)
    # the calcium follows the AR recursion driven by s (initial state decaying with d)
    prev = np.r_[c[0] / d if d > 0 else 0.0, c[:-1]]  # c_{t-1}, with c_{-1} = c_0 / d
    prev2 = np.r_[0.0, prev[:-1]]  # c_{t-2}
    pred = g[0] * prev + g[1] * prev2
    scale = 1e-9 * (1 + np.abs(y).max())
    assert_allclose(c[1:], pred[1:] + s[1:], atol=scale)
    assert np.all((s[1:] < scale) | (s[1:] >= smin - scale))


def test_oasis_rejects_bad_input():
    with pytest.raises(ValueError):
        oasis_ar1(np.ones(10), 1.0)
    with pytest.raises(ValueError, match="complex"):
        oasis_ar2(np.ones(10), 0.5, -0.5)
    with pytest.raises(ValueError, match="NaN"):
        oasis_ar1(np.array([1.0, np.nan]), 0.5)


def smooth(x, width=2.0):
    t = np.arange(-10, 11)
    return np.convolve(x, np.exp(-0.5 * (t / width) ** 2), mode="same")


@pytest.mark.parametrize("p", [1, 2])
def test_foopsi_recovers_simulated_gcamp6f(p):
    sigma, b_true = 0.25, 1.0
    y, c_true, s_true = simulate(GCAMP6F, 3000, sigma=sigma, baseline=b_true, seed=8)
    res = constrained_foopsi(y.astype(np.float32), p=p)
    assert isinstance(res, FoopsiResult)
    assert abs(res.sn / sigma - 1) < 0.1
    assert np.corrcoef(res.calcium(), c_true)[0, 1] > 0.95
    assert np.corrcoef(smooth(res.s), smooth(s_true))[0, 1] > (0.85 if p == 2 else 0.8)
    assert abs(res.b - b_true) < sigma
    assert_allclose(np.linalg.norm(y - res.model()), res.sn * np.sqrt(3000), rtol=1e-4)
    assert abs(np.mean(y - res.model())) < 1e-3 * sigma  # baseline at its optimum
    assert np.all(res.s >= 0) and np.all(res.c >= 0)
    # c is the response of the AR kernel to s, from rest
    assert_allclose(scipy.signal.lfilter([1.0], np.r_[1.0, -res.g], res.s), res.c, atol=1e-8)


def test_foopsi_constraint_is_tight_with_given_parameters(reference):
    y, _, _ = simulate(GCAMP6F, 2000, seed=9)
    res = constrained_foopsi(y, p=2, g=GCAMP6F, sn=0.2)
    assert_allclose(np.sum((y - res.model()) ** 2), 0.04 * 2000, rtol=1e-4)
    # the calcium is OASIS's solution at the returned penalty
    c_ref, _ = reference.oasisAR2(y - res.b, *GCAMP6F, lam=res.lam)
    assert_allclose(res.model() - res.b, c_ref, atol=1e-8)


def test_foopsi_ar1_matches_reference_with_fixed_baseline(reference):
    y, _, _ = simulate([0.95], 3000, sigma=0.3, seed=10)
    res = constrained_foopsi(y, p=1, g=[0.95], sn=0.3, b=1.0)
    c_ref, _, _, _, lam_ref = reference.constrained_oasisAR1(y - 1.0, 0.95, 0.3)
    assert res.b == 1.0
    assert res.lam == pytest.approx(lam_ref, rel=1e-3)
    assert_allclose(res.model() - 1.0, c_ref, atol=1e-3 * c_ref.max())


def test_foopsi_ar1_matches_reference_with_estimated_baseline(reference):
    y, _, _ = simulate([0.92], 3000, sigma=0.2, baseline=2.0, seed=11)
    res = constrained_foopsi(y, p=1, g=[0.92], sn=0.2)
    c_ref, _, b_ref, _, _ = reference.constrained_oasisAR1(
        y, 0.92, 0.2, optimize_b=True, max_iter=50
    )
    assert res.b == pytest.approx(b_ref, abs=1e-3)
    assert_allclose(res.model() - res.b, c_ref, atol=1e-2 * c_ref.max())


def test_foopsi_initial_calcium_is_split_off():
    T, d = 600, 0.95
    y, c_true, _ = simulate([d], T, rate=0.01, seed=12)
    y += 5.0 * d ** np.arange(T)  # activity before the recording
    res = constrained_foopsi(y, p=1, g=[d], sn=0.2)
    assert res.c1 == pytest.approx(5.0, abs=0.5)
    assert np.corrcoef(res.c, c_true)[0, 1] > 0.95
    assert res.s[0] == 0
    assert_allclose(res.calcium(), res.c + res.c1 * d ** np.arange(T), atol=1e-12)


def test_foopsi_without_dynamics_soft_thresholds():
    y = np.r_[np.zeros(200), 3.0, np.zeros(200)] + 0.1 * np.random.default_rng(13).normal(size=401)
    res = constrained_foopsi(y, p=0, sn=0.1)
    assert res.g.shape == (0,) and res.c1 == 0
    assert_allclose(res.c, np.maximum(y - res.b - res.lam, 0), atol=1e-12)
    assert_allclose(res.s, res.c)
    assert res.c[200] > 2.5


def test_foopsi_minimal_spike_size():
    y, _, _ = simulate([0.9], 1000, sigma=0.2, seed=14)
    res = constrained_foopsi(y, p=1, g=[0.9], sn=0.2, s_min=0.5)
    assert np.all(res.s[res.s > 1e-9] >= 0.5 - 1e-9)
    res_neg = constrained_foopsi(y, p=1, g=[0.9], sn=0.2, s_min=-3)
    floor = 3 * 0.2 * np.sqrt(1 - 0.9)
    assert np.all(res_neg.s[res_neg.s > 1e-9] >= floor - 1e-9)


@pytest.mark.parametrize(("g0", "n_events"), [(0.85, 5), (0.98, True)])  # True: 5 events
def test_foopsi_optimize_g_finds_the_decay(g0, n_events):
    y, _, _ = simulate([0.95], 3000, rate=0.01, sigma=0.1, seed=15)
    res = constrained_foopsi(y, p=1, g=[g0], sn=0.1, optimize_g=n_events)
    assert abs(res.g[0] - 0.95) < 0.01


def test_foopsi_optimize_g_keeps_the_rise_of_ar2():
    y, _, _ = simulate(GCAMP6F, 3000, rate=0.01, sigma=0.1, seed=16)
    start = ar_from_time_constants(0.05, 0.3, 30.0)  # decay too fast
    res = constrained_foopsi(y, p=2, g=start, sn=0.1, optimize_g=5)
    d_true, r_true = ar_roots(*GCAMP6F)
    assert abs(res.d - d_true) < 0.005
    assert ar_roots(*res.g)[1] == pytest.approx(ar_roots(*start)[1], rel=1e-9)


@pytest.mark.parametrize(
    "y",
    [np.full(300, 3.0), np.zeros(300), np.array([2.0]), np.array([1.0, 2.0]), np.arange(7.0)],
    ids=["constant", "zeros", "len1", "len2", "len7"],
)
@pytest.mark.parametrize("p", [0, 1, 2])
def test_foopsi_degenerate_traces(y, p):
    res = constrained_foopsi(y, p=p)
    assert np.all(np.isfinite(res.c)) and np.all(np.isfinite(res.s))
    assert np.all(res.c >= 0) and np.all(res.s >= 0) and np.isfinite(res.b)
    if np.ptp(y) == 0:
        assert res.b == pytest.approx(y[0]) and np.all(res.c == 0)


def test_foopsi_negative_offset():
    y, c_true, _ = simulate(GCAMP6F, 2000, baseline=-50.0, seed=16)
    res = constrained_foopsi(y, p=2, bas_nonneg=False)
    assert abs(res.b + 50.0) < 0.2
    assert np.corrcoef(res.c, c_true)[0, 1] > 0.95
    clipped = constrained_foopsi(y, p=2, bas_nonneg=True)  # baseline held at 0: nothing fits
    assert clipped.b == 0 and np.all(np.isfinite(clipped.c))


def test_foopsi_rejects_bad_input():
    with pytest.raises(ValueError):
        constrained_foopsi(np.array([1.0, np.inf]))
    with pytest.raises(ValueError):
        constrained_foopsi(np.ones(10), p=3)
    with pytest.raises(ValueError):
        constrained_foopsi(np.ones(10), p=2, g=[0.9])


@settings(max_examples=60, deadline=None)
@given(
    y=hnp.arrays(np.float64, st.integers(1, 120), elements=st.floats(-1e4, 1e4)),
    p=st.sampled_from([0, 1, 2]),
    nonneg=st.booleans(),
)
def test_foopsi_outputs_finite_and_nonnegative(y, p, nonneg):
    res = constrained_foopsi(y, p=p, bas_nonneg=nonneg)
    assert np.all(np.isfinite(res.c)) and np.all(np.isfinite(res.s))
    assert np.all(res.c >= 0) and np.all(res.s >= 0)
    assert np.isfinite(res.b) and np.isfinite(res.lam) and res.c1 >= 0
    assert not nonneg or res.b >= 0
    # never worse than the noise allows unless even lam = 0 cannot fit
    assert np.sum((y - res.model()) ** 2) <= max(
        (1 + 1e-4) * res.sn**2 * y.size, np.sum((y - np.mean(y)) ** 2) + 1e-9
    ) or (nonneg and res.b == 0)


def test_nonnegative_baseline_goes_to_its_bound_when_the_mean_is_negative():
    # found by hypothesis: the baseline bracket was narrower than the tolerance of a
    # very noisy trace, and the solver kept its starting percentile instead of b = 0
    y = np.array([-3874.0, -1.0] + [1.0] * 13)
    res = constrained_foopsi(y, p=0, bas_nonneg=True)
    assert res.b == 0.0
