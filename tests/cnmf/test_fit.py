"""CNMF on one patch: every planted neuron is found, with its trace."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from calcium_dask.cnmf.kernels.fit import PatchResult, fit_patch, sufficient_statistics
from calcium_dask.cnmf.kernels.init import _centers
from calcium_dask.cnmf.kernels.merge import merge_until_stable

from .cnmf_sim import corr, match, simulate


@pytest.fixture(scope="module")
def sim():
    return simulate(seed=10, nb=2)


def _check_found(res: PatchResult, s, fp=0.9, tr=0.9, extra=1):
    idx, cc = match(res.A, s.A)
    assert len(set(idx.tolist())) == s.A.shape[1], idx
    assert cc.min() > fp, cc
    assert min(corr(res.C[i], s.C[k]) for k, i in enumerate(idx)) > tr
    assert res.A.shape[1] <= s.A.shape[1] + extra
    return idx


def test_fit_patch_finds_every_neuron_and_drops_extra_seeds():
    s = simulate(seed=12, nb=1)
    res = fit_patch(s.Y, K=7, gSig=2, p=1, nb=1, only_init=False)  # two seeds more than planted neurons
    _check_found(res, s, fp=0.95, tr=0.95, extra=0)


def test_fit_patch_outputs(sim):
    res = fit_patch(sim.Y, K=7, gSig=2, p=1, nb=2, only_init=False)
    idx = _check_found(res, sim, fp=0.95, tr=0.95, extra=2)
    K, T = res.C.shape
    N = sim.Y.shape[1] * sim.Y.shape[2]
    assert sp.isspmatrix_csc(res.A) and res.A.shape == (N, K)
    for x, shape in ((res.S, (K, T)), (res.YrA, (K, T)), (res.b, (N, 2)), (res.f, (2, T)),
                     (res.sn, (N,)), (res.g, (K, 1)), (res.bl, (K,)), (res.neurons_sn, (K,))):
        assert x.shape == shape
    np.testing.assert_allclose(np.sqrt(res.A.multiply(res.A).sum(0)), 1, rtol=1e-5)
    np.testing.assert_allclose(np.median(res.sn), sim.sn, rtol=0.1)  # pixel noise
    # left-over seeds model weak background structure: far below any planted neuron
    peak = np.asarray(res.A.max(0).todense()).ravel() * res.C.max(1)
    extra = np.setdiff1d(np.arange(K), idx)
    assert (peak[extra] < 0.25 * peak[idx].min()).all()
    # the model explains the movie down to the noise
    Yr = sim.Y.reshape(len(sim.Y), -1).T
    resid = Yr - res.A @ res.C - res.b @ res.f
    assert np.std(resid) < 1.1 * sim.sn


def test_fit_patch_downsampled_initialisation(sim):
    res = fit_patch(sim.Y, K=5, gSig=2, p=1, nb=2, ssub=2, tsub=2, only_init=False)
    _check_found(res, sim)
    assert res.C.shape[1] == sim.Y.shape[0]


@pytest.mark.parametrize("p,nb", [(0, 1), (2, 0)])
def test_fit_patch_options(p, nb):
    s = simulate(seed=11, nb=nb)
    res = fit_patch(s.Y, K=5, gSig=2, p=p, nb=nb, do_merge=False, only_init=False)
    _check_found(res, s, tr=0.9)
    assert res.g.shape == (res.C.shape[0], p) and res.f.shape[0] == nb


def test_only_init_stops_after_hals(sim):
    res = fit_patch(sim.Y, K=5, gSig=2, p=1, nb=2, only_init=True)
    _check_found(res, sim)
    assert not res.S.any() and np.isnan(res.g).all()
    AtY, AtA, _, _ = sufficient_statistics(sim.Y.reshape(len(sim.Y), -1), res.A, res.b,
                                           res.C, res.f)
    raw = res.C + res.YrA
    k = 0
    expect = (AtY[k] - AtA[k] @ np.vstack([res.C, res.f]) + AtA[k, k] * res.C[k]) / AtA[k, k]
    np.testing.assert_allclose(raw[k], expect, rtol=1e-3, atol=1e-3)


def test_rejects_unknown_initialisation(sim):
    with pytest.raises(ValueError, match="method_init"):
        fit_patch(sim.Y, K=3, gSig=2, method_init="corr_pnr")


@pytest.mark.slow
def test_patch_of_caiman_size_finds_its_neurons():
    """A 3000-frame rf=15 patch (31 x 31), K=4, p=1, nb=2: every planted neuron, no extra.

    Its speed is measured by ``benchmarks/bench_patch.py``, not asserted here."""
    s = simulate(T=3000, dims=(31, 31), centers=((8, 8), (9, 22), (22, 12), (24, 20)), nb=2)
    res = fit_patch(s.Y, K=4, gSig=4, p=1, nb=2, only_init=False)
    _check_found(res, s, fp=0.95, tr=0.95, extra=0)


def test_neighbouring_patches_report_each_neuron_once():
    # two patches overlapping on columns 14:26, tiles split at column 20
    s = simulate(seed=12, nb=1)
    kw = dict(K=4, gSig=2, p=1, nb=1, only_init=True, detrend_window=25, min_snr_init=4.0,
              decay_frames=10, remove_common=True, remove_motion=True)
    found, traces = [], []
    for x0, x1, own in ((0, 26, (0, 40, 0, 20)), (14, 40, (0, 40, 6, 26))):
        res = fit_patch(s.Y[:, :, x0:x1], own=own, **kw)
        c = _centers(res.A, (40, x1 - x0))
        assert ((c[:, 1] >= own[2] - 0.5) & (c[:, 1] < own[3] - 0.5)).all()
        A = np.zeros((40, 40, res.A.shape[1]), np.float32)
        A[:, x0:x1] = res.A.toarray().reshape(40, x1 - x0, -1)
        found.append(A.reshape(1600, -1))
        traces.append(res.C)
    # what the bright neurons' box fits leave merges back as in fit_patches
    A, C = merge_until_stable(sp.csc_matrix(np.hstack(found)), np.vstack(traces), 0.85)
    idx, cc = match(A, s.A)
    assert A.shape[1] == s.A.shape[1] and len(set(idx.tolist())) == s.A.shape[1]
    assert cc.min() > 0.9
