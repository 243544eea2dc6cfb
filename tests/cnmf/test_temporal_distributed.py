"""The refit's distributed temporal update equals the in-memory one (``update_temporal``).

Units are updated group by group in unit tasks with the background held fixed, and the
background in frame tasks between sweeps: the in-memory sweep's arithmetic in another
order, with traces and ``A^T Y`` stored as float32 between steps. Stated tolerance: every
trace, spike train and residual within 1e-3 of the largest trace value, background traces
within 1e-3 (relative), AR coefficients within 1e-4 (relative).
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
import xarray as xr

from calcium_dask.cnmf.kernels.products import frames_dot_footprints
from calcium_dask.cnmf.kernels.temporal import update_temporal
from calcium_dask.cnmf.refit import TraceState, _group_order, temporal_update
from calcium_dask.movie_blocks import frame_source
from calcium_dask.store import ResultsStore
from calcium_dask.traces import TraceArrays, TraceLayout

from .cnmf_sim import _calcium, footprint

DIMS = (40, 44)
# two groups of overlapping cells, one lone cell, one pair touching the chunk edge
CENTERS = ((8, 8), (10, 13), (12, 9), (30, 30), (20, 38), (31, 35), (28, 10))
T = 700
TOPTS = dict(p=1, bas_nonneg=False, noise_range=(0.25, 0.5), noise_method="mean", lags=5, fudge_factor=0.96)


pytestmark = pytest.mark.usefixtures("sync_quiet")


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(3)
    A = np.stack([footprint(c, DIMS, sigma=2.5, radius=5.0) for c in CENTERS], 1)
    A /= np.linalg.norm(A, axis=0)
    C = _calcium(rng, len(CENTERS), T, 0.03, (6.0, 12.0))
    yy, xx = np.mgrid[: DIMS[0], : DIMS[1]]
    b = np.stack([(20 + 5 * np.cos(xx / 9.0)).ravel(), (3 + np.sin(yy / 5.0)).ravel()], 1)
    f = np.stack([1 + 0.1 * np.sin(np.arange(T) / 50.0), 1 + 0.2 * np.cos(np.arange(T) / 23.0)])
    Y = A @ C + b @ f + 0.8 * rng.standard_normal((A.shape[0], T))
    movie = np.ascontiguousarray(Y.T.reshape(T, *DIMS), np.float32)
    C0 = np.maximum(C + 0.5 * rng.standard_normal(C.shape), 0).astype(np.float32)  # a rough start
    return movie, sp.csc_matrix(A, dtype=np.float32), b.astype(np.float32), C0, f.astype(np.float32)


def test_layout_spans_are_whole_movie_chunks():
    lay = TraceLayout.for_movie(100_000, 500)
    assert lay.frame_chunk % 500 == 0 and lay.frame_chunk <= 10_000
    spans = lay.frame_spans()
    assert spans[0] == (0, lay.frame_chunk) and spans[-1][1] == 100_000
    short = TraceLayout.for_movie(300, 50)
    assert len(short.frame_spans()) >= 6 and short.frame_chunk % 50 == 0


@pytest.mark.parametrize("iterations", [1, 2])
def test_distributed_update_equals_in_memory(tmp_path, scene, iterations):
    movie, A, b, C0, f0 = scene
    Ab = sp.hstack([A, sp.csc_matrix(b)]).tocsc()
    AtY = frames_dot_footprints(movie, A, b)
    ref = update_temporal(AtY, (Ab.T @ Ab).toarray(), C0, f0, iterations=iterations, **TOPTS)

    mov = xr.DataArray(da.from_array(movie, chunks=(100, -1, -1)), dims=("frame", "y", "x"))
    layout = TraceLayout(T, 200, unit_chunk=2)  # small chunks: groups span several
    arrays = TraceArrays(ResultsStore(str(tmp_path / "s.zarr")), "scratch", layout)
    for name, X in (("c0", C0), ("f0", f0)):
        arrays.create(name, len(X))
        arrays.write(name, X)
    st, tr = temporal_update(frame_source(mov), TraceState(A, b, arrays, "c0", "f0"), TOPTS, iterations, "t", "t")
    # the units come back grouped by overlap: map them to the original order
    order, _ = _group_order(A)
    assert (abs(st.A - A[:, order]) > 0).nnz == 0 and not np.array_equal(order, np.arange(A.shape[1]))
    back = np.argsort(order)
    scale = float(np.abs(ref.C).max())
    for name, want in (("C", ref.C), ("S", ref.S), ("YrA", ref.YrA)):
        got = arrays.read(getattr(tr, name))[back]
        np.testing.assert_allclose(got, want, atol=1e-3 * scale, err_msg=name)
    np.testing.assert_allclose(arrays.read(tr.f), ref.f, rtol=1e-3, atol=1e-3 * float(np.abs(ref.f).max()))
    np.testing.assert_allclose(tr.g[back], ref.g, rtol=1e-4)
    np.testing.assert_allclose(tr.bl[back], ref.bl, atol=1e-3 * scale)


def test_a_group_larger_than_a_chunk_is_swept_in_chained_blocks_of_a_chunk():
    """A task holds a chunk of units and their neighbours, whatever the size of their group
    (a whole group in one task held all its traces: at 200,000 frames a large group killed
    2 GB workers)."""
    from calcium_dask.cnmf.refit import _unit_blocks

    K, chunk = 40, 16  # 40 units in a row, each overlapping the next: one group; then one background
    units = sp.diags([np.ones(K - 1), 2 * np.ones(K), np.ones(K - 1)], [-1, 0, 1])
    M = sp.bmat([[units, np.full((K, 1), 0.5)], [np.full((1, K), 0.5), np.ones((1, 1))]]).tocsr()
    blocks = _unit_blocks(M, K, np.zeros(K, int), chunk)
    assert [(b.u0, b.u1, b.chained) for b in blocks] == [(0, 16, False), (16, 32, True), (32, 40, True)]
    mid = blocks[1]
    assert mid.before.tolist() == [15] and mid.after.tolist() == [32]
    assert mid.M.shape == (16, 16) and mid.Mb.shape == (16, 1) and mid.M_before[0, 0] == 1.0
    assert mid.M_after[-1, 0] == 1.0 and not mid.M_after[:-1].any()
    two = _unit_blocks(M, K, np.r_[np.zeros(16, int), np.ones(24, int)], chunk)  # a group ends at a chunk edge
    assert [b.chained for b in two] == [False, False, True]
