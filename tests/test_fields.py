"""A two-plane, two-channel ScanImage session through `calcium-dask run`: one results group per
plane with today's contract, shifts from the structural channel, the same as each plane
alone, resumable per plane, and a report with a session overview."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from calcium_dask import StoreError, open_results
from calcium_dask.cli import main
from calcium_dask.datasets import GroundTruth, SimulationParams
from calcium_dask.datasets.scoring import score_shifts
from calcium_dask.datasets.volume import write_scanimage_session
from calcium_dask.fields import run_fields
from calcium_dask.params import Params
from calcium_dask.pipeline import run_pipeline
from calcium_dask.store import ResultsStore

SIM = SimulationParams.preset("small", T=150, H=64, W=64, K=6, seed=11)
SETS = ["--set", "motion.strides=[32, 32]", "--set", "motion.overlaps=[16, 16]"]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    d = tmp_path_factory.mktemp("session")
    write_scanimage_session(d / "session.tif", SIM, nplanes=2, nchannels=2, nflyback=1)
    out = d / "run.zarr"
    with pytest.raises(SystemExit) as done:
        main(["run", str(d / "session.tif"), "--out", str(out), "--align-by-chan", "2", "--workers", "2",
              "--quiet", *SETS])
    assert done.value.code == 0
    return d, ResultsStore(str(out))


def test_each_plane_has_its_group_with_the_results_contract(session):
    d, store = session
    attrs = dict(store.root(mode="r").attrs)
    names = [f["name"] for f in attrs["fields_of_view"]]
    assert names == ["plane0", "plane1"] and attrs["nflyback"] == 1 and attrs["nchannels"] == 2
    assert attrs["fr"] == pytest.approx(SIM.fr)  # the volume rate
    for z, name in enumerate(names):
        plane = store.field(name)
        assert set(plane.stages()) == {"motion", "cnmf", "evaluate"}
        assert plane.stages()["motion"]["align_channel"] == 2
        rec = dict(plane.root(mode="r").attrs)["field_of_view"]
        assert rec["plane"] == z and rec["channel"] == 1 and rec["align_channel"] == 2
        with warnings.catch_warnings():  # as DESIGN.md says users open it, on consolidated metadata
            warnings.simplefilter("error")
            root = xr.open_zarr(store.url, group=name)
            motion = xr.open_zarr(store.url, group=f"{name}/motion")
            xr.open_zarr(store.url, group=f"{name}/summary_align")
        assert {"footprints", "traces", "accepted", "dff"} <= set(root.data_vars)
        assert root.sizes["frame"] == SIM.T and motion.sizes["frame"] == SIM.T
        truth = GroundTruth.load(d / f"truth_plane{z}.npz")
        assert score_shifts(motion["shifts"].values, truth.shifts) < 0.3  # from the static channel


def test_open_results_and_report_by_plane(session, tmp_path):
    from calcium_dask.viz import write_report

    d, store = session
    with pytest.raises(StoreError, match="2 fields of view.*plane=.*fov="):
        open_results(store.url)
    res = open_results(store.url, plane=1)
    assert res.A.shape[0] == 64 * 64 and res.store.group == "plane1"
    assert open_results(store.url, fov="plane0").store.group == "plane0"
    with pytest.raises(StoreError, match="no field of view 'plane5'"):
        open_results(store.url, plane=5)
    html = write_report(store.url, tmp_path / "report.html").read_text()
    assert 'id="session"' in html and 'href="#plane1"' in html and 'id="plane1-components"' in html
    assert html.count("data:image/png;base64") > 10


def test_a_plane_in_the_session_is_the_plane_alone(session, client):
    d, store = session
    write_scanimage_session(d / "alone1.tif", SIM, nplanes=2, nchannels=2, only_plane=1)
    params = Params.from_dict(store.root(mode="r").attrs["params"])
    alone = run_pipeline(str(d / "alone1.tif"), str(d / "alone1.zarr"), params, until="motion")
    ours = store.field("plane1")
    np.testing.assert_allclose(alone.store.read("motion")["shifts"].values, ours.read("motion")["shifts"].values,
                               atol=1e-5)
    np.testing.assert_allclose(alone.store.movie().values, ours.movie().values, atol=1e-3)
    with pytest.raises(StoreError, match="holds a run of one field of view"):
        run_fields(str(d / "session.tif"), alone.store.url, params, client, echo=lambda line: None)


def test_a_session_resumes_plane_by_plane(session, client):
    d, store = session
    params = Params.from_dict(store.root(mode="r").attrs["params"])
    store.field("plane1").clear_mark("evaluate")
    lines: list[str] = []
    res = run_fields(str(d / "session.tif"), store.url, params, client, echo=lines.append)
    assert [r.status for r in res.results] == ["skipped (complete)", "resumed (from evaluate)"]
    assert set(store.field("plane1").stages()) == {"motion", "cnmf", "evaluate"}
    other = params.replace(**{"data.nplanes": 2})
    with pytest.raises(Exception, match="nplanes=2 does not match the file"):
        run_fields(str(d / "session.tif"), store.url, other, client, echo=lines.append)


@pytest.mark.parametrize("change", [{}, {"data.nplanes": 1}, {"data.nchannels": 1}, {"data.functional_chan": 2},
                                   {"data.align_by_chan": 2}])
def test_the_layout_parameters_choose_the_field_of_view(tmp_path, client, change):
    """suite2p's names as parameters (data.nplanes, nchannels, functional_chan, align_by_chan)
    decide which frames of an interleaved movie a run reads: each changed alone from a base
    of 2 planes x 2 channels (functional 1, aligned by itself) changes the field of view."""
    frames = (np.arange(8 * 40)[:, None, None] % 8 * 100 + np.zeros((1, 32, 32))).astype(np.uint16)
    np.save(tmp_path / "m.npy", frames)  # frame t: plane (t // 2) % 2, channel t % 2
    base = {"data.nplanes": 2, "data.nchannels": 2, "data.functional_chan": 1, "data.align_by_chan": None}
    params = Params().replace(**{**base, **change, "motion.pw_rigid": False})
    out = str(tmp_path / "r.zarr")
    run_pipeline(str(tmp_path / "m.npy"), out, params, until="motion", group="plane1",
                 open_kwargs={"plane": 1 if params.data.nplanes > 1 else 0})
    rec = dict(ResultsStore(out, group="plane1").root(mode="r").attrs)["field_of_view"]
    got = (rec["shape"][0], rec["plane"], rec["channel"], rec["align_channel"])
    want = {(): (80, 1, 1, None), ("data.nplanes",): (160, 0, 1, None), ("data.nchannels",): (160, 1, 1, None),
            ("data.functional_chan",): (80, 1, 2, None), ("data.align_by_chan",): (80, 1, 1, 2)}[tuple(change)]
    assert got == want, (change, rec)
