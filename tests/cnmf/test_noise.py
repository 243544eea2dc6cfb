"""Tests of the PSD noise estimate and the AR(p) time-constant estimate."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose

from calcium_dask.cnmf.kernels.noise import (
    ar_from_time_constants,
    estimate_ar,
    noise_movie,
    noise_psd,
    time_constants_from_ar,
)

GCAMP6F = ar_from_time_constants(0.05, 0.4, 30.0)  # rise 50 ms, decay 400 ms at 30 Hz


def calcium(g, T, rate, rng):
    """Poisson spikes through the AR(p) kernel ``g``."""
    s = rng.poisson(rate, T).astype(float)
    return scipy.signal.lfilter([1.0], np.r_[1.0, -np.asarray(g)], s)


@pytest.mark.parametrize("method", ["mean", "median", "logmexp"])
def test_white_noise_sigma_recovered(method):
    rng = np.random.default_rng(0)
    sigma = 2.5
    Y = 100.0 + sigma * rng.standard_normal((64, 3000))
    sn = noise_psd(Y, noise_method=method)
    assert sn.shape == (64,)
    assert abs(np.mean(sn) / sigma - 1) < 0.02  # unbiased on average
    assert np.all(np.abs(sn / sigma - 1) < 0.12)  # and each trace close


@pytest.mark.parametrize(
    ("method", "factor"),
    [("mean", 1.0), ("median", np.sqrt(np.log(2))), ("logmexp", np.exp(-0.5772156649 / 2))],
)
def test_caiman_bias_reproduced_when_not_unbiased(method, factor):
    # CaImAn's median/log averages of exponential PSD ordinates are biased low
    rng = np.random.default_rng(1)
    Y = rng.standard_normal((64, 3000))
    sn = noise_psd(Y, noise_method=method, unbiased=False)
    assert abs(np.mean(sn) / factor - 1) < 0.02


def test_matches_periodogram_formula():
    rng = np.random.default_rng(2)
    y = rng.standard_normal(1000).astype(np.float32)
    X = np.fft.rfft(y.astype(np.float64))
    f = np.arange(X.size) / 1000
    band = (f > 0.25) & (f <= 0.5)
    psd = 2 * np.abs(X[band]) ** 2 / 1000
    y64 = y.astype(np.float64)
    assert_allclose(noise_psd(y64), np.sqrt(np.mean(psd / 2)), rtol=1e-12)
    # float32 input is transformed in single precision
    assert_allclose(noise_psd(y), np.sqrt(np.mean(psd / 2)), rtol=1e-6)
    assert_allclose(
        noise_psd(y64, noise_method="median", unbiased=False), np.sqrt(np.median(psd / 2)), rtol=1e-12
    )
    assert isinstance(noise_psd(y), float)


def test_long_traces_use_three_blocks():
    rng = np.random.default_rng(3)
    Y = rng.standard_normal((3, 10000))
    blocks = np.concatenate([Y[:, 1:1025], Y[:, 5000 - 512 : 5000 + 512], Y[:, -1024:]], axis=1)
    assert_allclose(noise_psd(Y), noise_psd(blocks, max_num_samples_fft=10**9), rtol=1e-12)
    # a burst of noise outside the three blocks is not seen
    Y[:, 2000:3000] *= 10
    assert_allclose(noise_psd(Y), noise_psd(blocks, max_num_samples_fft=10**9), rtol=1e-12)


def test_ar1_calcium_plus_noise_matches_spectrum():
    # expected: white-noise variance plus the calcium PSD averaged over the band
    rng = np.random.default_rng(4)
    g, rate, sigma, T = 0.95, 0.05, 0.3, 3000
    Y = np.stack([calcium([g], T, rate, rng) + sigma * rng.standard_normal(T) for _ in range(40)])
    w = 2 * np.pi * np.arange(T // 2 + 1)[(np.arange(T // 2 + 1) / T > 0.25)] / T
    calcium_psd = rate / np.abs(1 - g * np.exp(-1j * w)) ** 2
    expected = np.sqrt(sigma**2 + calcium_psd.mean())
    assert abs(np.mean(noise_psd(Y)) / expected - 1) < 0.02
    assert abs(np.mean(noise_psd(Y)) / sigma - 1) < 0.1  # mostly the noise


def test_noise_movie_is_per_pixel():
    rng = np.random.default_rng(5)
    sigma = rng.uniform(0.5, 3.0, size=(7, 9))
    movie = (10 + sigma * rng.standard_normal((2000, 7, 9))).astype(np.float32)
    sn = noise_movie(movie)
    assert sn.shape == (7, 9)
    assert_allclose(sn, noise_psd(movie.reshape(2000, -1).T).reshape(7, 9), rtol=1e-12)
    assert np.all(np.abs(sn / sigma - 1) < 0.1)


def test_noise_errors():
    with pytest.raises(ValueError, match="noise_method"):
        noise_psd(np.ones(100), noise_method="max")
    with pytest.raises(ValueError, match="2 time points"):
        noise_psd(np.ones(1))


SLOW_GCAMP = ar_from_time_constants(0.1, 1.0, 30.0)


@pytest.mark.parametrize("g", [[0.95], [0.8], list(GCAMP6F), list(SLOW_GCAMP)])
def test_ar_coefficients_recovered(g):
    rng = np.random.default_rng(6)
    T, sigma = 20000, 0.2
    estimates = []
    for _ in range(3):
        y = 2.0 + calcium(g, T, 0.05, rng) + sigma * rng.standard_normal(T)
        estimates.append(estimate_ar(y, p=len(g), sn=sigma, fudge_factor=1.0))
    assert_allclose(np.mean(estimates, axis=0), g, atol=0.03)


def test_ar_with_estimated_noise_on_slow_kernel():
    rng = np.random.default_rng(7)
    y = calcium([0.95], 20000, 0.05, rng) + 0.3 * rng.standard_normal(20000)
    assert_allclose(estimate_ar(y, p=1, fudge_factor=1.0), [0.95], atol=0.03)


def test_fudge_factor_shrinks_roots():
    rng = np.random.default_rng(8)
    y = calcium(GCAMP6F, 5000, 0.05, rng) + 0.2 * rng.standard_normal(5000)
    g1 = estimate_ar(y, p=2, sn=0.2, fudge_factor=1.0)
    g9 = estimate_ar(y, p=2, sn=0.2, fudge_factor=0.9)
    r1 = np.sort(np.roots(np.r_[1, -g1]))
    assert_allclose(np.sort(np.roots(np.r_[1, -g9])), 0.9 * r1, rtol=1e-10)


def test_ar_order_zero_and_errors():
    assert estimate_ar(np.random.default_rng(0).random(50), p=0).shape == (0,)
    with pytest.raises(ValueError, match="p must be"):
        estimate_ar(np.ones(50), p=3)
    with pytest.raises(ValueError, match="too short"):
        estimate_ar(np.ones(2), p=2, sn=0.1)


@settings(max_examples=40, deadline=None)
@given(
    y=hnp.arrays(np.float64, st.integers(8, 200), elements=st.floats(-1e3, 1e3)),
    p=st.sampled_from([1, 2]),
)
def test_ar_estimate_is_always_stable_and_decaying(y, p):
    g = estimate_ar(y, p=p)
    roots = np.roots(np.r_[1.0, -g])
    assert g.shape == (p,) and np.all(np.isfinite(g))
    assert np.all(np.abs(roots.imag) < 1e-6)
    assert np.all((roots.real >= 0) & (roots.real < 1))


def test_time_constant_conversions_round_trip():
    g = ar_from_time_constants(0.05, 0.4, 30.0)
    d, r = np.exp(-1 / (0.4 * 30)), np.exp(-1 / (0.05 * 30))
    assert_allclose(g, [d + r, -d * r], rtol=1e-12)
    assert_allclose(time_constants_from_ar(g, 30.0), (0.05, 0.4), rtol=1e-10)
    g1 = ar_from_time_constants(0, 0.4, 30.0)  # CaImAn's g from decay_time
    assert_allclose(g1, [np.exp(-1 / 12)], rtol=1e-12)
    assert time_constants_from_ar(g1, 30.0) == pytest.approx((0.0, 0.4), rel=1e-10)


def test_time_constant_errors():
    with pytest.raises(ValueError):
        ar_from_time_constants(0.05, 0.0, 30.0)
    with pytest.raises(ValueError):
        time_constants_from_ar([1.01], 30.0)
