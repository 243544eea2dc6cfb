"""The top-level API the issues name (``calcium_dask.motion_correct(movie, params, store=...)``,
``calcium_dask.cnmf(movie, params)``, ``calcium_dask.Results``...), loaded on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import calcium_dask as cd


@pytest.mark.parametrize("name, module", [
    ("motion_correct", "calcium_dask.motion"), ("apply_shifts", "calcium_dask.motion"),
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
