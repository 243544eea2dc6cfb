"""What tracking reads of a session: its footprints (sparse), summary images, pixel size.

A session is a results store (URL) or a :class:`~calcium_dask.results.Results`. A store is
opened lazily and read here in parts (footprints a block of units at a time), never its
traces, so a task loading a session holds nothing whose size grows with the session's
length.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import xarray as xr

from ..errors import StoreError
from ..evaluation.orchestrate import footprints_matrix
from ..results import Results
from ..store import ResultsStore

__all__ = ["SessionData", "load_session", "session_name", "open_session_store"]


@dataclass(frozen=True)
class SessionData:
    """One session's inputs to tracking.

    Attributes
    ----------
    name : str
    url : str or None
        Its results store (None for results held only in memory).
    shape : (int, int)
        ``(H, W)`` of its field of view.
    dxy : (float, float) or None
        Pixel size, micrometres, when the store records it.
    footprints : scipy.sparse.csc_matrix (H * W, K)
        The tracked units' footprints, pixels in C order.
    units : ndarray (K,) int64
        Position along ``unit`` in the store of each column of ``footprints``.
    n_units : int
        Units in the store (tracked or not).
    mean, correlation : ndarray (H, W) float32 or None
        Summary images.
    """

    name: str
    url: str | None
    shape: tuple[int, int]
    dxy: tuple[float, float] | None
    footprints: sp.csc_matrix
    units: np.ndarray
    n_units: int
    mean: np.ndarray | None
    correlation: np.ndarray | None


def session_name(source: Any, position: int) -> str:
    """A session's default name: its store's folder name without ``.zarr``."""
    url = source if isinstance(source, (str, os.PathLike)) else \
        (source.store.url if isinstance(source, Results) and source.store is not None else None)
    if url is None:
        return f"session{position}"
    base = os.path.basename(str(url).rstrip("/"))
    return base[: -len(".zarr")] if base.endswith(".zarr") else base or f"session{position}"


def _dxy(params: Any) -> tuple[float, float] | None:
    dxy = (params or {}).get("data", {}).get("dxy") if isinstance(params, dict) else None
    if dxy is None:
        return None
    dxy = [float(v) for v in (dxy if isinstance(dxy, (list, tuple)) else (dxy, dxy))]
    return (dxy[0], dxy[1])


def _selected(ds: xr.Dataset, only_accepted: bool) -> np.ndarray:
    n = int(ds.sizes.get("unit", 0))
    if only_accepted and "accepted" in ds:
        return np.flatnonzero(np.asarray(ds["accepted"].values, bool))
    return np.arange(n)


def _image(summary: xr.Dataset | None, name: str) -> np.ndarray | None:
    if summary is None or name not in summary:
        return None
    return np.asarray(summary[name].values, np.float32)


def _from_dataset(name: str, url: str | None, ds: xr.Dataset, summary: xr.Dataset | None,
                  dxy: tuple[float, float] | None, only_accepted: bool) -> SessionData:
    if "footprints" not in ds:
        raise StoreError(f"{url or name}: no CNMF results (footprints) to track")
    sel = _selected(ds, only_accepted)
    labels = np.asarray(ds["unit"].values) if "unit" in ds.coords else np.arange(ds.sizes["unit"])
    shape = (int(ds.sizes["y"]), int(ds.sizes["x"]))
    A = footprints_matrix(ds["footprints"].isel(unit=sel)) if sel.size else \
        sp.csc_matrix((shape[0] * shape[1], 0), dtype=np.float32)
    return SessionData(name=name, url=url, shape=shape, dxy=dxy, footprints=A,
                       units=labels[sel].astype(np.int64), n_units=int(ds.sizes["unit"]),
                       mean=_image(summary, "mean"), correlation=_image(summary, "correlation"))


def open_session_store(url: str, storage_options: dict | None = None) -> tuple[ResultsStore, xr.Dataset, dict]:
    """A session's results store, its root group (lazily) and attributes; StoreError naming the
    store when it is missing or its CNMF stage has not completed."""
    store = ResultsStore(url, dict(storage_options or {}))
    if not store.exists():
        raise StoreError(f"{store.url}: no results store here")
    attrs = dict(store.root(mode="r").attrs)
    stages = attrs.get("stages")
    if stages is not None and "cnmf" not in stages:
        raise StoreError(f"{store.url}: CNMF has not completed (run calcium-dask run to finish it)")
    ds = store.read()
    if stages is not None and "evaluate" not in stages:  # evaluation variables of an unfinished run
        ds = ds.drop_vars([v for v in ("accepted",) if v in ds])
    return store, ds, attrs


def load_session(source: str | os.PathLike | Results, name: str, *, only_accepted: bool = True,
                 storage_options: dict | None = None) -> SessionData:
    """Read a session for tracking (see :class:`SessionData`).

    Parameters
    ----------
    source : str, path or Results
        A results store, or results in memory (``source.store``, if any, is recorded as
        the session's URL: its units' dF/F is read from there).
    name : str
    only_accepted : bool
        Keep only the units that passed evaluation (every unit when it has not run).
    storage_options : dict, optional
        fsspec options of a store on object storage.
    """
    if isinstance(source, Results):
        url = source.store.url if source.store is not None else None
        attrs = dict(source.store.root(mode="r").attrs) if source.store is not None and source.store.exists() \
            else dict(source.ds.attrs)
        return _from_dataset(name, url, source.ds, source.summary, _dxy(attrs.get("params")), only_accepted)
    store, ds, attrs = open_session_store(os.fspath(source), storage_options)
    groups = set(store.root(mode="r").group_keys())
    summary = store.read("summary") if "summary" in groups else None
    return _from_dataset(name, store.url, ds, summary, _dxy(attrs.get("params")), only_accepted)
