"""Greedy initialisation: planted centres, footprints, traces and background are found."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from calcium_dask.cnmf.init import _block_mean, _upsample, greedy_roi, initialize_components

from .cnmf_sim import corr, match, simulate


@pytest.fixture(scope="module")
def sim():
    return simulate(seed=0, nb=1)


def _nearest(found, planted):
    d = np.linalg.norm(found[:, None, :] - planted[None, :, :], axis=2)
    return d.min(0)  # distance from each planted centre to the closest found one


@pytest.mark.parametrize("ssub,tsub,rolling_sum", [(1, 1, True), (1, 1, False), (2, 3, True)])
def test_greedy_roi_finds_every_centre(sim, ssub, tsub, rolling_sum):
    A, C, center, b, f = greedy_roi(sim.Y, K=5, gSig=2, ssub=ssub, tsub=tsub,
                                    rolling_sum=rolling_sum)
    T = sim.Y.shape[0]
    assert A.shape == (1600, 5) and C.shape == (5, T) and center.shape == (5, 2)
    assert b.shape == (1600, 1) and f.shape == (1, T)
    assert _nearest(center, sim.centers).max() <= 2.0
    idx, cc = match(A, sim.A)
    assert len(set(idx.tolist())) == 5 and cc.min() > 0.85
    assert min(corr(C[i], sim.C[k]) for k, i in enumerate(idx)) > 0.9


@pytest.mark.parametrize("init", ["greedy", "full"])
def test_background_reproduces_planted_background(init):
    s = simulate(seed=2, nb=2, sn=0.3)
    if init == "greedy":
        _, _, _, b, f = greedy_roi(s.Y, K=5, gSig=2, nb=2)
    else:
        _, _, b, f, _ = initialize_components(s.Y, K=5, gSig=2, nb=2)
    err = np.linalg.norm(b @ f - s.b @ s.f) / np.linalg.norm(s.b @ s.f)
    assert err < (0.1 if init == "greedy" else 0.05)
    assert (b >= 0).all() and (f >= 0).all()


def test_initialize_components_recovers_components(sim):
    A, C, b, f, center = initialize_components(sim.Y, K=5, gSig=2, nb=1)
    assert sp.issparse(A) and A.dtype == np.float32
    idx, cc = match(A, sim.A)
    assert len(set(idx.tolist())) == 5 and cc.min() > 0.97
    assert min(corr(C[i], sim.C[k]) for k, i in enumerate(idx)) > 0.97
    assert corr(f[0], sim.f[0]) > 0.8
    np.testing.assert_allclose(b.mean() * f.mean(), 2.0, rtol=0.1)  # planted level 2
    assert _nearest(center, sim.centers).max() <= 1.0


def test_initialize_components_downsampled(sim):
    A, C, b, f, center = initialize_components(sim.Y, K=5, gSig=2, ssub=2, tsub=2)
    assert A.shape == (1600, 5) and C.shape == (5, sim.Y.shape[0])
    idx, cc = match(A, sim.A)
    assert len(set(idx.tolist())) == 5 and cc.min() > 0.9
    assert min(corr(C[i], sim.C[k]) for k, i in enumerate(idx)) > 0.9


def test_block_mean_and_upsample_round_trip():
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_allclose(_block_mean(x, 3, 0), [1, 4, 7, 9])
    ramp = np.linspace(0, 1, 12, dtype=np.float32)
    up = _upsample(_block_mean(ramp, 2, 0), 2, 12, 0)
    np.testing.assert_allclose(up[1:-1], ramp[1:-1], atol=1e-6)  # linear data survives
