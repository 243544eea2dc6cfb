"""Merging: duplicated components merge, distinct ones stay."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from calcium_dask.cnmf.kernels.merge import merge_components, remove_empty

from .cnmf_sim import corr, simulate


def _split(a, dims=(40, 40)):
    """Two halves of a footprint that share the middle row (they overlap)."""
    img = a.reshape(dims)
    cy = int(np.argmax(img.max(1)))
    top, bottom = img.copy(), img.copy()
    top[cy + 1 :] = 0
    bottom[:cy] = 0
    return top.ravel(), bottom.ravel()


def test_duplicated_component_merges_and_others_stay():
    s = simulate(seed=6)
    rng = np.random.default_rng(0)
    top, bottom = _split(s.A[:, 3])
    A = np.column_stack([s.A[:, :3], top, s.A[:, 4], bottom])
    C = np.vstack([s.C[:3], s.C[3] * 0.7 + 0.05 * rng.random(600), s.C[4], s.C[3] * 1.3])
    res = merge_components(A, C, merge_thr=0.85)
    assert [g.tolist() for g in res.groups] == [[3, 5]]
    assert res.kept.tolist() == [0, 1, 2, 4]
    assert res.A.shape == (1600, 5) and res.C.shape == (5, 600)
    np.testing.assert_allclose(res.A[:, :4].toarray(), A[:, [0, 1, 2, 4]], rtol=1e-6)
    merged_a = res.A[:, 4].toarray().ravel()
    # A_G C_G is close to (0.7 top + 1.3 bottom) c: that is the merged footprint
    assert corr(merged_a, 0.7 * top + 1.3 * bottom) > 0.99
    assert abs(np.linalg.norm(merged_a) - 1) < 1e-5
    assert corr(res.C[4], s.C[3]) > 0.99
    # the rank-1 fit keeps the joint contribution A_G C_G
    joint = A[:, [3, 5]] @ C[[3, 5]]
    approx = np.outer(merged_a, res.C[4])
    assert np.linalg.norm(joint - approx) < 0.05 * np.linalg.norm(joint)


def test_overlapping_but_uncorrelated_components_stay():
    s = simulate(seed=7)  # components 3 and 4 overlap, with independent spikes
    assert (s.A[:, 3] * s.A[:, 4]).sum() > 0
    res = merge_components(s.A, s.C, merge_thr=0.85)
    assert res.groups == [] and res.A.shape == (1600, 5)
    np.testing.assert_array_equal(res.kept, np.arange(5))


def test_correlated_but_disjoint_components_stay():
    s = simulate(seed=8)
    C = np.vstack([s.C[0], s.C[0] * 2, s.C[2:]])  # 0 and 1 correlate but do not touch
    res = merge_components(s.A, C, merge_thr=0.85)
    assert res.groups == []


def test_chain_of_three_merges_into_one_and_max_merge():
    s = simulate(seed=9)
    top, bottom = _split(s.A[:, 0])
    mid = s.A[:, 0] * (top > 0) * (bottom > 0)  # the shared row
    top2, bottom2 = _split(s.A[:, 2])
    A = np.column_stack([top, mid, bottom, top2, bottom2])
    C = np.vstack([s.C[0], s.C[0], s.C[0], s.C[2], s.C[2]])
    res = merge_components(A, C, merge_thr=0.9)
    assert sorted(g.tolist() for g in res.groups) == [[0, 1, 2], [3, 4]]
    assert res.A.shape[1] == 2
    one = merge_components(A, C, merge_thr=0.9, max_merge=1)
    assert len(one.groups) == 1 and one.A.shape[1] == 3


def test_remove_empty():
    A = sp.csc_matrix(np.array([[1.0, 0, 1], [0, 0, 1]]))
    C = np.array([[1.0, 2], [3, 4], [0, 0]])
    A2, C2, keep = remove_empty(A, C)
    assert keep.tolist() == [0] and A2.shape == (2, 1) and C2.tolist() == [[1.0, 2]]


def test_max_merge_area_keeps_a_group_larger_than_it_apart():
    s = simulate(seed=6)
    top, bottom = _split(s.A[:, 3])
    A = np.column_stack([top, bottom])
    C = np.vstack([s.C[3], s.C[3] * 1.1])
    area = int(((top != 0) | (bottom != 0)).sum())
    assert [g.tolist() for g in merge_components(A, C, max_merge_area=area).groups] == [[0, 1]]
    kept = merge_components(A, C, max_merge_area=area - 1)
    assert kept.groups == [] and kept.A.shape == (1600, 2)
