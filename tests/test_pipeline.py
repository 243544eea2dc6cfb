"""The whole pipeline on a simulated movie: right neurons, resumable, guarded against mixing runs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from calcium_dask import StoreError
from calcium_dask.cli import demo_params
from calcium_dask.datasets import GroundTruth
from calcium_dask.evaluation import r_values_in_memory
from calcium_dask.evaluation.orchestrate import evaluate_components, footprints_matrix
from calcium_dask.params import Params
from calcium_dask.pipeline import run_pipeline
from calcium_dask.store import ResultsStore
from calcium_dask.datasets.scoring import frame_offset, score_sources, shift_images

from .test_store import _views_agree

PARAMS = demo_params(30.0).replace(**{"motion.strides": (32, 32), "motion.overlaps": (16, 16)})


@pytest.fixture(scope="module")
def full_run(client, sim_small, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run") / "r.zarr")
    summary = run_pipeline(str(sim_small), out, PARAMS)
    return summary, sim_small


def test_every_stage_runs_and_finds_the_neurons(full_run):
    summary, movie = full_run
    assert [r["stage"] for r in summary.rows] == ["motion", "cnmf", "evaluate"]
    assert all(r["status"] == "ran" for r in summary.rows)
    store = summary.store
    ds = store.read()
    truth = GroundTruth.load(movie.parent / "truth.npz")
    shifts = store.read("motion")["shifts"].values
    truth_fp = shift_images(truth.footprints, frame_offset(shifts, truth.shifts))
    ok = ds["accepted"].values
    sc = score_sources(truth_fp, truth.C, ds["footprints"].values[ok], ds["traces"].values[ok])
    assert sc["recall"] >= 0.8 and sc["precision"] >= 0.8, sc
    assert sc["trace_corr_median"] >= 0.9, sc
    assert np.isfinite(ds["dff"].values).all() and ds["dff"].dims == ("unit", "frame")
    attrs = dict(store.root(mode="r").attrs)
    assert attrs["params"] == PARAMS.to_dict() and attrs["input"] == str(movie)
    assert set(attrs["stages"]) == {"motion", "cnmf", "evaluate"}
    # as DESIGN.md says users open it: xarray.open_zarr, on consolidated metadata
    _views_agree(store.url, [None, "motion", "summary", "summary_raw", "movie"])


def test_rerun_resumes_and_refuses_other_parameters(full_run):
    summary, movie = full_run
    url = summary.store.url
    again = run_pipeline(str(movie), url, PARAMS)
    assert [r["status"] for r in again.rows] == ["done before"] * 3
    with pytest.raises(StoreError, match="other parameters"):
        run_pipeline(str(movie), url, PARAMS.replace(**{"merging.merge_thr": 0.7}))
    before = summary.store.read()["accepted"].values.copy()
    rerun = run_pipeline(str(movie), url, PARAMS, from_stage="evaluate")
    assert [r["status"] for r in rerun.rows] == ["done before", "done before", "ran"]
    np.testing.assert_array_equal(summary.store.read()["accepted"].values, before)


def test_unknown_stage_is_a_clear_error(full_run, tmp_path):
    summary, movie = full_run
    with pytest.raises(StoreError, match="unknown stage 'cmnf'"):
        run_pipeline(str(movie), str(tmp_path / "x.zarr"), PARAMS, until="cmnf")


def test_r_value_reduction_equals_in_memory(full_run):
    summary, _ = full_run
    store: ResultsStore = summary.store
    movie = store.movie()
    ds = store.read().load()
    ev = evaluate_components(movie, ds, PARAMS)
    A = footprints_matrix(ds["footprints"].values)
    b = ds["background_footprints"].values.reshape(len(ds["background"]), -1).T
    tB_tA = __import__("calcium_dask.evaluation", fromlist=["peak_window"]).peak_window(30.0)
    expected = r_values_in_memory(movie.values, sp.csc_matrix(A), ds["traces"].values, b=b,
                                  f=ds["background_traces"].values, n_max=10, tB=tB_tA[0], tA=tB_tA[1])
    np.testing.assert_allclose(ev["r_value"].values, expected, atol=1e-4)


def test_report_command(full_run, tmp_path, capsys):
    from calcium_dask.cli import main

    summary, _ = full_run
    out = tmp_path / "rep.html"
    with pytest.raises(SystemExit) as e:
        main(["report", summary.store.url, "-o", str(out)])
    assert e.value.code == 0
    html = out.read_text()
    assert "data:image/png;base64," in html and "Parameters" in html


@pytest.mark.slow  # about 30 s on 2 cores; the stages it runs are tested above, the notebook runs them too
def test_demo_command_scores_itself(tmp_path):
    """The README's first command: simulate, run every stage, report, score against the truth."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "calcium_dask", "demo", "--out", str(tmp_path / "demo"),
                        "--workers", "2", "--quiet"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    line = next(s for s in p.stdout.splitlines() if s.startswith("accepted units:"))
    f1 = float(line.split("F1 ")[1].split()[0])
    assert f1 >= 0.8, line
    assert (tmp_path / "demo" / "report.html").exists()


@pytest.mark.slow  # about 45 s on 2 cores
def test_one_photon_demo_runs_cnmfe_and_scores_itself(tmp_path):
    """calcium-dask demo --one-photon: a miniscope movie through the miniscope preset (CNMF-E),
    scored against its truth, its seeding images in the store and the report."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "calcium_dask", "demo", "--one-photon", "--out", str(tmp_path / "demo"),
                        "--workers", "2", "--quiet"], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    motion = next(s for s in p.stdout.splitlines() if s.startswith("motion:"))
    rmse, none = float(motion.split("error ")[1].split()[0]), float(motion.split("correction: ")[1].split()[0])
    assert rmse < min(0.5, none), motion
    line = next(s for s in p.stdout.splitlines() if s.startswith("accepted units:"))
    assert float(line.split("F1 ")[1].split()[0]) >= 0.7, line
    store = ResultsStore(str(tmp_path / "demo" / "results.zarr"))
    assert store.read("corr_pnr")["seeds"].any() and store.read()["spread"].size
    assert "One-photon seeding" in (tmp_path / "demo" / "report.html").read_text()


def test_force_with_other_parameters_replaces_every_unit_variable(full_run, tmp_path):
    """A forced rerun that finds another number of units leaves no variable of the old run."""
    import shutil

    summary, movie = full_run
    url = str(tmp_path / "copy.zarr")
    shutil.copytree(summary.store.url, url)
    other = PARAMS.replace(**{"init.K": 2})
    rerun = run_pipeline(str(movie), url, other, force=True)
    assert [r["status"] for r in rerun.rows] == ["ran"] * 3
    ds = ResultsStore(url).read()  # raises if unit sizes disagree
    assert ds.sizes["unit"] == ds["accepted"].size == ds["dff"].shape[0]


def test_results_evaluate_and_detrend_like_the_pipeline(full_run):
    """``Results.evaluate_components`` / ``detrend_df_f`` (CaImAn's estimates methods) give the
    stored evaluation with the store's parameters, and follow parameters given to them."""
    from calcium_dask.results import open_results

    summary, _ = full_run
    res = open_results(summary.store.url)
    again = res.evaluate_components()
    for name in ("snr", "r_value", "cnn_pred", "accepted", "duplicate_of"):
        np.testing.assert_allclose(again.ds[name].values, res.ds[name].values, atol=1e-6, err_msg=name)
    strict = res.evaluate_components(params=PARAMS.replace(**{"quality.min_SNR": 1e6, "quality.rval_thr": 1.0,
                                                              "quality.use_cnn": False}))
    assert not strict.ds["accepted"].values.any() and res.ds["accepted"].values.any()
    np.testing.assert_allclose(res.detrend_df_f().F_dff, res.F_dff, rtol=1e-5, atol=1e-6)
    other = res.detrend_df_f(quantileMin=50, flag_auto=False)
    assert other.F_dff.shape == res.F_dff.shape and not np.allclose(other.F_dff, res.F_dff)
    assert res.F_dff is not None and np.array_equal(res.ds["dff"].values, summary.store.read()["dff"].values)


def test_a_fragment_of_an_accepted_cell_is_rejected_as_its_duplicate(full_run):
    """A planted piece of the strongest cell, with the cell's trace, passes every metric on
    its own; evaluation names it a duplicate of the cell and rejects it."""
    import xarray as xr

    summary, _ = full_run
    store: ResultsStore = summary.store
    ds = store.read().load()
    k = int(np.argmax(np.where(ds["accepted"].values, ds["snr"].values, -np.inf)))
    fp = ds["footprints"].values[k]
    cy = int(round(np.average(np.arange(fp.shape[0]), weights=fp.sum(1))))
    piece = fp.copy()
    piece[:cy] = 0
    label = int(ds["unit"].values.max()) + 1
    extra = ds.isel(unit=[k]).assign_coords(unit=[label])
    extra["footprints"].values[0] = piece
    extra["traces"].values[0] = 0.8 * ds["traces"].values[k]
    both = xr.concat([ds, extra], "unit", data_vars="minimal", coords="minimal", compat="override")
    ev = evaluate_components(store.movie(), both, PARAMS)
    assert ev["duplicate_of"].values[-1] == ds["unit"].values[k] and not ev["accepted"].values[-1]
    # the planted fragment changes nothing for the other units
    assert ev["accepted"].values[k] and (ev["duplicate_of"].values[:-1] == ds["duplicate_of"].values).all()
    kept = evaluate_components(store.movie(), both, PARAMS.replace(**{"quality.thresh_subset": 2.0}))
    assert kept["accepted"].values[-1] and (kept["duplicate_of"].values == -1).all()


def test_var_name_hdf5_names_the_movie_in_an_hdf5_file(tmp_path):
    """CaImAn's ``var_name_hdf5`` picks the dataset when the caller names none."""
    from calcium_dask.params import Params
    from calcium_dask.pipeline import _open_options

    p = Params.from_caiman({"var_name_hdf5": "scan"})
    assert _open_options(str(tmp_path / "m.h5"), p, None) == {"dataset": "scan"}
    assert _open_options([str(tmp_path / "a.hdf5")], p, {}) == {"dataset": "scan"}
    assert _open_options(str(tmp_path / "m.h5"), p, {"dataset": "other"}) == {"dataset": "other"}
    assert _open_options(str(tmp_path / "m.tif"), p, None) == {}
    assert _open_options(str(tmp_path / "m.h5"), Params(), None) == {}  # the reader prefers 'mov'
    assert _open_options(str(tmp_path / "m.data"), p, {"engine": "hdf5"})["dataset"] == "scan"


def test_pipeline_reads_the_var_name_hdf5_dataset(client, tmp_path, small_array):
    import h5py

    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["scan"] = small_array
        f["other"] = small_array[:, ::-1]
    params = PARAMS.replace(**{"data.var_name_hdf5": "scan", "motion.pw_rigid": False,
                               "motion.max_shifts": (2, 2)})
    summary = run_pipeline(str(path), str(tmp_path / "r.zarr"), params, until="motion")
    assert summary.rows[0]["status"] == "ran"
    raw_max = summary.store.read("summary_raw")["max"].values
    np.testing.assert_allclose(raw_max, small_array.max(0))  # 'scan', not the flipped 'other'
    with pytest.raises(Exception, match="dataset="):
        run_pipeline(str(path), str(tmp_path / "r2.zarr"), PARAMS, until="motion")


def test_a_unit_following_the_motion_in_the_filled_border_is_rejected(full_run):
    """With a /motion whose shifts follow one accepted unit's trace and whose filled border
    covers it, evaluation names it a residue of the correction; ``max_motion_corr=None``
    keeps it. The pipeline's own run records the two measures for every unit."""
    import xarray as xr

    summary, _ = full_run
    store: ResultsStore = summary.store
    ds = store.read().load()
    assert np.isfinite(ds["motion_corr"].values).all() and np.isfinite(ds["border_weight"].values).all()
    k = int(np.argmax(np.where(ds["accepted"].values, ds["snr"].values, -np.inf)))
    raw = ds["traces"].values[k] + ds["residuals"].values[k]
    rows = np.nonzero(ds["footprints"].values[k].sum(1))[0]
    dy = (raw - raw.min()) / np.ptp(raw) * (rows.max() + 1)  # its own trace, up to past its last row
    motion = xr.Dataset({"shifts": (("frame", "axis"), np.column_stack([dy, np.zeros_like(dy)]))})
    ev = evaluate_components(store.movie(), ds, PARAMS, motion)
    assert ev["motion_corr"].values[k] > 0.99 and ev["border_weight"].values[k] == 1.0
    assert not ev["accepted"].values[k]
    kept = evaluate_components(store.movie(), ds, PARAMS.replace(**{"quality.max_motion_corr": None}), motion)
    assert kept["accepted"].values[k]


def test_a_unit_made_of_background_is_rejected(full_run):
    """A neuron-shaped unit whose trace is the background's drift (and no exceptional
    event) is background CNMF took for a source: rejected; ``max_background_corr=None``
    keeps it. The pipeline's own run records the measure for every unit."""
    summary, _ = full_run
    store: ResultsStore = summary.store
    ds = store.read().load()
    bc = ds["background_corr"].values
    assert np.isfinite(bc).all() and (bc >= 0).all() and (bc <= 1).all()
    k = int(np.argmax(np.where(ds["accepted"].values, ds["cnn_pred"].values, -np.inf)))
    f = ds["background_traces"].values
    planted = ds.copy(deep=True)
    planted["traces"].values[k] = 0.4 * ds["traces"].values[k].max() * (f[0] - f[0].min()) / np.ptp(f[0])
    # accepted on its shape alone, whatever its trace: the background test is the only one left
    params = PARAMS.replace(**{"quality.min_SNR": 1e9, "quality.SNR_lowest": 0.0, "quality.rval_thr": 1.0,
                               "quality.min_cnn_thr": float(ds["cnn_pred"].values[k]) - 1e-6})
    ev = evaluate_components(store.movie(), planted, params)
    assert ev["background_corr"].values[k] > 0.99 and not ev["accepted"].values[k]
    kept = evaluate_components(store.movie(), planted, params.replace(**{"quality.max_background_corr": None}))
    assert kept["accepted"].values[k]
    dropped = kept["accepted"].values & ~ev["accepted"].values  # the test only ever removes units
    assert not (ev["accepted"].values & ~kept["accepted"].values).any()
    assert (ev["background_corr"].values[dropped] >= 0.85).all()


def test_a_store_of_an_older_version_without_newer_parameters_resumes(tmp_path):
    """Parameters added since a store was written take their defaults: it is not 'a run with
    other parameters' (a session stopped mid-way resumes after an upgrade)."""
    from calcium_dask.pipeline import _check_resumable

    store = ResultsStore(str(tmp_path / "r.zarr"))
    params = Params()
    older = params.to_dict()
    del older["quality"]["max_spread"], older["tracking"]
    store.set_attrs(params=older, stages={"motion": {"seconds": 1.0}}, input_checksum="c")
    _check_resumable(store, params, "c", force=False)
    with pytest.raises(StoreError, match="other parameters"):
        _check_resumable(store, params.replace(**{"init.K": 7}), "c", force=False)


def test_other_parameters_rerun_from_the_first_stage_that_reads_them(tmp_path):
    """New CNMF parameters on a store whose motion is done: accepted when CNMF reruns
    (``--from cnmf``, or CNMF not run yet), refused when a kept stage read them."""
    from calcium_dask.pipeline import _check_resumable

    store = ResultsStore(str(tmp_path / "r.zarr"))
    params = Params()
    marks = {s: {"params_digest": params.digest(s)} for s in ("motion", "cnmf")}
    store.set_attrs(params=params.to_dict(), stages=marks, input_checksum="c")
    merge = params.replace(**{"merging.merge_thr": 0.7})
    with pytest.raises(StoreError, match="other parameters for stage 'cnmf'; use --from cnmf"):
        _check_resumable(store, merge, "c", force=False)
    _check_resumable(store, merge, "c", force=False, from_stage="cnmf")
    _check_resumable(store, merge, "c", force=False, from_stage="motion")
    with pytest.raises(StoreError, match="stage 'cnmf'"):
        _check_resumable(store, merge, "c", force=False, from_stage="evaluate")
    with pytest.raises(StoreError, match="stage 'motion'"):
        _check_resumable(store, params.replace(**{"motion.max_shifts": (4, 4)}), "c", force=False, from_stage="cnmf")
    store.set_attrs(stages={"motion": marks["motion"]})
    _check_resumable(store, merge, "c", force=False)  # CNMF has not run: nothing to redo
