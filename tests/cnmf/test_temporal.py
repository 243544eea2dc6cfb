"""Temporal update: planted traces are recovered from the sufficient statistics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from calcium_dask.cnmf.kernels.temporal import residual_traces, update_temporal

from .cnmf_sim import corr, simulate


@pytest.fixture(scope="module")
def sim():
    return simulate(seed=5, nb=2)


def _stats(s, A=None):
    T = s.Y.shape[0]
    Ab = np.hstack([s.A if A is None else A, s.b]).astype(np.float32)
    Yr = s.Y.reshape(T, -1)
    return (Yr @ Ab).T, Ab.T.astype(np.float64) @ Ab


@pytest.mark.parametrize("p,reestimate", [(1, True), (2, True), (1, False)])
def test_recovers_planted_traces(sim, p, reestimate):
    AtY, AtA = _stats(sim)
    K, T = sim.C.shape
    res = update_temporal(AtY, AtA, np.zeros((K, T)), np.ones((2, T)), p=p,
                          reestimate=reestimate, iterations=3)
    assert res.C.shape == (K, T) and res.S.shape == (K, T) and res.g.shape == (K, p)
    for k in range(K):
        assert corr(res.C[k], sim.C[k]) > 0.95
        assert corr(res.S[k], sim.S[k]) > 0.8
    # two smooth background footprints are nearly collinear: check their joint contribution
    err = np.linalg.norm(sim.b @ (res.f - sim.f)) / np.linalg.norm(sim.b @ sim.f)
    assert err < 0.03
    if p == 1:
        np.testing.assert_allclose(res.g[:, 0], sim.g, atol=0.05)
    assert (res.C >= 0).all() and (res.S >= 0).all() and (res.f >= 0).all()


def test_residual_traces_complete_the_raw_trace(sim):
    AtY, AtA = _stats(sim)
    K, T = sim.C.shape
    res = update_temporal(AtY, AtA, np.zeros((K, T)), np.ones((2, T)), p=1)
    Cf = np.vstack([res.C, res.f])
    raw = res.C + res.YrA  # CaImAn: the least-squares trace given all other components
    d = np.diag(AtA)[:K, None]
    expect = (AtY[:K] - AtA[:K] @ Cf) / d + res.C
    np.testing.assert_allclose(raw, expect, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(res.YrA, residual_traces(AtY, AtA, Cf)[:K], atol=1e-3)
    # the raw trace is the planted calcium plus a baseline and noise
    assert all(corr(raw[k], sim.C[k]) > 0.9 for k in range(K))


def test_without_dynamics_is_non_negative_least_squares(sim):
    AtY, AtA = _stats(sim)
    K, T = sim.C.shape
    res = update_temporal(AtY, AtA, np.zeros((K, T)), np.ones((2, T)), p=0, iterations=5)
    assert all(corr(res.C[k], sim.C[k]) > 0.95 for k in range(K))
    np.testing.assert_array_equal(res.S, res.C)
    assert (res.bl == 0).all() and res.g.shape == (K, 0)


def test_reduction_over_pixel_blocks_and_time_chunks(sim):
    """AtY summed over pixel blocks, or concatenated over time chunks, gives the same fit."""
    K, T = sim.C.shape
    Ab = np.hstack([sim.A, sim.b])
    Yr = sim.Y.reshape(T, -1).astype(np.float64)
    AtY = Ab.T @ Yr.T
    AtY_px = sum(Ab[i : i + 256].T @ Yr[:, i : i + 256].T for i in range(0, 1600, 256))
    AtY_t = np.hstack([Ab.T @ Yr[t : t + 100].T for t in range(0, T, 100)])
    AtA = Ab.T @ Ab
    C0, f0 = np.zeros((K, T)), np.ones((2, T))
    r1 = update_temporal(AtY, AtA, C0, f0, p=1)
    for other in (AtY_px, AtY_t):
        r2 = update_temporal(other, AtA, C0, f0, p=1)
        np.testing.assert_allclose(r2.C, r1.C, atol=1e-3 * r1.C.max())
        np.testing.assert_allclose(r2.g, r1.g, atol=1e-6)
    r3 = update_temporal(AtY, sp.csr_matrix(AtA), C0, f0, p=1)
    np.testing.assert_allclose(r3.C, r1.C, atol=1e-3 * r1.C.max())


def test_known_time_constants_are_used(sim):
    AtY, AtA = _stats(sim)
    K, T = sim.C.shape
    g = np.full((K, 1), 0.5)
    res = update_temporal(AtY, AtA, np.zeros((K, T)), np.ones((2, T)), p=1, g=g)
    np.testing.assert_array_equal(res.g, g)
    # with the true decay, each spike is one event; with g=0.5 the tail needs extra spikes
    good = update_temporal(AtY, AtA, np.zeros((K, T)), np.ones((2, T)), p=1,
                           g=np.full((K, 1), sim.g))
    assert (res.S > 0).sum() > (good.S > 0).sum()


def test_empty_footprint_gives_zero_trace(sim):
    A = sim.A.copy()
    A[:, 1] = 0
    AtY, AtA = _stats(sim, A)
    K, T = sim.C.shape
    res = update_temporal(AtY, AtA, np.ones((K, T)), np.ones((2, T)), p=1)
    assert not res.C[1].any() and not res.YrA[1].any()
    assert corr(res.C[0], sim.C[0]) > 0.95
