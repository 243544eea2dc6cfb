"""Chunk-by-footprint products of the refit: equal to the dense products, chunk by chunk."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from calcium_dask.cnmf.kernels.products import (
    add_compensated,
    frames_dot_footprints,
    frames_dot_traces,
    frames_dot_traces_parts,
)


@pytest.fixture(scope="module")
def chunk():
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((60, 9, 11)).astype(np.float32)  # odd sizes, frames first
    A = sp.random(99, 6, density=0.15, random_state=1, format="csc", dtype=np.float32)
    A = sp.csc_matrix(A @ sp.diags(np.array([1, 1, 1, 0, 1, 1], np.float32)))  # an empty footprint
    A.eliminate_zeros()
    return Y, A, rng.random((99, 2)).astype(np.float32)


def test_traces_term_equals_dense_product(chunk):
    Y, A, b = chunk
    out = frames_dot_footprints(Y, A, b)
    ref = np.hstack([A.toarray(), b]).T.astype(np.float64) @ Y.reshape(60, -1).T.astype(np.float64)
    assert out.shape == (8, 60)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert not out[3].any()
    np.testing.assert_allclose(frames_dot_footprints(Y, A), ref[:6], rtol=1e-5, atol=1e-5)


def test_shapes_term_has_the_mask_pattern_and_sums_over_chunks(chunk):
    Y, A, _ = chunk
    C = np.random.default_rng(2).standard_normal((6, 60)).astype(np.float32)
    mask = sp.csc_matrix(sp.random(99, 6, density=0.3, random_state=3, format="csc") != 0)
    mask.sort_indices()
    full = Y.reshape(60, -1).T.astype(np.float64) @ C.T.astype(np.float64)
    out = frames_dot_traces(Y, C, mask)
    np.testing.assert_array_equal(out.indices, mask.indices)
    np.testing.assert_array_equal(out.indptr, mask.indptr)
    np.testing.assert_allclose(out.toarray(), full * mask.toarray(), rtol=1e-6, atol=1e-9)
    parts = sum(frames_dot_traces(Y[t:t + 25], C[:, t:t + 25], mask) for t in range(0, 60, 25))
    np.testing.assert_allclose(parts.toarray(), out.toarray(), rtol=1e-12, atol=1e-12)


def test_compensated_sums_do_not_depend_on_the_chunking():
    rng = np.random.default_rng(5)
    # values of very different magnitudes: plain float64 sums differ with the order
    Y = (rng.standard_normal((500, 4, 5)) * 10.0 ** rng.integers(-6, 6, (500, 1, 1))).astype(np.float32)
    C = rng.standard_normal((3, 500)).astype(np.float32)
    mask = sp.csc_matrix(np.ones((20, 3), bool))
    totals = []
    for step in (500, 64, 7):
        parts = [frames_dot_traces_parts(Y[t:t + step], C[:, t:t + step], mask)
                 for t in range(0, 500, step)]
        total = parts[0]
        for p in parts[1:]:
            total = add_compensated(total, p)
        totals.append(total[0] + total[1])
    np.testing.assert_array_equal(totals[0], totals[1])
    np.testing.assert_array_equal(totals[0], totals[2])
