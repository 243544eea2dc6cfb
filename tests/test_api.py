"""The top-level API the issues name (``calcium_dask.motion_correct(movie, params, store=...)``,
``calcium_dask.cnmf(movie, params)``, ``calcium_dask.Results``...), loaded on first use."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

import calcium_dask as cd


@pytest.mark.parametrize("name, module", [
    ("motion_correct", "calcium_dask.motion"), ("apply_shifts", "calcium_dask.motion"),
    ("corrected_movie", "calcium_dask.motion"), ("evaluate", "calcium_dask.pipeline"),
    ("summary_images", "calcium_dask.summary"), ("Results", "calcium_dask.results"),
    ("open_results", "calcium_dask.results"), ("run_pipeline", "calcium_dask.pipeline"),
    ("connect", "calcium_dask.cluster"),
])
def test_top_level_names_are_the_stage_functions(name, module):
    import importlib

    assert getattr(cd, name) is getattr(importlib.import_module(module), name)
    assert name in cd.__all__ and name in dir(cd)


def test_cnmf_is_the_subpackage_and_calls_its_cnmf_function(monkeypatch):
    import calcium_dask.cnmf as package

    assert cd.cnmf is package and callable(cd.cnmf)
    calls = []
    monkeypatch.setattr(package, "cnmf", lambda movie, params, *, store=None: calls.append((movie, params, store)))
    cd.cnmf("movie", "params", store="run.zarr")
    assert calls == [("movie", "params", "run.zarr")]
    with pytest.raises(TypeError):
        cd.cnmf("movie", "params", "run.zarr")  # store is keyword-only, as in the function


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'motion_corect'"):
        cd.motion_corect  # noqa: B018


def test_import_stays_light():
    code = ("import sys, calcium_dask; "
            "print(sorted(m for m in ('distributed', 'calcium_dask.motion', 'calcium_dask.cnmf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- the chain a notebook user runs -----------------------------------------------------------
CHAIN = {"fr": 30, "motion": {"pw_rigid": False, "max_shifts": (6, 6)}, "compute": {"chunk_frames": 100}}


def test_the_chain_without_a_store(client, sim_small, tmp_path):
    """connect -> open_movie -> motion_correct -> cnmf -> evaluate -> save -> open_results, each
    step taking what the last returned; no store until the end (a scratch store holds the traces)."""
    params = cd.Params.from_caiman(CHAIN)
    movie = cd.open_movie(sim_small)
    mc = cd.motion_correct(movie, params)
    est = cd.cnmf(mc, params)
    assert isinstance(est, cd.Results) and "accepted" not in est.ds and est.store is not None
    H, W = est.dims
    k = est.ds.sizes["unit"] // 2
    # one pixel order everywhere: A's column k is footprint k in C order
    np.testing.assert_array_equal(est.A[:, k].toarray().reshape(H, W), est.ds["footprints"].values[k])
    res = cd.evaluate(est, params)
    assert res.ds["accepted"].values.any() and res.F_dff.shape == (est.ds.sizes["unit"], movie.shape[0])
    store = res.save(str(tmp_path / "saved.zarr"))
    back = cd.open_results(store.url)
    np.testing.assert_array_equal(back.ds["accepted"].values, res.ds["accepted"].values)
    np.testing.assert_allclose(np.asarray(back.F_dff), np.asarray(res.F_dff), rtol=1e-6)
    with pytest.raises(cd.StoreError, match="save them to another URL"):
        back.save(store.url)


def test_each_step_given_a_store_resumes_it(client, sim_small, tmp_path, monkeypatch):
    import calcium_dask.cnmf as cnmf_pkg
    import calcium_dask.pipeline as pipeline

    params = cd.Params.from_caiman(CHAIN)
    store = str(tmp_path / "run.zarr")
    movie = cd.open_movie(sim_small)
    mc = cd.motion_correct(movie, params, store=store)
    fit_patches = cnmf_pkg.fit_patches
    monkeypatch.setattr(cnmf_pkg, "fit_patches", lambda *a, **k: (time.sleep(1.0), fit_patches(*a, **k))[1])
    est = cd.cnmf(mc, params, store=store)
    monkeypatch.undo()
    res = cd.evaluate(est, params, store=store)
    assert set(res.store.stages()) == {"motion", "cnmf", "evaluate"}
    assert res.store.stages()["cnmf"]["seconds"] >= 1.0  # the stage's time counts the patches' fit
    monkeypatch.setattr(cnmf_pkg, "fit_patches", lambda *a, **k: pytest.fail("CNMF recomputed"))
    monkeypatch.setattr(pipeline.Results, "evaluate_components", lambda *a, **k: pytest.fail("recomputed"))
    again = cd.evaluate(cd.cnmf(cd.motion_correct(movie, params, store=store), params, store=store), params,
                        store=store)
    np.testing.assert_array_equal(again.ds["accepted"].values, res.ds["accepted"].values)
    # other evaluation thresholds: only the evaluation runs again
    monkeypatch.undo()
    monkeypatch.setattr(cnmf_pkg, "fit_patches", lambda *a, **k: pytest.fail("CNMF recomputed"))
    strict = cd.evaluate(again, params.replace(**{"quality.min_SNR": 50.0, "quality.rval_thr": 1.0,
                                                  "quality.use_cnn": False}), store=store)
    assert strict.ds["accepted"].sum() < res.ds["accepted"].sum()


def test_a_scratch_store_needs_workers_on_this_machine(monkeypatch):
    import calcium_dask.traces as traces

    class Remote:
        def scheduler_info(self):
            return {"workers": {"tcp://10.1.2.3:4567": {}}}

    monkeypatch.setattr("distributed.get_client", lambda: Remote())
    with pytest.raises(cd.StoreError, match="10.1.2.3"):
        traces.scratch_store()
