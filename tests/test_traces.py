"""Unit x frame arrays in the store: chunk layout, unit ranges, streamed correlations, row
gathers, each against the answer computed on the whole array in memory."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from calcium_dask.compute import set_quiet
from calcium_dask.store import ResultsStore
from calcium_dask.traces import (FRAME_CHUNK_MAX, Moments, TraceArrays, TraceLayout, gather_rows,
                                 pair_correlations, unit_spans)


@pytest.fixture
def sync():
    set_quiet(True)
    with dask.config.set(scheduler="synchronous"):
        yield
    set_quiet(False)


@pytest.mark.parametrize("n_frames, step", [(1000, 100), (250_000, 700), (37, 50), (20_001, 1000)])
def test_frame_chunks_are_whole_movie_chunks_bounded_and_cover_every_frame(n_frames, step):
    lay = TraceLayout.for_movie(n_frames, step)
    spans = lay.frame_spans()
    assert spans[0][0] == 0 and spans[-1][1] == n_frames
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert lay.frame_chunk % min(step, n_frames) == 0
    assert lay.frame_chunk <= max(FRAME_CHUNK_MAX, step)
    if n_frames > FRAME_CHUNK_MAX:  # a long session: bounded chunks, many of them
        assert len(spans) >= n_frames // FRAME_CHUNK_MAX


def test_unit_ranges_are_whole_chunks_covering_every_unit_once():
    assert unit_spans(40, 16) == [(0, 16), (16, 32), (32, 40)]
    assert unit_spans(32, 16) == [(0, 16), (16, 32)] and unit_spans(0, 16) == []


def test_moments_combined_over_spans_give_the_correlation_of_whole_traces():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 3001)).cumsum(axis=1) + 1e4  # a large mean: no precision lost to it
    pairs = np.array([[0, 1], [2, 4], [3, 3], [4, 0]])
    edges = [0, 1, 700, 701, 2000, 3001]
    m = Moments.of(X[:, :1], pairs)
    for t0, t1 in zip(edges[1:], edges[2:]):
        m = m.combine(Moments.of(X[:, t0:t1], pairs), pairs)
    want = [np.corrcoef(X[a], X[b])[0, 1] for a, b in pairs]
    np.testing.assert_allclose(m.correlations(pairs), want, atol=1e-9)
    assert m.n == X.shape[1]


def test_pair_correlations_of_a_dask_array_by_frame_spans(sync):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(6, 900))
    X[5] = 3.0  # constant: correlation 0, not NaN
    pairs = np.array([[0, 1], [1, 2], [0, 5]])
    got = pair_correlations(da.from_array(X, chunks=(2, 100)), pairs, [(0, 250), (250, 600), (600, 900)], label="t")
    np.testing.assert_allclose(got[:2], [np.corrcoef(X[0], X[1])[0, 1], np.corrcoef(X[1], X[2])[0, 1]], atol=1e-12)
    assert got[2] == 0.0


def test_trace_arrays_round_trip_in_bounded_chunks(tmp_path):
    lay = TraceLayout.for_movie(25_000, 500)
    arrays = TraceArrays(ResultsStore(str(tmp_path / "r.zarr")), "scratch", lay)
    X = np.random.default_rng(2).normal(size=(40, 25_000)).astype(np.float32)
    arrays.create("c", 40)
    for u0, u1 in unit_spans(40, lay.unit_chunk):
        for t0, t1 in lay.frame_spans():
            arrays.write("c", X[u0:u1, t0:t1], u0=u0, t0=t0)
    np.testing.assert_array_equal(arrays.read("c"), X)
    np.testing.assert_array_equal(arrays.read_rows("c", [39, 3]), X[[39, 3]])
    np.testing.assert_array_equal(arrays.lazy("c").compute(scheduler="synchronous"), X)
    chunks = arrays.lazy("c").chunks
    assert max(chunks[0]) == 16 and max(chunks[1]) <= FRAME_CHUNK_MAX


def test_gather_rows_selects_reorders_scales_and_appends(tmp_path, sync):
    lay = TraceLayout(n_frames=300, frame_chunk=100, unit_chunk=4)
    arrays = TraceArrays(ResultsStore(str(tmp_path / "r.zarr")), "g", lay)
    X = np.arange(10 * 300, dtype=np.float32).reshape(10, 300)
    E = -np.ones((2, 300), np.float32)
    arrays.create("x", 10)
    arrays.write("x", X)
    arrays.create("e", 2)
    arrays.write("e", E)
    rows = np.array([7, 0, -1, 3, 3, -1])
    scale = np.array([1, 2, 3, 1, 0.5, 1], np.float32)
    sums = gather_rows(arrays, "x", "y", rows, scale=scale, extra="e", extra_rows=np.array([0, 0, 1, 0, 0, 0]),
                       label="t")
    want = np.stack([X[7], 2 * X[0], 3 * E[1], X[3], 0.5 * X[3], E[0]])
    np.testing.assert_allclose(arrays.read("y"), want)
    np.testing.assert_allclose(sums, np.abs(want).sum(axis=1))


def test_low_rate_traces_reach_the_full_rate_through_the_store_not_the_graph(tmp_path, sync, monkeypatch):
    """The refit's seed traces: each task reads its rows from the store (a graph carrying
    them would pass them through the scheduler), repeats each sample ``factor`` times and
    holds the last one to the end of the movie."""
    import importlib
    import pickle

    refit = importlib.import_module("calcium_dask.cnmf.refit")  # the module (the package names a function refit)

    lay = TraceLayout(n_frames=1000, frame_chunk=250, unit_chunk=4)
    arrays = TraceArrays(ResultsStore(str(tmp_path / "r.zarr")), "scratch", lay)
    X = np.random.default_rng(4).normal(size=(10, 333)).astype(np.float32)
    sent = []
    real = refit.compute
    monkeypatch.setattr(refit, "compute", lambda objs, **kw: (sent.append(len(pickle.dumps(objs))), real(objs, **kw))[1])
    refit._write_initial(arrays, "c_initial", X, 3, ("unit", "frame"))
    want = np.concatenate([np.repeat(X, 3, axis=1), np.repeat(X[:, -1:], 1, axis=1)], axis=1)
    np.testing.assert_array_equal(arrays.read("c_initial"), want)
    assert sent and sent[0] < X.nbytes / 4  # references to the store, not the traces
    assert "c_initial_low" not in arrays._open_group()
    refit._write_initial(arrays, "none", X[:0], 3, ("unit", "frame"))
    assert arrays.n_units("none") == 0
