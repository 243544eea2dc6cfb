"""background_correlation: the share of a trace the background traces explain."""

from __future__ import annotations

import numpy as np
import pytest

from calcium_dask.evaluation.kernels.background_residue import background_correlation

T = 600


def _background(rng: np.random.Generator) -> np.ndarray:
    walk = np.cumsum(rng.standard_normal((2, T)), axis=1)  # slow, like neuropil
    return walk + 50.0


def _orthogonal(rng: np.random.Generator, f: np.ndarray) -> np.ndarray:
    """A random trace with nothing in common with f or a quadratic trend."""
    basis, _ = np.linalg.qr(np.column_stack([np.vander(np.linspace(-1, 1, T), 3), f.T]))
    g = rng.standard_normal(T)
    return g - basis @ (basis.T @ g)


def test_known_shares_are_measured_exactly():
    rng = np.random.default_rng(0)
    f = _background(rng)
    mix = 2.0 * f[0] - 0.5 * f[1]
    g = _orthogonal(rng, f)
    trend, _ = np.linalg.qr(np.vander(np.linspace(-1, 1, T), 3))
    mix_d = mix - trend @ (trend.T @ mix)
    g *= np.linalg.norm(mix_d) / np.linalg.norm(g)  # as much variance beyond the trend as mix
    traces = np.stack([mix + 7.0, mix + g, g, np.full(T, 3.0)])
    r = background_correlation(traces, f)
    np.testing.assert_allclose(r, [1.0, np.sqrt(0.5), 0.0, 0.0], atol=1e-9)


def test_calcium_transients_are_not_explained_by_a_drifting_background():
    rng = np.random.default_rng(1)
    f = _background(rng)
    s = (rng.random(T) < 0.02).astype(float)
    cell = np.convolve(s, np.exp(-np.arange(60) / 12.0))[:T]
    assert background_correlation(cell[None], f)[0] < 0.3
    drift = 0.3 * f[1] + 0.2 * rng.standard_normal(T)  # a patch of the neuropil
    assert background_correlation(drift[None], f)[0] > 0.95


def test_a_trend_that_every_trace_shares_is_not_background():
    """Bleaching: the unit and the background decay together over the recording."""
    rng = np.random.default_rng(4)
    t = np.linspace(0, 1, T)
    f = np.stack([100 * np.exp(-t) + rng.standard_normal(T)])
    s = (rng.random(T) < 0.02).astype(float)
    cell = 30 * np.exp(-t) + np.convolve(s, np.exp(-np.arange(60) / 12.0))[:T]
    assert background_correlation(cell[None], f)[0] < 0.3
    assert background_correlation(cell[None], f, detrend=0)[0] > 0.5  # the trend alone would veto it


def test_repeated_or_flat_background_traces_add_nothing():
    rng = np.random.default_rng(2)
    f = _background(rng)
    traces = np.stack([f[0] + 3 * rng.standard_normal(T), rng.standard_normal(T)])
    one = background_correlation(traces, f[:1])
    padded = np.vstack([f[:1], f[:1], np.zeros((1, T)), np.full((1, T), 4.0)])
    np.testing.assert_allclose(background_correlation(traces, padded), one, atol=1e-12)


def test_without_a_varying_background_there_is_nothing_to_measure():
    traces = np.random.default_rng(3).standard_normal((3, T))
    assert np.isnan(background_correlation(traces, np.zeros((0, T)))).all()
    assert np.isnan(background_correlation(traces, np.ones((2, T)))).all()
    assert np.isnan(background_correlation(traces, np.linspace(0, 5, T)[None] ** 2)).all()  # a trend


def test_non_finite_values_give_nan_not_an_error():
    rng = np.random.default_rng(5)
    f = _background(rng)
    traces = np.stack([f[0] + rng.standard_normal(T), rng.standard_normal(T)])
    traces[1, 10] = np.nan
    r = background_correlation(traces, f)
    assert r[0] > 0.95 and np.isnan(r[1])
    broken = np.vstack([f, np.full((1, T), np.inf)])
    np.testing.assert_allclose(background_correlation(traces, broken), r, equal_nan=True)
    assert np.isnan(background_correlation(traces, np.full((1, T), np.nan))).all()


def test_frame_counts_must_agree():
    with pytest.raises(ValueError, match="same number of frames"):
        background_correlation(np.zeros((2, T)), np.zeros((1, T - 1)))
    with pytest.raises(ValueError, match="same number of frames"):
        background_correlation(np.zeros(T), np.zeros((1, T)))
