"""The results store keeps consolidated metadata that matches the store after every write."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from calcium_dask.store import ResultsStore


def _views_agree(url: str, groups: list[str | None], storage_options: dict | None = None) -> None:
    """``xarray.open_zarr`` as a user calls it (consolidated metadata, no warning) sees what
    listing the store sees."""
    for group in groups:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "Failed to open Zarr store with consolidated metadata"
            fast = xr.open_zarr(url, group=group, storage_options=storage_options)
        listed = xr.open_zarr(url, group=group, consolidated=False, storage_options=storage_options)
        assert {k: v.shape for k, v in fast.variables.items()} == \
            {k: v.shape for k, v in listed.variables.items()}, group
        assert fast.attrs == listed.attrs, group


def test_every_write_refreshes_the_consolidated_metadata(tmp_path):
    store = ResultsStore(str(tmp_path / "r.zarr"))
    units = xr.Dataset({"snr": ("unit", np.arange(5.0)), "traces": (("unit", "frame"), np.zeros((5, 8)))})
    store.write_root(units)
    store.write(xr.Dataset({"shifts": (("frame", "axis"), np.zeros((8, 2)))}), group="motion")
    store.mark_complete("motion", 1.0)
    _views_agree(store.url, [None, "motion"])
    # a rerun replaces the units by fewer, with a new variable, and adds to a group
    store.clear_root_arrays()
    store.write_root(xr.Dataset({"snr": ("unit", np.arange(3.0)), "r_value": ("unit", np.ones(3))}))
    store.write(xr.Dataset({"template": (("y", "x"), np.ones((4, 4)))}), group="motion", mode="a")
    _views_agree(store.url, [None, "motion"])
    assert set(xr.open_zarr(store.url).data_vars) == {"snr", "r_value"}
    store.remove("motion")
    with pytest.raises((FileNotFoundError, KeyError, OSError)):
        xr.open_zarr(store.url, group="motion")
    _views_agree(store.url, [None])


def test_the_store_itself_never_reads_the_consolidated_metadata(tmp_path):
    """A run killed between a write and the refresh leaves stale consolidated metadata;
    the store's own listing (what a rerun removes or replaces) must not follow it."""
    store = ResultsStore(str(tmp_path / "r.zarr"))
    store.write(xr.Dataset({"shifts": ("frame", np.zeros(8))}), group="motion")
    # written behind the store's back, as by a run killed before its refresh
    xr.Dataset({"extra": ("frame", np.ones(8))}).to_zarr(store.url, group="motion", mode="a", consolidated=False)
    assert "extra" in store.root()["motion"]
    store.remove("motion/extra")
    assert set(xr.open_zarr(store.url, group="motion", consolidated=False).data_vars) == {"shifts"}
    _views_agree(store.url, [None, "motion"])
