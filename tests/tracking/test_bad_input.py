"""Bad sessions: other sizes or pixel sizes, no units, alignment that fails, missing stores.
Each is named in a clear message and the other sessions still register."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

import calcium_dask as cd
from calcium_dask.errors import ParamsError, StoreError
from calcium_dask.store import ResultsStore
from calcium_dask.tracking import SessionProblem, TrackingError

from .stores import simulated_stores, write_store
from .test_register import pair_scores


def _read(url):
    ds = xr.open_zarr(url, consolidated=False).load()
    summ = ResultsStore(url).read("summary").load()
    return ds["footprints"].values, summ["mean"].values, summ["correlation"].values


def _zoom(img, factor):
    return ndimage.zoom(img, factor, order=1, grid_mode=True, mode="grid-constant")


@pytest.fixture(scope="module")
def other_field(tmp_path_factory):
    """A store of another field of view (another simulated world)."""
    urls, _, _ = simulated_stores(tmp_path_factory.mktemp("other"), 1, size=96, T=150, seed=11)
    return urls[0]


def test_a_session_with_finer_pixels_is_rescaled_by_its_dxy(three_days, tmp_path):
    urls, truth, units = three_days
    fp, mean, corr = _read(urls[2])
    f = 1.25  # 0.8 um pixels instead of 1 um: 120 x 120
    fine = write_store(tmp_path / "day2.zarr", np.stack([_zoom(x, f) for x in fp]), _zoom(mean, f),
                       _zoom(corr, f), dxy=0.8)
    tr = cd.register_sessions([urls[0], urls[1], fine])
    assert tr.errors == {} and tr.ds["scale"].values[2] == pytest.approx([1.25, 1.25], abs=0.01)
    precision, recall = pair_scores(tr, truth, units)
    assert precision == 1.0 and recall >= 0.95


def test_a_session_of_another_size_without_dxy_is_refused_and_named(three_days, tmp_path):
    urls, truth, units = three_days
    fp, mean, corr = _read(urls[2])
    cropped = write_store(tmp_path / "cropped.zarr", fp[:, :90], mean[:90], corr[:90])
    with pytest.warns(SessionProblem, match=r"cropped: not registered: 90x96 pixels, the reference \(day1\) "
                                            r"96x96.*dxy"):
        tr = cd.register_sessions([urls[0], urls[1], cropped])
    assert list(tr.errors) == ["cropped"] and not tr.ds["registered"].values[2]
    assert (tr.assignments[:, 2] == -1).all()
    assert pair_scores(tr, truth, units, days=[0, 1]) == (1.0, 1.0)  # the others registered and matched


def test_a_session_with_no_units_registers_with_nothing_to_track(three_days, tmp_path):
    urls, _, _ = three_days
    fp, mean, corr = _read(urls[2])
    empty = write_store(tmp_path / "empty.zarr", fp[:0], mean, corr)
    with pytest.warns(SessionProblem, match="empty: no units to track"):
        tr = cd.register_sessions([urls[0], urls[1], empty], out=str(tmp_path / "t.zarr"))
    assert tr.errors == {} and bool(tr.ds["registered"].values[2])
    assert (tr.assignments[:, 2] == -1).all() and int(tr.ds["session_units"].values[2]) == 0


def test_a_session_that_does_not_align_is_named_and_the_others_register(three_days, other_field):
    urls, truth, units = three_days
    with pytest.warns(SessionProblem, match=r"day0-3: not registered: its summary image does not match the "
                                            r"reference's \(correlation"):
        tr = cd.register_sessions([*urls, other_field])
    assert list(tr.errors) == ["day0-3"] and (tr.assignments[:, 3] == -1).all()
    precision, recall = pair_scores(tr, truth, units)  # the first three, unaffected
    assert precision == 1.0 and recall >= 0.95


def test_too_little_overlap_is_a_failure_of_that_session(three_days, tmp_path):
    urls, _, _ = three_days
    fp, mean, corr = _read(urls[2])
    far = write_store(tmp_path / "far.zarr", np.roll(fp, 70, axis=2) * (np.arange(96) >= 70),
                      np.where(np.arange(96) >= 70, np.roll(mean, 70, axis=1), mean.min()),
                      np.where(np.arange(96) >= 70, np.roll(corr, 70, axis=1), 0))
    with pytest.warns(SessionProblem, match="far: not registered"):
        tr = cd.register_sessions([urls[0], urls[1], far])
    assert "far" in tr.errors


def test_fewer_than_two_registered_sessions_is_an_error(three_days, other_field):
    urls, _, _ = three_days
    with pytest.raises(TrackingError, match=r"fewer than two sessions could be registered: day0: its summary"), \
            pytest.warns(SessionProblem):
        cd.register_sessions([other_field, urls[1]], reference=1)
    with pytest.raises(TrackingError, match="at least two sessions"):
        cd.register_sessions([urls[0]])


def test_missing_or_unfinished_stores_and_bad_arguments_are_user_errors(three_days, tmp_path):
    urls, _, _ = three_days
    with pytest.raises(StoreError, match=r"nowhere\.zarr: no results store here"):
        cd.register_sessions([urls[0], str(tmp_path / "nowhere.zarr")])
    fp, mean, corr = _read(urls[0])
    unfinished = write_store(tmp_path / "unfinished.zarr", fp, mean, corr)
    ResultsStore(unfinished).set_attrs(stages={"motion": {}})
    with pytest.raises(StoreError, match=r"unfinished\.zarr: CNMF has not completed"):
        cd.register_sessions([urls[0], unfinished])
    with pytest.raises(ParamsError, match="reference session 5 out of range for 2 sessions"):
        cd.register_sessions(urls[:2], reference=5)
    with pytest.raises(ParamsError, match="2 names for 3 sessions"):
        cd.register_sessions(urls, names=["a", "b"])
    with pytest.raises(TypeError, match="results store URL or a Results"):
        cd.register_sessions([urls[0], 3])


def test_an_interrupted_tracking_store_does_not_open(three_days, tmp_path):
    urls, _, _ = three_days
    out = str(tmp_path / "t.zarr")
    cd.register_sessions(urls[:2], out=out)
    ResultsStore(out).set_attrs(complete=False)  # as a write killed before its last step leaves it
    with pytest.raises(StoreError, match="not completely written"):
        cd.open_tracking(out)
    with pytest.raises(StoreError, match="not a tracking store"):
        cd.open_tracking(urls[0])
