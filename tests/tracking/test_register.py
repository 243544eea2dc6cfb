"""register_sessions on results stores of simulated days: identities, transforms, the store
contract, lazy dF/F references, results in memory, and a distributed client."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import calcium_dask as cd
from calcium_dask.errors import StoreError
from calcium_dask.params import Params

from .stores import write_store


def pair_scores(tracking, truth, units, days=None):
    """(precision, recall) of the matched pairs over every pair of the simulated days."""
    tp = n_pred = n_true = 0
    days = range(len(units)) if days is None else days
    for a in days:
        for b in (b for b in days if b > a):
            ida, idb = truth.identities[a][units[a]], truth.identities[b][units[b]]
            true = {(i, j) for i, x in enumerate(ida) for j, y in enumerate(idb) if x == y}
            pred = {tuple(int(v) for v in p) for p in tracking.matched_pairs(a, b)}
            tp, n_pred, n_true = tp + len(true & pred), n_pred + len(pred), n_true + len(true)
    return tp / max(n_pred, 1), tp / max(n_true, 1)


def test_simulated_days_are_aligned_and_their_neurons_tracked(three_days, tmp_path):
    urls, truth, units = three_days
    tr = cd.register_sessions(urls, out=str(tmp_path / "tracking.zarr"))
    precision, recall = pair_scores(tr, truth, units)
    assert precision == 1.0 and recall >= 0.97, (precision, recall)
    # the stored transform puts each day's pixels where the truth says, to about half a pixel
    ref, H = tr.reference, 96
    p = np.stack(np.mgrid[0:H, 0:H], -1).reshape(-1, 2).astype(float)
    from calcium_dask.tracking.kernels import map_coordinates_of

    oy, ox = tr.ds.attrs["reference_origin"]
    canvas = (tr.ds.sizes["y"], tr.ds.sizes["x"])
    assert tr.ds.attrs["reference_shape"] == [H, H] and canvas[0] > H and canvas[1] > H  # the union of the fields
    for s in range(3):
        flow = tr.ds["flow"].values[s]
        found = map_coordinates_of(tr.ds["affine"].values[s], flow if flow.any() else None, canvas)
        found = found[:, oy:oy + H, ox:ox + H]  # the reference's own field
        true = truth.day_of(s, truth.world_of(ref, p)).T.reshape(2, H, H)
        err = np.hypot(*(found - true))[12:-12, 12:-12]
        assert np.sqrt((err ** 2).mean()) < 0.6, (s, np.sqrt((err ** 2).mean()))  # cells are ~10 px wide


def test_the_tracking_store_is_readable_by_xarray_and_names_store_positions(three_days, tmp_path):
    urls, truth, units = three_days
    # day 1 with a third of its units rejected by evaluation: they are never tracked
    ds1 = xr.open_zarr(urls[1], consolidated=False).load()
    accepted = np.arange(ds1.sizes["unit"]) % 3 != 0
    from calcium_dask.store import ResultsStore

    summ = ResultsStore(urls[1]).read("summary").load()
    day1 = write_store(tmp_path / "day1.zarr", ds1["footprints"].values, summ["mean"].values,
                       summ["correlation"].values, accepted=accepted)
    out = tmp_path / "t.zarr"
    tr = cd.register_sessions([urls[0], day1, urls[2]], out=str(out))
    ds = xr.open_zarr(str(out))
    assert ds["assignments"].dims == ("tracked_unit", "session") and ds["assignments"].dtype == np.int64
    assert list(ds["session"].values) == ["day0", "day1", "day2"]
    assert list(ds["session_url"].values) == [urls[0], str(tr.ds["session_url"].values[1]), urls[2]]
    canvas = (ds.sizes["y"], ds.sizes["x"])
    assert ds["footprints"].dims == ("tracked_unit", "y", "x") and ds["footprints"].shape[1:] == canvas
    assert ds["affine"].shape == (3, 2, 3) and ds["flow"].shape == (3, 2, *canvas)
    assert ds.attrs["complete"] is True and ds.attrs["reference"] == 1
    assert ds.attrs["params"]["thresh_cost"] == 0.7 and ds.attrs["params"]["max_dist"] == 10.0
    A = ds["assignments"].values
    tracked_1 = A[A[:, 1] >= 0, 1]
    assert set(tracked_1.tolist()) == set(np.flatnonzero(accepted).tolist())  # store positions, accepted only
    for s in range(3):  # every session's tracked units are distinct units of its store
        col = A[A[:, s] >= 0, s]
        assert len(col) == len(set(col.tolist()))
    # the union footprints peak where the units are
    conf = ds["confidence"].values
    assert np.all((conf[np.isfinite(conf)] > 0) & (conf[np.isfinite(conf)] <= 1))
    assert np.isnan(conf[(A >= 0).sum(1) == 1]).all()


def test_dff_is_read_lazily_from_the_sessions_stores(three_days, tmp_path):
    urls, _, _ = three_days
    tr = cd.register_sessions(urls, out=str(tmp_path / "t.zarr"))
    tr = cd.open_tracking(str(tmp_path / "t.zarr"))
    for s in range(3):
        d = tr.dff(s)
        assert d.dims == ("tracked_unit", "frame") and d.chunks is not None  # dask-backed: a reference
        values = d.values  # the stores' dF/F of unit k is k everywhere (see stores.write_store)
        idx = tr.assignments[:, s]
        np.testing.assert_array_equal(values[idx >= 0, 0], idx[idx >= 0])
        assert np.isnan(values[idx < 0]).all()
    both = tr.found_in_all()[0]
    per_session = tr.unit_dff(int(both))
    assert list(per_session) == tr.sessions
    assert [float(v[0]) for v in per_session.values()] == [float(k) for k in tr.assignments[both]]


def test_results_in_memory_and_urls_give_the_same_tracking(three_days):
    urls, _, _ = three_days
    from_urls = cd.register_sessions(urls)
    mixed = cd.register_sessions([cd.open_results(urls[0]), urls[1], cd.open_results(urls[2])])
    np.testing.assert_array_equal(from_urls.assignments, mixed.assignments)
    assert from_urls.url is None and mixed.sessions == ["day0", "day1", "day2"]


def test_a_distributed_client_gives_the_same_tracking(three_days, client):
    urls, _, _ = three_days
    with_client = cd.register_sessions(urls)
    import dask

    with dask.config.set(scheduler="threads"), _no_client(client):
        without = cd.register_sessions(urls)
    np.testing.assert_array_equal(with_client.assignments, without.assignments)
    np.testing.assert_allclose(with_client.ds["affine"].values, without.ds["affine"].values)


class _no_client:
    """Make the test's client not the default one for a moment."""

    def __init__(self, client):
        self.client = client

    def __enter__(self):
        from distributed.client import _current_client, default_client  # noqa: F401

        self.token = _current_client.set(None)
        import distributed

        self.saved = distributed.client._global_clients.copy()
        distributed.client._global_clients.clear()
        return self

    def __exit__(self, *exc):
        import distributed
        from distributed.client import _current_client

        distributed.client._global_clients.update(self.saved)
        _current_client.reset(self.token)


def test_reference_and_names_can_be_chosen(three_days):
    urls, _, _ = three_days
    tr = cd.register_sessions(urls, Params().replace(**{"tracking.reference": 0}), names=["a", "b", "c"])
    assert tr.reference == 0 and tr.sessions == ["a", "b", "c"]
    assert float(tr.ds["rotation_deg"].values[0]) == 0.0
    assert cd.register_sessions(urls, reference=2).reference == 2


def test_writing_over_a_results_store_is_refused(three_days, tmp_path):
    urls, _, _ = three_days
    with pytest.raises(StoreError, match="not a tracking store"):
        cd.register_sessions(urls, out=urls[0])
    assert "footprints" in xr.open_zarr(urls[0], consolidated=False)  # untouched


def test_session_footprints_are_each_stores_own_units_on_the_common_frame(three_days):
    urls, _, _ = three_days
    tr = cd.register_sessions(urls)
    ref, t = tr.reference, tr.found_in_all()[:4]
    oy, ox = tr.ds.attrs["reference_origin"]
    H, W = tr.ds.attrs["reference_shape"]
    own = xr.open_zarr(urls[ref], consolidated=False)["footprints"].values[tr.assignments[t, ref]]
    own = own / own.max(axis=(1, 2), keepdims=True)
    fp = tr.session_footprints(ref, t)
    np.testing.assert_allclose(fp[:, oy:oy + H, ox:ox + W], own, atol=1e-5)  # the reference: only moved
    assert fp.sum() == pytest.approx(fp[:, oy:oy + H, ox:ox + W].sum())
    # away from the fields' edges (where each session sees its own part of a cell)
    centroid = tr.ds["centroid"].values
    inner = tr.found_in_all()
    inner = inner[((centroid[inner] - [oy, ox] > 15) & (centroid[inner] - [oy, ox] < [H - 15, W - 15])).all(1)]
    t = inner[:4]
    other = tr.session_footprints(0, t)
    yy, xx = np.mgrid[0:other.shape[1], 0:other.shape[2]]
    for k in range(len(t)):  # another session's unit lies on the same cell (not on the same pixels)
        w = other[k] / other[k].sum()
        centre = np.array([(w * yy).sum(), (w * xx).sum()])
        assert np.hypot(*(centre - tr.ds["centroid"].values[t[k]])) < 1.5
