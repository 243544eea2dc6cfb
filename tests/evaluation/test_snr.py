"""Trace SNR by event exceptionality."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import special, stats

from calcium_dask.evaluation.kernels._mode import half_sample_mode
from calcium_dask.evaluation.kernels.snr import (event_exceptionality, fitness_to_snr,
                                       frames_per_event, remove_trace_baseline, trace_snr)

FR, DECAY = 30.0, 0.4


def _transients(rng, K, T, amp, rate_hz=0.3, tau_s=0.4):
    spikes = (rng.random((K, T)) < rate_hz / FR).astype(float)
    kernel = np.exp(-np.arange(int(5 * tau_s * FR)) / (tau_s * FR))
    calcium = np.array([np.convolve(s, kernel)[:T] for s in spikes])
    return amp * calcium


def test_pure_noise_has_low_snr():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (100, 3000)) + 50.0
    snr = trace_snr(noise, fr=FR, decay_time=DECAY)
    assert snr.max() < 2
    assert np.median(snr) < 1


def test_clear_transients_have_high_snr():
    rng = np.random.default_rng(1)
    C = _transients(rng, 20, 3000, amp=25.0)
    YrA = rng.normal(0, 1, C.shape)
    snr = trace_snr(C, YrA, fr=FR, decay_time=DECAY)
    assert np.all(snr > 5)


def test_snr_grows_with_amplitude():
    rng = np.random.default_rng(2)
    shape = _transients(rng, 30, 2000, amp=1.0)
    noise = rng.normal(0, 1, shape.shape)
    amps = [0.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    snr = np.array([trace_snr(a * shape, noise, fr=FR, decay_time=DECAY) for a in amps])
    assert np.all(np.diff(snr.mean(axis=1)) > 0)
    assert np.mean(np.diff(snr, axis=0) >= -1e-9) > 0.95  # per trace, nearly always


def test_event_exceptionality_semantics():
    rng = np.random.default_rng(3)
    x = rng.normal(10.0, 2.0, (4, 4000))
    x[1, 1000:1010] += 30  # one big event
    fitness, erfc, sd_r, md = event_exceptionality(x, N=5)
    assert erfc.shape == x.shape
    assert_allclose(md, 10.0, atol=0.8)
    assert_allclose(sd_r, 2.0, rtol=0.15)  # from the below-mode half only
    assert fitness[1] < fitness[[0, 2, 3]].min() - 20
    assert np.argmin(erfc[1]) in range(1004, 1010)
    # erfc is the running sum of N log-tail probabilities (partial sums at the start)
    z = (x[0] - md[0]) / (3.0 * sd_r[0])
    lp = special.log_ndtr(-z)
    assert_allclose(erfc[0, 4], lp[:5].sum())
    assert_allclose(erfc[0, 100], lp[96:101].sum())
    assert_allclose(erfc[0, 2], lp[:3].sum())
    # robust noise from the median of the below-mode deviations
    sd_rob = event_exceptionality(x, N=5, robust_std=True)[2]
    for k in range(4):
        below = md[k] - x[k][x[k] < md[k]]
        assert_allclose(sd_rob[k], np.median(below) / 0.6744897501960817)
        assert_allclose(sd_r[k], np.sqrt(np.mean(below**2)))
    assert_allclose(sd_rob, 2.0, rtol=0.25)
    with pytest.raises(ValueError):
        event_exceptionality(x, N=0)


def test_constant_trace_is_not_exceptional():
    fitness, _, _, _ = event_exceptionality(np.ones((2, 100)), N=4)
    assert_allclose(fitness, 4 * np.log(0.5))
    assert_allclose(fitness_to_snr(fitness, 4), 0.0, atol=1e-12)


def test_fitness_to_snr_matches_ppf_and_does_not_overflow():
    f = np.array([-1.0, -30.0, -200.0])
    N = 12
    assert_allclose(fitness_to_snr(f, N), -stats.norm.ppf(np.exp(f / N)), rtol=1e-10)
    assert np.isfinite(fitness_to_snr(np.array([-1e6]), 3)).all()
    assert frames_per_event(30, 0.4) == 12 and frames_per_event(2, 0.1) == 1


def test_half_sample_mode():
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(3.0, 0.5, 3000), rng.exponential(20.0, 1000) + 3])
    assert abs(half_sample_mode(x[None])[0] - 3.0) < 0.2
    assert_allclose(half_sample_mode(np.array([[1.0, 2.0, 2.1, 7.0]])), 2.05)
    assert_allclose(half_sample_mode(np.array([[5.0]])), 5.0)
    rows = rng.normal(size=(7, 501))
    single = [half_sample_mode(r[None])[0] for r in rows]
    assert_allclose(half_sample_mode(rows), single)


def test_baseline_removal_follows_drift():
    T = 8000
    t = np.arange(T) / T
    rng = np.random.default_rng(5)
    drift = 30 * t**2 - 10 * t
    x = drift + rng.normal(0, 1, T) + _transients(rng, 1, T, amp=10)[0]
    out = remove_trace_baseline(x[None])[0]
    err = out - (x - drift)  # what is left of the drift
    assert np.ptp(err[100:-100]) < 0.25 * np.ptp(drift)
    assert abs(np.median(err) - 1.4) < 0.7  # the 8th percentile of the noise is -1.4 SD


def test_snr_ranks_simulated_neurons():
    from .evaluate_sim import sim_movie

    m = sim_movie(seed=2, T=600, H=80, W=80, K=16)
    T = m.Y.shape[0]
    A = m.A.toarray()
    residual = m.Y.reshape(T, -1).T.astype(np.float64) - m.b @ m.f
    raw = np.linalg.solve(A.T @ A, A.T @ residual)  # raw traces: C + YrA
    snr = trace_snr(raw, fr=30.0, decay_time=0.4)
    assert stats.spearmanr(snr, m.snr).statistic > 0.7
    assert np.all(snr[m.snr > 5] > 2.5)  # bright neurons pass min_SNR
