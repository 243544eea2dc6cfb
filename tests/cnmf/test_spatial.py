"""Spatial update: planted footprints are recovered from the sufficient statistics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from calcium_dask.cnmf.kernels.spatial import (
    masked_YCt,
    search_area,
    threshold_footprints,
    update_spatial,
)

from .cnmf_sim import match, simulate


DIMS = (40, 40)


@pytest.fixture(scope="module")
def sim():
    return simulate(seed=3, nb=1)


def _discs(centers, radius=3, offset=(1, 0)):
    yy, xx = np.mgrid[: DIMS[0], : DIMS[1]]
    return np.stack([(((yy - c[0] - offset[0]) ** 2 + (xx - c[1] - offset[1]) ** 2)
                      <= radius**2).ravel() for c in centers], 1).astype(np.float32)


def _stats(s, C, T0=0, T1=None):
    Yr = s.Y.reshape(len(s.Y), -1)[T0:T1]
    Cf = np.vstack([C, s.f])[:, T0:T1].astype(np.float32)
    return Yr.T @ Cf.T, Cf.astype(np.float64) @ Cf.T


def _run(s, rounds=3, b0=None, **kw):
    """Spatial updates from crude discs, the traces rescaled as the footprints are."""
    A, C = _discs(s.centers), s.C.copy()
    b = np.ones((1600, 1), np.float32) if b0 is None else b0
    for _ in range(rounds):
        YCt, CCt = _stats(s, C)
        res = update_spatial(YCt, CCt, A, b, dims=DIMS, sn=np.full(1600, s.sn), **kw)
        A, b, C = res.A, res.b, res.scale_traces(C)
    return res


def test_recovers_planted_footprints_and_background(sim):
    res = _run(sim)
    idx, cc = match(res.A, sim.A)
    assert idx.tolist() == [0, 1, 2, 3, 4] and cc.min() > 0.98
    np.testing.assert_allclose(np.sqrt(res.A.multiply(res.A).sum(0)), 1, rtol=1e-5)
    assert res.A.dtype == np.float32 and sp.isspmatrix_csc(res.A)
    np.testing.assert_allclose(res.b.mean(), 2.0, rtol=0.05)  # planted flat background 2


def test_one_update_with_true_background(sim):
    YCt, CCt = _stats(sim, sim.C)
    res = update_spatial(YCt, CCt, _discs(sim.centers), sim.b.astype(np.float32), dims=DIMS,
                         sn=np.full(1600, sim.sn), expand=3)
    _, cc = match(res.A, sim.A)
    assert cc.min() > 0.95
    np.testing.assert_allclose(res.norms, 1.0, atol=0.05)  # true traces: no rescaling


def test_update_stays_inside_search_area(sim):
    A0 = _discs(sim.centers)
    YCt, CCt = _stats(sim, sim.C)
    mask = search_area(A0, DIMS, expand=1)
    res = update_spatial(YCt, CCt, A0, sim.b, dims=DIMS, mask=mask)
    assert not (res.A.toarray() > 0)[~mask.toarray()].any()


def test_time_chunked_statistics_give_same_footprints(sim):
    A0 = _discs(sim.centers)
    YCt, CCt = _stats(sim, sim.C)
    parts = [_stats(sim, sim.C, t, t + 150) for t in range(0, 600, 150)]
    YCt2, CCt2 = sum(p[0] for p in parts), sum(p[1] for p in parts)
    kw = dict(dims=DIMS, sn=np.full(1600, sim.sn))
    r1 = update_spatial(YCt, CCt, A0, sim.b, **kw)
    r2 = update_spatial(YCt2, CCt2, A0, sim.b, **kw)
    np.testing.assert_allclose(r1.A.toarray(), r2.A.toarray(), atol=1e-5)
    np.testing.assert_allclose(r1.b, r2.b, rtol=1e-4)


def test_sparse_statistics_on_search_area_only(sim):
    A0 = _discs(sim.centers)
    YCt, CCt = _stats(sim, sim.C)
    mask = search_area(A0, DIMS)
    # what a distributed refit computes: Y C^T on the search areas, Y f^T everywhere,
    # each summed over time chunks
    Yr = sim.Y.reshape(600, -1)
    masked = sum(masked_YCt(Yr[t : t + 200], sim.C[:, t : t + 200], mask)
                 for t in range(0, 600, 200))
    np.testing.assert_allclose(masked.toarray(), mask.multiply(YCt[:, :5]).toarray(),
                               rtol=1e-4, atol=1e-2)
    YCt_sp = sp.hstack([masked, sp.csc_matrix(YCt[:, 5:])]).tocsc()
    r1 = update_spatial(YCt, CCt, A0, sim.b, dims=DIMS, mask=mask)
    r2 = update_spatial(YCt_sp, CCt, A0, sim.b, dims=DIMS, mask=mask)
    np.testing.assert_allclose(r1.A.toarray(), r2.A.toarray(), atol=1e-5)


def test_search_area_is_a_diamond_clipped_at_the_border():
    A = np.zeros((100, 2), np.float32)
    A[5 * 10 + 5, 0] = 1.0  # centre pixel of a 10x10 image
    A[0, 1] = 1.0  # corner
    m = search_area(A, (10, 10), expand=2).toarray()
    assert m[:, 0].sum() == 13 and m[:, 1].sum() == 6
    img = m[:, 0].reshape(10, 10)
    assert img[3, 5] and img[5, 7] and not img[3, 4] and img[4, 4]


def test_threshold_keeps_largest_piece_and_drops_specks():
    img = np.zeros((20, 20), np.float32)
    img[3:9, 3:9] = 1.0  # main body
    img[13:17, 13:17] = 0.5  # a second, weaker piece: not the largest in energy
    img[0, 19] = 2.0  # an isolated bright pixel: removed by the median filter
    A = np.stack([img.ravel(), np.roll(img, 2, axis=1).ravel()], 1)
    out = threshold_footprints(A, (20, 20)).toarray()
    for k, shift in enumerate((0, 2)):
        expect = np.zeros((20, 20))
        expect[3:9, 3 + shift : 9 + shift] = 1.0
        for y, x in ((3, 3), (3, 8), (8, 3), (8, 8)):  # the 3x3 median rounds the corners
            expect[y, x + shift] = 0.0
        np.testing.assert_array_equal(out[:, k].reshape(20, 20), expect)
    kept = threshold_footprints(A, (20, 20), extract_cc=False).toarray()[:, 0].reshape(20, 20)
    assert kept[14, 14] == 0.5 and kept[0, 19] == 0  # without extract_cc the piece stays


def test_threshold_max_method():
    yy, xx = np.mgrid[:15, :15]
    img = np.exp(-((yy - 7) ** 2 + (xx - 7) ** 2) / 8.0).ravel()[:, None]
    out = threshold_footprints(img, (15, 15), thr_method="max", maxthr=0.5, medw=1, se=None)
    np.testing.assert_array_equal(out.toarray() > 0, img > 0.5)


def test_empty_component_is_dropped(sim):
    A0 = _discs(sim.centers)
    C = sim.C.copy()
    C[2] = 0  # a dead trace cannot support a footprint
    YCt, CCt = _stats(sim, C)
    res = update_spatial(YCt, CCt, A0, sim.b, dims=DIMS)
    assert res.keep.tolist() == [0, 1, 3, 4]


def test_background_error_goes_into_the_background_not_the_footprints(sim):
    # a start with half the true background (the refit's first spatial update starts from
    # the patches' merged background): a fixed b pushes the missing level into every
    # footprint, which then fills its search area; solved jointly per pixel, it does not
    YCt, CCt = _stats(sim, sim.C)
    b_wrong = (0.5 * sim.b).astype(np.float32)
    kw = dict(dims=DIMS, sn=np.full(1600, sim.sn))
    fixed = update_spatial(YCt, CCt, sim.A, b_wrong, update_background=False, **kw)
    joint = update_spatial(YCt, CCt, sim.A, b_wrong, **kw)
    _, cc_fixed = match(fixed.A, sim.A)
    _, cc_joint = match(joint.A, sim.A)
    assert cc_fixed.max() < 0.95 and cc_joint.min() > 0.995
    true_area = (sim.A > 0).sum(0)
    assert ((joint.A.toarray() > 0).sum(0) <= 1.3 * true_area).all()
    np.testing.assert_allclose(joint.b.mean(), 2.0, rtol=0.01)


def test_hals_footprints_with_free_background_solves_each_pixel_jointly(sim):
    from calcium_dask.cnmf.kernels.hals import hals_footprints

    YCt, CCt = _stats(sim, sim.C)
    mask = search_area(sim.A, DIMS, expand=2)
    A, b = hals_footprints(YCt[:, :5], CCt, sim.A, mask, b=np.zeros((1600, 1), np.float32),
                           iters=30, Yf=YCt[:, 5:])
    _, cc = match(A, sim.A)
    assert cc.min() > 0.995
    np.testing.assert_allclose(b, sim.b, rtol=0.1)  # each pixel, within its noise
    np.testing.assert_allclose(b.mean(), 2.0, rtol=0.005)
