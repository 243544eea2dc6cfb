"""Shared by the reliability tests: one undisturbed run to compare every disturbed run with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from calcium_dask.cli import demo_params
from calcium_dask.pipeline import run_pipeline
from calcium_dask.compute import set_quiet
from calcium_dask.store import ResultsStore

#: CaImAn's demo values (piecewise-rigid motion, rf=15 patches, evaluation) on the 96x96 movie
PARAMS = demo_params(30.0)

#: variables compared between a disturbed and an undisturbed run, by the stage that writes them
COMPARED = {"motion": {"motion": ("shifts", "template")},
            "cnmf": {None: ("footprints", "traces", "spikes", "residuals", "background_traces")},
            "evaluate": {None: ("accepted", "snr", "r_value", "cnn_pred", "dff")}}


@dataclass
class Reference:
    url: str
    seconds: dict[str, float]
    arrays: dict[str, np.ndarray]


def snapshot(url: str, stages=COMPARED) -> dict[str, np.ndarray]:
    """The compared variables of the given stages, as numpy arrays."""
    store = ResultsStore(url)
    out = {}
    for stage in stages:
        for group, names in COMPARED[stage].items():
            ds = store.read(group)
            for name in names:
                out[f"{group or ''}/{name}"] = np.asarray(ds[name].values)
    return out


def assert_same_results(found: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    """Equal to float tolerance (a rescheduled task must give the same numbers)."""
    assert found.keys() == expected.keys()
    for key, want in expected.items():
        got = found[key]
        assert got.shape == want.shape, f"{key}: shape {got.shape} != {want.shape}"
        if want.dtype == bool:
            np.testing.assert_array_equal(got, want, err_msg=key)
        else:
            scale = float(np.nanmax(np.abs(want))) if want.size else 1.0
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(scale, 1e-12), err_msg=key)


@pytest.fixture(scope="session")
def reference(client, sim_small, tmp_path_factory) -> Reference:
    """The whole pipeline, undisturbed, on the session's cluster."""
    set_quiet(True)
    try:
        url = str(tmp_path_factory.mktemp("reference") / "ref.zarr")
        summary = run_pipeline(str(sim_small), url, PARAMS)
    finally:
        set_quiet(False)
    seconds = {r["stage"]: float(r["seconds"]) for r in summary.rows}
    return Reference(url, seconds, snapshot(url))


@pytest.fixture(scope="session")
def params_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    PARAMS.save(path)
    return path
