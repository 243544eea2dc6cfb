"""A long one-photon session's patches fitted in time blocks: the blocks' neurons joined into one
set (known footprints and traces), the blocks' spans, and the joined patch's ring and images."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from calcium_dask.cnmf.cnmfe import time_blocks
from calcium_dask.cnmf.kernels.cnmfe import SAME_NEURON, CNMFEPatch, NeuronJoin, PatchJoin
from calcium_dask.cnmf.kernels.corr_pnr import CorrPNR
from calcium_dask.cnmf.kernels.ring import RingModel

H = W = 32


def _blob(cy: float, cx: float, sd: float = 2.5) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    a = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sd**2)).ravel()
    return a / np.linalg.norm(a)


def _A(*cols: np.ndarray) -> sp.csc_matrix:
    return sp.csc_matrix(np.stack(cols, axis=1) if cols else np.zeros((H * W, 0)), dtype=np.float32)


def test_a_neuron_found_in_several_blocks_is_one_unit_and_a_neighbour_stays_apart():
    x1, x2 = _blob(10, 10), _blob(10.4, 9.7)  # one neuron, as two blocks estimate it
    pair = _blob(10, 14)  # its neighbour, overlapping it
    late = _blob(24, 22)  # active only in the third block
    assert 0.2 < x1 @ pair < SAME_NEURON < x1 @ x2
    rng = np.random.default_rng(0)
    c = [rng.random((2, n)).astype(np.float32) + 0.1 for n in (40, 40, 25)]
    c[1] *= 2  # the neuron's later block explains more light: its footprint weighs more
    join = NeuronJoin()
    join.add(_A(x1, pair), c[0], 80.0)
    join.add(_A(), np.zeros((0, 40), np.float32), 80.0)  # a block with no neuron
    join.add(_A(late, x2), c[1], 80.0)
    join.add(_A(pair), c[2][:1], 50.0)
    A, C = join.result(H * W)
    assert A.shape == (H * W, 3) and C.shape == (3, 145)
    w1, w2 = 80 * np.linalg.norm(c[0][0]), 80 * np.linalg.norm(c[1][1])  # the light each explains
    mean = w1 * x1 + w2 * x2
    np.testing.assert_allclose(A[:, 0].toarray().ravel(), mean / np.linalg.norm(mean), atol=1e-6)
    np.testing.assert_allclose(A[:, 1].toarray().ravel(), pair, atol=1e-6)
    np.testing.assert_allclose(A[:, 2].toarray().ravel(), late, atol=1e-6)
    np.testing.assert_allclose(C[0], np.r_[c[0][0], np.zeros(40), (x2 @ x1) * c[1][1], np.zeros(25)], rtol=1e-5)
    np.testing.assert_allclose(C[1], np.r_[c[0][1], np.zeros(80), c[2][0]], rtol=1e-5)
    np.testing.assert_allclose(C[2], np.r_[np.zeros(80), c[1][0], np.zeros(25)])


def test_a_neuron_split_in_two_by_one_block_is_whole_again():
    a, b = _blob(10, 10), _blob(10.3, 10)
    strong, weak = np.full(6, 2.0, np.float32), np.full(6, 0.5, np.float32)
    join = NeuronJoin()
    join.add(_A(b, a), np.stack([weak, strong]), 6.0)  # the stronger defines the neuron
    A, C = join.result(H * W)
    assert A.shape[1] == 1
    np.testing.assert_allclose(C[0], strong + (a @ b) * weak, rtol=1e-6)
    expected = 2 * np.sqrt(6) * a + 0.5 * np.sqrt(6) * b  # weighted by the light each explains
    np.testing.assert_allclose(A[:, 0].toarray().ravel(), expected / np.linalg.norm(expected), atol=1e-6)


def _part(n: int, level: float, seeds: int) -> CNMFEPatch:
    W_ = sp.csr_matrix(np.eye(4, k=1) * level, dtype=np.float32)
    ring = RingModel(W_, np.full(H * W, level, np.float32), (H, W), 2)
    img = np.full((H, W), level, np.float32)
    return CNMFEPatch(_A(_blob(10, 10)), np.ones((1, n), np.float32), ring, np.full(H * W, level, np.float32),
                      (H, W), seeds, CorrPNR(img, 2 * img, img))


def test_a_patch_joined_over_blocks_weights_its_ring_and_noise_by_the_blocks_samples():
    join = PatchJoin()
    join.add(_part(30, 1.0, 2), np.ones((1, 30), np.float32))
    join.add(_part(10, 3.0, 1), np.ones((1, 10), np.float32))
    res = join.result()
    assert res.n_seeds == 3 and res.A.shape[1] == 1 and res.C.shape == (1, 40)
    np.testing.assert_allclose(res.ring.b0, 1.5)  # (30 * 1 + 10 * 3) / 40
    np.testing.assert_allclose(res.ring.W.toarray(), np.eye(4, k=1) * 1.5)
    np.testing.assert_allclose(res.sn, np.sqrt((30 + 10 * 9) / 40))
    np.testing.assert_allclose(res.images.pnr, 6.0)  # the largest of the blocks'
    np.testing.assert_allclose(res.images.correlation, 3.0)


@pytest.mark.parametrize("t, tsub, average, n", [(21600, 2, 1, 4), (7200, 2, 1, 2), (2400, 2, 1, 1),
                                                 (1_000_003, 2, 25, 7), (1001, 3, 2, 3), (10, 2, 1, 4)])
def test_time_blocks_cover_the_session_and_keep_the_traces_rate(t, tsub, average, n):
    spans = time_blocks(t, tsub, average, n)
    assert spans[0][0] == 0 and spans[-1][1] == t
    assert all(a[1] == b[0] for a, b in zip(spans[:-1], spans[1:]))
    assert all((b - a) % (tsub * average) == 0 for a, b in spans[:-1])
    lengths = [b - a for a, b in spans]
    assert len(spans) == n and max(lengths) - min(lengths) <= 2 * tsub * average  # about equal
    # the blocks' samples at the client's rate add up to the session's
    joined = sum(-(-((b - a) // tsub) // average) for a, b in spans)
    assert joined == -(-(t // tsub) // average)
