"""r_value: true footprints correlate with their active frames, background blobs do not,
and the reduction over time chunks equals the computation at once."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from scipy import ndimage

from calcium_dask.evaluation.kernels.spatial import (active_frames, background_window_means,
                                           footprint_window, peak_window, r_values,
                                           r_values_in_memory, window_sums)

from .evaluate_sim import sim_movie


@pytest.fixture(scope="module")
def movie():
    return sim_movie(seed=1)


def _isolated_bright(m):
    from calcium_dask.datasets import SimulationParams
    from calcium_dask.datasets.scene import build_scene

    truth = build_scene(SimulationParams.preset("small", T=300, H=64, W=64, K=10,
                                                seed=1)).truth
    return np.flatnonzero((truth.partner < 0) & (m.snr > 3))


def test_true_components_correlate(movie):
    good = _isolated_bright(movie)
    assert good.size >= 4
    r = r_values_in_memory(movie.Y, movie.A, movie.C)
    assert np.all(r[good] > 0.8), r[good]
    rb = r_values_in_memory(movie.Y, movie.A, movie.C, b=movie.b, f=movie.f)
    assert np.all(rb[good] > 0.9), rb[good]
    assert np.median(r) > 0.8


def _blobs_off_neurons(m, n=6, sigma=3.0):
    H, W = m.dims
    occupied = np.asarray(m.A.sum(axis=1)).reshape(H, W) > 0
    far = np.argwhere(ndimage.distance_transform_edt(~occupied) > 3 * sigma)
    yy, xx = np.mgrid[:H, :W]
    for cy, cx in far[:: max(1, len(far) // n)][:n]:
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        blob[blob < 0.05] = 0
        yield blob.reshape(-1, 1)


def test_background_blob_gets_low_r(movie):
    m = movie
    for blob in _blobs_off_neurons(m):
        A2 = sp.hstack([m.A, sp.csc_matrix(blob)]).tocsc()
        C2 = np.vstack([m.C, m.C[[2]]])  # borrow an active neuron's trace
        r = r_values_in_memory(m.Y, A2, C2)[-1]
        rb = r_values_in_memory(m.Y, A2, C2, b=m.b, f=m.f)[-1]
        assert r < 0.6
        assert abs(rb) < 0.3


def test_chunked_reduction_equals_whole(movie):
    m = movie
    tB, tA = peak_window(30.0)
    weights = active_frames(m.C, A=m.A, n_max=10, tB=tB, tA=tA)
    win = footprint_window(m.A, m.dims, dilate=1)
    whole = window_sums(m.Y, weights, win)
    T = m.Y.shape[0]
    parts = sum(window_sums(m.Y[t0 : t0 + 37], weights[:, t0 : t0 + 37], win)
                for t0 in range(0, T, 37))
    assert_allclose(parts, whole, rtol=1e-10, atol=1e-6)
    bg = background_window_means(m.b, m.f, weights, win)
    assert_allclose(r_values(m.A, parts, win, background=bg),
                    r_values(m.A, whole, win, background=bg), atol=1e-9)
    # dense weights give the same sums
    assert_allclose(window_sums(m.Y[:37], weights[:, :37].toarray(), win),
                    window_sums(m.Y[:37], weights[:, :37], win))


def test_weights_average_active_frames(movie):
    m = movie
    w = active_frames(m.C, A=m.A)
    assert w.shape == m.C.shape
    assert_allclose(np.asarray(w.sum(axis=1)).ravel(), 1.0)
    # the background model averaged over the active frames, computed two ways
    win = footprint_window(m.A, m.dims)
    bf = (m.b @ m.f).T.reshape(-1, *m.dims)
    assert_allclose(background_window_means(m.b, m.f, w, win), window_sums(bf, w, win),
                    rtol=1e-9)


def test_active_frames_semantics():
    T = 60
    C = np.zeros((3, T))
    C[0, [10, 30]] = [5.0, 4.0]  # two peaks
    C[1, [30, 50]] = [3.0, 6.0]  # overlaps 0 (shares frame 30's window)
    C[2, 20] = 1.0  # far from the others
    A = sp.csc_matrix(np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    w = active_frames(C, A=A, tB=-2, tA=3, n_max=5, thresh=0.3)
    act = w.toarray() > 0
    assert set(np.flatnonzero(act[0])) == set(range(8, 13))  # 28-32 shared with 1
    assert set(np.flatnonzero(act[1])) == set(range(48, 53))
    assert set(np.flatnonzero(act[2])) == set(range(18, 23))
    # a component active only jointly with its neighbour keeps all its frames
    C2 = np.vstack([C[0], C[0]])
    A2 = sp.csc_matrix(np.ones((2, 2)))
    w2 = active_frames(C2, A=A2, tB=-2, tA=3)
    assert (w2.toarray() > 0).sum(axis=1).tolist() == [10, 10]
    # a constant trace is never active and gets r = 0
    w3 = active_frames(np.ones((1, T)), A=sp.csc_matrix(np.ones((3, 1))))
    assert w3.nnz == 0


def test_peaks_clipped_at_ends_and_n_max():
    C = np.zeros((1, 40))
    C[0, [1, 10, 20, 38]] = [4.0, 3.0, 2.0, 5.0]
    w = active_frames(C, A=sp.csc_matrix(np.ones((1, 1))), tB=-3, tA=4, n_max=2)
    frames = np.flatnonzero(w.toarray()[0])
    assert frames.tolist() == [0, 1, 2, 3, 4, 35, 36, 37, 38, 39]
    assert_allclose(w.data, 0.1)


def test_footprint_window_and_degenerate_r():
    H, W = 6, 7
    img = np.zeros((H, W))
    img[2:4, 3:5] = [[1.0, 2.0], [3.0, 4.0]]
    one = np.zeros(H * W)
    one[0] = 1.0  # a one-pixel footprint
    A = sp.csc_matrix(np.column_stack([img.ravel(), one]))
    win = footprint_window(A, (H, W))
    assert win.sizes.tolist() == [4, 1]
    assert win.pixels[:4].tolist() == [2 * W + 3, 2 * W + 4, 3 * W + 3, 3 * W + 4]
    assert win.bbox.tolist() == [[2, 4, 3, 5], [0, 1, 0, 1]]
    r = r_values(A, 2 * win.values + 1, win)
    assert_allclose(r, [1.0, 0.0])  # too few pixels: 0
    assert_allclose(r_values(None, -win.values, win)[0], -1.0)
    assert r_values(A, np.ones(5), win)[0] == 0.0  # constant mean frame
    big = footprint_window(A, (H, W), dilate=1)
    assert big.sizes[0] == 16 and big.bbox[0].tolist() == [1, 5, 2, 6]
    assert_allclose(np.sort(big.values[: 16])[-4:], [1, 2, 3, 4])


def test_peak_window():
    assert peak_window(30.0) == (-5, 25)
    assert peak_window(10.0) == (-2, 9)
    assert peak_window(3.0) == (-2, 5)
