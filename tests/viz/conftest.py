"""Fixtures: tiny results stores written directly, and the report of the full one."""

from __future__ import annotations

import matplotlib
import pytest

matplotlib.use("Agg")

from .viz_store import write_store  # noqa: E402


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """Motion, summary and CNMF with evaluation and dF/F (2 accepted units, 1 rejected)."""
    return write_store(tmp_path_factory.mktemp("viz") / "full.zarr")


@pytest.fixture(scope="session")
def motion_only_store(tmp_path_factory):
    """A run that stopped after motion correction."""
    return write_store(tmp_path_factory.mktemp("viz") / "motion.zarr", cnmf=False)


@pytest.fixture(scope="session")
def unevaluated_store(tmp_path_factory):
    """CNMF done, evaluation not run yet (no snr, accepted, dff)."""
    return write_store(tmp_path_factory.mktemp("viz") / "cnmf.zarr", evaluated=False)


@pytest.fixture(scope="session")
def report(store, tmp_path_factory):
    from calcium_dask.viz import write_report

    return write_report(store.url, tmp_path_factory.mktemp("report") / "report.html")
