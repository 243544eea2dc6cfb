"""Footprint warping, candidate pairs, costs and pairwise assignment against planted answers."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from calcium_dask.tracking.kernels import (Candidates, assign_pairs, candidate_pairs, centroids,
                                           interpolation_matrix, masks, match_sessions, pair_costs, pair_overlap,
                                           warp_footprints)

from .planted import about_centre, disk_footprints


def test_interpolation_matrix_is_bilinear_remap():
    rng = np.random.default_rng(0)
    img = rng.random((30, 40)).astype(np.float32)
    coords = np.stack([rng.uniform(-2, 31, (20, 25)), rng.uniform(-2, 41, (20, 25))]).astype(np.float32)
    W = interpolation_matrix(coords, img.shape)
    out = (W @ img.ravel()).reshape(20, 25)
    ref = cv2.remap(img, coords[1], coords[0], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inside = (coords[0] >= 0) & (coords[0] <= 29) & (coords[1] >= 0) & (coords[1] <= 39)
    np.testing.assert_allclose(out[inside], ref[inside], atol=1e-3)  # OpenCV rounds weights to 1/32
    assert W.shape == (500, 1200) and W.getnnz(axis=1).max() <= 4
    assert np.all(out[(coords[0] < -1) | (coords[1] < -1)] == 0)  # outside the input: nothing


def test_footprints_warped_into_the_reference_land_on_their_planted_centroids():
    rng = np.random.default_rng(1)
    ref_centres = rng.uniform(20, 76, (12, 2))
    A = about_centre(4.0, (6.0, -3.5), 96)  # reference pixel -> session pixel
    session_centres = ref_centres @ A[:, :2].T + A[:, 2]
    fp = disk_footprints(session_centres, np.full(12, 4.5), (96, 96))
    coords = np.einsum("ij,jhw->ihw", A[:, :2], np.mgrid[0:96, 0:96].astype(float)) + A[:, 2, None, None]
    warped = warp_footprints(fp, coords, (96, 96))
    assert warped.shape == (96 * 96, 12) and sp.issparse(warped)
    np.testing.assert_allclose(centroids(warped, (96, 96)), ref_centres, atol=0.05)
    np.testing.assert_allclose(centroids(fp, (96, 96)), session_centres, atol=0.02)


def test_centroids_of_an_empty_footprint_are_nan():
    fp = sp.csc_matrix(([2.0], ([5], [1])), shape=(16, 2), dtype=np.float32)  # pixel (1, 1) of a 4x4 image
    c = centroids(fp, (4, 4))
    assert np.isnan(c[0]).all() and c[1].tolist() == [1.0, 1.0]


def test_masks_keep_the_pixels_above_the_fraction_of_each_maximum():
    fp = sp.csc_matrix(np.array([[1.0, 0.0], [0.3, 5.0], [0.1, 2.0], [0.0, 0.4]], np.float32))
    m = masks(fp, 0.2).toarray()
    assert m.tolist() == [[1, 0], [1, 1], [0, 1], [0, 0]]


def test_pair_overlap_jaccard_and_cosine_on_known_shapes():
    a = np.zeros((10, 10))
    a[2:6, 2:6] = 1  # 16 pixels
    b = np.zeros((10, 10))
    b[4:8, 4:8] = 1  # 16 pixels, 4 shared
    M = sp.csc_matrix(np.stack([a.ravel(), b.ravel()], 1))
    j = pair_overlap(M, M, np.array([0, 0, 1]), np.array([0, 1, 0]), kind="jaccard")
    np.testing.assert_allclose(j, [1.0, 4 / 28, 4 / 28])
    c = pair_overlap(M, M, np.array([0, 0]), np.array([0, 1]), kind="cosine")
    np.testing.assert_allclose(c, [1.0, 4 / 16])
    with pytest.raises(ValueError, match="kind"):
        pair_overlap(M, M, np.array([0]), np.array([0]), kind="dice")


def test_candidate_pairs_are_every_pair_within_max_dist():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0, 100, (80, 2)), rng.uniform(0, 100, (70, 2))
    a[3] = np.nan  # an empty footprint
    i, j, d = candidate_pairs(a, b, 10.0)
    dist = np.linalg.norm(a[:, None] - b[None], axis=2)
    expected = {(x, y) for x, y in zip(*np.nonzero(dist <= 10.0))}
    assert set(zip(i.tolist(), j.tolist())) == expected and 3 not in i
    np.testing.assert_allclose(d, dist[i, j])


def _brute_force(i, j, cost, thresh, na, nb):
    gain = np.zeros((na, nb))
    gain[i, j] = np.minimum(cost - thresh, 0)
    r, c = linear_sum_assignment(gain)
    keep = gain[r, c] < 0
    return set(zip(r[keep].tolist(), c[keep].tolist()))


@pytest.mark.parametrize("seed", range(5))
def test_assignment_by_connected_groups_equals_the_full_hungarian_solution(seed):
    rng = np.random.default_rng(seed)
    na, nb = 60, 55
    ca, cb = rng.uniform(0, 60, (na, 2)), rng.uniform(0, 60, (nb, 2))
    i, j, d = candidate_pairs(ca, cb, 8.0)
    cost = rng.uniform(0, 1.2, i.size)
    m = assign_pairs(Candidates(i, j, d, 1 - cost, cost), thresh_cost=0.7)
    assert set(zip(m.i.tolist(), m.j.tolist())) == _brute_force(i, j, cost, 0.7, na, nb)
    assert len(set(m.i.tolist())) == len(m) and len(set(m.j.tolist())) == len(m) and np.all(m.cost < 0.7)


def test_a_planted_matching_is_recovered():
    rng = np.random.default_rng(3)
    n, shape = 60, (128, 128)
    centres = _packed(rng, n, shape, 11.0)
    radii = rng.uniform(4, 6, n)
    # session b: the same cells moved by up to 1.5 px and reshaped, 10 missing, 6 new, shuffled
    keep = rng.permutation(n)[: n - 10]
    moved = centres[keep] + rng.uniform(-1.5, 1.5, (keep.size, 2))
    extra = _packed(rng, 6, shape, 11.0, avoid=centres)
    order = rng.permutation(keep.size + 6)
    cb = np.concatenate([moved, extra])[order]
    rb = np.concatenate([radii[keep] * rng.uniform(0.9, 1.1, keep.size), rng.uniform(4, 6, 6)])[order]
    fa = disk_footprints(centres, radii, shape, ecc=rng.uniform(-0.15, 0.15, n))
    fb = disk_footprints(cb, rb, shape, ecc=rng.uniform(-0.15, 0.15, cb.shape[0]))
    m = match_sessions(masks(fa, 0.2), masks(fb, 0.2), centroids(fa, shape), centroids(fb, shape))
    truth = {(int(a), int(np.flatnonzero(order == k)[0])) for k, a in enumerate(keep)}
    assert set(zip(m.i.tolist(), m.j.tolist())) == truth


def _packed(rng, n, shape, gap, avoid=None):
    out = [] if avoid is None else list(avoid)
    start = len(out)
    while len(out) < start + n:
        c = rng.uniform(8, np.array(shape) - 8)
        if all(np.hypot(*(c - o)) > gap for o in out):
            out.append(c)
    return np.array(out[start:])


def test_the_distance_term_vetoes_an_overlapping_neighbour():
    shape = (64, 64)
    a = disk_footprints(np.array([[30.0, 30.0]]), np.array([5.0]), shape)
    b = disk_footprints(np.array([[30.0, 34.5]]), np.array([5.0]), shape)  # an overlapping neighbour
    args = masks(a, 0.2), masks(b, 0.2), centroids(a, shape), centroids(b, shape)
    plain = pair_costs(*args, dist_weight=0.0)
    assert plain.i.tolist() == [0] and plain.cost[0] < 0.7  # Jaccard alone would match them
    assert len(match_sessions(*args, dist_weight=0.0)) == 1
    assert len(match_sessions(*args, dist_weight=0.5)) == 0


def test_cosine_cost_matches_the_same_cells():
    rng = np.random.default_rng(4)
    c = _packed(rng, 20, (96, 96), 12.0)
    fa = disk_footprints(c, np.full(20, 5.0), (96, 96))
    fb = disk_footprints(c + 0.5, np.full(20, 5.0), (96, 96))
    m = match_sessions(fa, fb, centroids(fa, (96, 96)), centroids(fb, (96, 96)), kind="cosine")
    assert m.i.tolist() == list(range(20)) and m.j.tolist() == list(range(20))


def test_no_units_give_no_matches():
    empty = sp.csc_matrix((64, 0), dtype=np.float32)
    m = match_sessions(empty, empty, np.zeros((0, 2)), np.zeros((0, 2)))
    assert len(m) == 0 and m.i.dtype == np.int64
    assert list(itertools.chain(*candidate_pairs(np.zeros((0, 2)), np.ones((3, 2)), 5.0))) == []
