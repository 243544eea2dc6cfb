"""HDF5 datasets and NWB ``TwoPhotonSeries``, read lazily through h5py."""

from __future__ import annotations

from typing import Any

import fsspec
import numpy as np

from ..errors import MovieError
from .sources import Hdf5Source

__all__ = ["hdf5_source", "nwb_source"]

_DEFAULT_NAMES = ("mov", "data", "movie", "images", "imaging")


def _open(url: str, so: dict):
    import h5py

    f = fsspec.open(url, "rb", **so).open()
    try:
        return h5py.File(f, "r")
    except OSError as e:
        f.close()
        raise MovieError(url, f"not a readable HDF5 file ({e})") from None


def _datasets(h: Any) -> list[tuple[str, Any]]:
    import h5py

    found: list[tuple[str, Any]] = []
    h.visititems(lambda name, obj: found.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
    return found


def _source(url: str, name: str, d: Any, plane: int | None, so: dict) -> Hdf5Source:
    if d.ndim == 2:
        raise MovieError(url, f"dataset '{name}' is a single 2-D image {d.shape}, not a movie")
    if d.ndim == 4:
        # NWB stores (frames, x, y, z) volumes; other 4-D files are (frames, planes, y, x)
        axis = 3 if name.endswith("/data") and d.attrs.get("neurodata_type") is None else 1
        if plane is None:
            raise MovieError(url, f"dataset '{name}' is 4-D {d.shape}: choose a plane with plane=")
        if not 0 <= plane < d.shape[axis]:
            raise MovieError(url, f"plane={plane} out of range for dataset '{name}' {d.shape}")
        shape = tuple(s for i, s in enumerate(d.shape) if i != axis)
        return Hdf5Source(url, name, shape, np.dtype(d.dtype), so, plane, axis)
    if d.ndim != 3:
        raise MovieError(url, f"dataset '{name}' has {d.ndim} dimensions; a movie needs 3 (frame, y, x)")
    return Hdf5Source(url, name, tuple(d.shape), np.dtype(d.dtype), so)


def hdf5_source(url: str, *, dataset: str | None = None, plane: int | None = None,
                storage_options: dict | None = None) -> tuple[Hdf5Source, dict]:
    """Source over ``dataset`` (default: ``mov``/``data``... or the only 3-D dataset)."""
    so = dict(storage_options or {})
    with _open(url, so) as h:
        if dataset is not None:
            if dataset not in h:
                names = [n for n, _ in _datasets(h)]
                raise MovieError(url, f"no dataset '{dataset}' (datasets: {', '.join(names) or 'none'})")
            return _source(url, dataset, h[dataset], plane, so), {}
        candidates = [(n, d) for n, d in _datasets(h) if d.ndim >= 3]
        named = [(n, d) for n, d in candidates if n.split("/")[-1] in _DEFAULT_NAMES]
        pick = named if len(named) == 1 else candidates
        if len(pick) != 1:
            names = ", ".join(n for n, _ in candidates) or "none with 3 or more dimensions"
            raise MovieError(url, f"choose the movie's dataset with dataset= (datasets: {names})")
        name, d = pick[0]
        return _source(url, name, d, plane, so), {}


def nwb_source(url: str, *, dataset: str | None = None, plane: int | None = None,
               storage_options: dict | None = None) -> tuple[Hdf5Source, dict]:
    """Source over a ``TwoPhotonSeries`` (by name with ``dataset=``, else the only one)."""
    so = dict(storage_options or {})
    with _open(url, so) as h:
        series = []
        h.visititems(lambda n, o: series.append(n) if o.attrs.get("neurodata_type") in
                     (b"TwoPhotonSeries", "TwoPhotonSeries") else None)
        if dataset is not None:
            series = [s for s in series if s == dataset or s.split("/")[-1] == dataset]
        if len(series) != 1:
            raise MovieError(url, f"expected one TwoPhotonSeries, found {len(series)} "
                                  f"({', '.join(series) or 'none'}); choose one with dataset=")
        group = h[series[0]]
        if "data" not in group:
            raise MovieError(url, f"TwoPhotonSeries '{series[0]}' has no data (external file?)")
        meta = {}
        if "starting_time" in group and "rate" in group["starting_time"].attrs:
            meta["fr"] = float(group["starting_time"].attrs["rate"])
        elif "timestamps" in group and len(group["timestamps"]) > 1:
            meta["fr"] = float(1.0 / np.median(np.diff(group["timestamps"][:1000])))
        return _source(url, f"{series[0]}/data", group["data"], plane, so), meta
