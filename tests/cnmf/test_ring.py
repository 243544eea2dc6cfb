"""The ring background of CNMF-E: a planted fluctuating background recovered, a neuron kept out
of its own background, and the patches' map and its adjoint consistent (the refit relies on it)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import ndimage

from calcium_dask.cnmf.kernels.ring import (PatchedRing, block_matrices, block_mean, fit_ring, ring_offsets,
                                            ring_radius)


def test_ring_offsets_lie_at_the_radius_all_around():
    dy, dx = ring_offsets(5)
    d = np.hypot(dy, dx)
    assert np.all((d >= 5) & (d < 6)) and len(dy) > 2 * np.pi * 5
    assert {np.sign(v) for v in dy} == {-1, 0, 1} and {np.sign(v) for v in dx} == {-1, 0, 1}
    assert ring_radius(13, 1.4, 2) == 9 and ring_radius(13, 0.8, 2) == 5 and ring_radius(3, 0.5, 4) == 1


@pytest.mark.parametrize("dims", [(20, 16), (21, 17)])
def test_block_mean_and_bilinear_upsampling(dims):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, dims[0] * dims[1])).astype(np.float32)
    D, U, (bh, bw) = block_matrices(dims, 2)
    np.testing.assert_allclose(block_mean(X, dims, 2), (D @ X.T).T, rtol=1e-5, atol=1e-6)
    assert (bh, bw) == (-(-dims[0] // 2), -(-dims[1] // 2))
    np.testing.assert_allclose(U @ np.ones(bh * bw), 1.0, rtol=1e-6)  # a constant stays constant
    ramp = np.arange(bw, dtype=float)[None, :].repeat(bh, 0).ravel()  # block index along x
    up = (U @ ramp).reshape(dims)
    inner = up[:, 1:-2]
    assert np.all(np.diff(inner, axis=1) > 0.4) and np.allclose(np.diff(inner, axis=1), 0.5, atol=1e-5)


def _flashing_background(shape=(64, 64), T=800, seed=0):
    """A baseline and 25 wide blobs that flash on their own (out-of-focus neurons)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    centres, sig = rng.uniform(-10, shape[0] + 10, (25, 2)), rng.uniform(8, 14, 25)
    blobs = np.stack([np.exp(-((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / (2 * s**2)) for c, s in zip(centres, sig)])
    flashes = 1 + 6 * np.maximum(ndimage.gaussian_filter1d(rng.standard_normal((25, T)), 3, axis=1), 0)
    base = 100 + 20 * np.exp(-((yy - 20) ** 2 + (xx - 40) ** 2) / 800.0)
    return (base.ravel() + (flashes.T @ blobs.reshape(25, -1)) * 15).astype(np.float32), base.ravel()


def _neuron(shape=(64, 64), T=800, centre=(32, 30), seed=1):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    a = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * 3.0**2)).ravel()
    c = ndimage.gaussian_filter1d((rng.random(T) < 0.02).astype(float), 2) * 400
    return a.astype(np.float32), c.astype(np.float32)


def test_fit_ring_recovers_a_planted_fluctuating_background():
    B, base = _flashing_background()
    a, c = _neuron()
    AC = np.outer(c, a)
    Y = B + AC + np.random.default_rng(2).normal(0, 3, B.shape).astype(np.float32)
    model = fit_ring(Y, AC, dims=(64, 64), radius=ring_radius(13, 1.0, 2), ssub_B=2)
    np.testing.assert_allclose(model.b0, B.mean(0), rtol=0.02)  # the baseline: the mean less the neuron
    est = model.background(Y, AC)
    inner = np.zeros((64, 64), bool)
    inner[12:-12, 12:-12] = True
    fluct = B - B.mean(0)
    err = est - B
    assert np.std(err[:, inner.ravel()]) < 0.25 * np.std(fluct[:, inner.ravel()])
    k = 32 * 64 + 30  # the neuron's centre: its background follows the blobs, not the neuron
    assert np.corrcoef(est[:, k], B[:, k])[0, 1] > 0.95
    assert abs(np.corrcoef(est[:, k] - B[:, k], c)[0, 1]) < 0.2
    # without the neuron's share, its pixels' own background would not be all background
    alone = fit_ring(B, None, dims=(64, 64), radius=ring_radius(13, 1.0, 2), ssub_B=2)
    assert alone.W.nnz == model.W.nnz and np.all(alone.W.indptr == model.W.indptr)


def test_patched_ring_adjoint_is_the_transpose_of_its_background_map():
    rng = np.random.default_rng(3)
    dims = (40, 44)
    boxes = [(0, 24, 0, 26), (0, 24, 18, 44), (16, 40, 0, 26), (16, 40, 18, 44)]
    owns = [(0, 20, 0, 22), (0, 20, 22, 44), (20, 40, 0, 22), (20, 40, 22, 44)]
    models = []
    for y0, y1, x0, x1 in boxes:
        h, w = y1 - y0, x1 - x0
        model = fit_ring(rng.standard_normal((60, h * w)).astype(np.float32), None, dims=(h, w), radius=3, ssub_B=2)
        model.b0 = rng.uniform(50, 60, h * w).astype(np.float32)
        models.append(model)
    ring = PatchedRing(boxes, owns, models, dims)
    N = dims[0] * dims[1]
    A = sp.random(N, 5, density=0.05, random_state=4, format="csc")
    X = rng.standard_normal((7, N)).astype(np.float32)
    M_X = ring.background(X, None) - ring.constant()  # M X: the linear part of the map
    lhs = (A.T @ M_X.T)
    rhs = ring.adjoint(A).T @ X.T
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-4)
    b0 = ring.b0()
    for (y0, y1, x0, x1), (oy0, oy1, ox0, ox1), model in zip(boxes, owns, models):
        local = model.b0.reshape(y1 - y0, x1 - x0)[oy0 - y0:oy1 - y0, ox0 - x0:ox1 - x0]
        np.testing.assert_array_equal(b0.reshape(dims)[oy0:oy1, ox0:ox1], local)


def test_traces_need_only_one_product_with_the_movie():
    """``A^T (Y - B)`` with ``B`` the ring background of ``Y`` given ``A C`` is
    ``(A - M^T A)^T Y - A^T B(0) + (M^T A)^T A C``: the refit's pass computes only the first
    product, per time chunk."""
    rng = np.random.default_rng(5)
    B, _ = _flashing_background((48, 48), T=120, seed=6)
    model = fit_ring(B, None, dims=(48, 48), radius=4, ssub_B=2)
    ring = PatchedRing([(0, 48, 0, 48)], [(0, 48, 0, 48)], [model], (48, 48))
    A = sp.random(48 * 48, 4, density=0.02, random_state=7, format="csc")
    C = rng.random((4, 120))
    Y = B + (A @ C).T.astype(np.float32)
    direct = A.T @ (Y - ring.background(Y, (A @ C).T.astype(np.float32))).T
    MtA = ring.adjoint(A)
    via = (A - MtA).T @ Y.T - (A.T @ ring.constant())[:, None] + (MtA.T @ A) @ C
    np.testing.assert_allclose(via, direct, rtol=1e-3, atol=1e-2 * np.abs(direct).max())
