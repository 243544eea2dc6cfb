"""HALS building blocks: exact grouped coordinate descent, reductions, refinement."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from calcium_dask.cnmf.kernels.hals import (
    dilate_support,
    greedy_groups,
    hals,
    hals_background,
    hals_footprints,
    hals_traces,
)
from calcium_dask.cnmf.kernels.init import greedy_roi
from calcium_dask.cnmf.kernels.nnls import nnls_small

from .cnmf_sim import corr, match, simulate


def _banded_problem(seed=0, N=80, K=8, T=40, nb=1):
    """Footprint masks that overlap only their neighbours, so groups have many members."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((N, K), bool)
    for k in range(K):
        mask[k * 10 : k * 10 + 14, k] = True
    A = rng.random((N, K)) * mask
    Cf = rng.random((K + nb, T))
    return rng, mask, A, Cf


def test_greedy_groups_are_disjoint_and_cover():
    _, mask, _, _ = _banded_problem()
    ov = mask.T.astype(int) @ mask.astype(int)
    groups = greedy_groups(ov)
    assert sorted(np.concatenate(groups).tolist()) == list(range(mask.shape[1]))
    assert len(groups) == 2  # a chain of overlaps is 2-colourable
    for G in groups:
        sub = ov[np.ix_(G, G)] - np.diag(np.diag(ov[np.ix_(G, G)]))
        assert not sub.any()


def test_hals_footprints_equals_sequential_sweep():
    rng, mask, A, Cf = _banded_problem()
    K = mask.shape[1]
    CCt = Cf @ Cf.T
    YCt = rng.random((mask.shape[0], K)) * 5
    b = rng.random((mask.shape[0], 1))
    l1 = rng.random(mask.shape[0]) * 0.2
    out = hals_footprints(YCt, CCt, A, sp.csc_matrix(mask), b=b, l1=l1, iters=3).toarray()
    order = np.concatenate(greedy_groups(mask.T.astype(int) @ mask.astype(int)))
    ref = A.copy()
    for _ in range(3):
        for k in order:
            for i in np.flatnonzero(mask[:, k]):
                model = ref[i] @ CCt[:K, k] + b[i] @ CCt[K:, k]
                step = (YCt[i, k] - model - l1[i] * np.sqrt(CCt[k, k])) / CCt[k, k]
                ref[i, k] = max(0.0, ref[i, k] + step)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    assert not out[~mask].any()


def test_hals_traces_equals_sequential_sweep():
    rng, mask, A, Cf = _banded_problem()
    Ab = np.hstack([A, rng.random((A.shape[0], 1))])
    AtA = Ab.T @ Ab
    AtY = rng.random(Cf.shape) * 5
    out = hals_traces(AtY, AtA, Cf, iters=3)
    order = np.concatenate(greedy_groups(AtA))
    ref = Cf.copy()
    for _ in range(3):
        for k in order:
            ref[k] = np.maximum(ref[k] + (AtY[k] - AtA[k] @ ref) / AtA[k, k], 0)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hals_traces(AtY, sp.csr_matrix(AtA), Cf, iters=3), out,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_nnls_small_matches_scipy(m):
    from scipy.optimize import nnls

    rng = np.random.default_rng(m)
    X, Y = rng.standard_normal((40, m)), rng.standard_normal((40, 25))
    ref = np.stack([nnls(X, y)[0] for y in Y.T], 1)
    np.testing.assert_allclose(nnls_small(X.T @ X, X.T @ Y), ref, atol=1e-10)


def test_hals_background_solves_nonnegative_least_squares():
    rng = np.random.default_rng(3)
    f = rng.random((2, 200)) + 0.5
    b_true = rng.random((50, 2))
    X = b_true @ f
    b = hals_background(X @ f.T, f @ f.T, np.ones((50, 2)))  # exact for nb <= 4
    np.testing.assert_allclose(b, b_true, atol=1e-4)
    f5 = rng.random((5, 400)) + 0.5
    b5 = rng.random((50, 5))
    X5 = b5 @ f5
    est = hals_background(X5 @ f5.T, f5 @ f5.T, np.ones((50, 5)), iters=3000)  # HALS path
    np.testing.assert_allclose(est, b5, atol=2e-2)


def test_statistics_summed_over_chunks_give_same_update():
    s = simulate(T=300, seed=4)
    T = s.Y.shape[0]
    Yr = s.Y.reshape(T, -1).astype(np.float64)
    Cf = np.vstack([s.C, s.f])
    A0 = (s.A > 0.02).astype(float)
    mask = dilate_support(A0, (40, 40))
    YCt_full = Yr.T @ Cf.T
    YCt_sum = sum(Yr[t : t + 70].T @ Cf[:, t : t + 70].T for t in range(0, T, 70))
    CCt = Cf @ Cf.T
    kw = dict(b=s.b, iters=2)
    a1 = hals_footprints(YCt_full[:, :5], CCt, A0, mask, **kw).toarray()
    a2 = hals_footprints(YCt_sum[:, :5], CCt, A0, mask, **kw).toarray()
    np.testing.assert_allclose(a1, a2, rtol=1e-6, atol=1e-8)
    Ab = np.hstack([s.A, s.b])
    AtY_full = Ab.T @ Yr.T
    AtY_sum = sum(Ab[p : p + 300].T @ Yr[:, p : p + 300].T for p in range(0, 1600, 300))
    c1 = hals_traces(AtY_full, Ab.T @ Ab, Cf)
    c2 = hals_traces(AtY_sum, Ab.T @ Ab, Cf)
    np.testing.assert_allclose(c1, c2, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("nb", [1, 2])
def test_hals_refines_greedy_initialisation(nb):
    s = simulate(seed=1, nb=nb)
    A, C, _, b, f = greedy_roi(s.Y, K=5, gSig=2, nb=nb)
    _, before = match(A, s.A)
    A2, C2, b2, f2 = hals(s.Y, A, C, b, f, maxIter=5)
    idx, after = match(A2, s.A)
    assert after.min() > 0.97 and after.min() > before.min()
    assert min(corr(C2[i], s.C[k]) for k, i in enumerate(idx)) > 0.95
    assert b2.shape == (1600, nb) and f2.shape == (nb, s.Y.shape[0])
    grown = dilate_support(A, (40, 40)).toarray()
    assert not (A2.toarray() > 0)[~grown].any()  # confined to the dilated support
