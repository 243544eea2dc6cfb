"""What the views read: a results store's groups, each optional, plus small array helpers.

Every view accepts a :class:`~calcium_dask.results.Results`, a
:class:`~calcium_dask.store.ResultsStore`, a store URL or an ``xarray.Dataset`` and turns it
into a :class:`Loaded` record whose groups are ``None`` when the store does not hold them
(a run stopped after motion correction, evaluation not run yet...). Nothing here reads
the movie or writes into the store.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import xarray as xr

from ..errors import StoreError
from ..results import Results
from ..store import ResultsStore

__all__ = ["Loaded", "load", "contour_paths", "unit_status", "unit_ids", "select_units", "iter_footprints",
           "metric", "envelope", "summary_image", "robust_limits", "STATUS_COLORS", "MISSING"]

#: contour colour of a unit by its evaluation status
STATUS_COLORS = {"accepted": "#2ecc40", "rejected": "#ff4136", "unevaluated": "#ffdc00"}

#: one-line notes shown in place of a view whose data is not in the store
MISSING = {
    "motion": "no motion-correction results (/motion) in this store",
    "patch_shifts": "rigid motion correction: no piecewise-rigid patches",
    "summary": "no summary images (/summary) in this store",
    "summary_raw": "no summary images of the raw movie (/summary_raw) in this store",
    "cnmf": "no CNMF results (footprints) in this store: run the cnmf stage",
    "units": "no units selected",
    "evaluation": "no evaluation metrics (snr, r_value, cnn_pred) yet: run the evaluation stage",
    "dff": "no dF/F traces yet: run the dF/F stage",
    "params": "no parameters recorded in the store's attributes",
    "stages": "no stage timings recorded in the store's attributes",
}

FOOTPRINT_BATCH = 64  # footprints held in memory at once

Which = Literal["all", "accepted", "rejected"] | Sequence[int] | np.ndarray


@dataclass
class Loaded:
    """The groups of a results store that the views use, each ``None`` when absent.

    Attributes
    ----------
    root : xarray.Dataset or None
        Root variables (footprints, traces, ...); ``None`` before the cnmf stage.
    motion, summary, summary_raw : xarray.Dataset or None
        The ``/motion``, ``/summary`` and ``/summary_raw`` groups.
    corr_pnr : xarray.Dataset or None
        The ``/corr_pnr`` group of a one-photon (CNMF-E) run: the images seeds came from.
    attrs : dict
        Root attributes (``params``, ``stages``, ``input``, ``fr``, ``shape``, ``version``).
    url : str or None
        Where the store lives, when known.
    """

    root: xr.Dataset | None = None
    motion: xr.Dataset | None = None
    summary: xr.Dataset | None = None
    summary_raw: xr.Dataset | None = None
    corr_pnr: xr.Dataset | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    url: str | None = None

    @property
    def has_units(self) -> bool:
        return self.root is not None and "footprints" in self.root and self.root.sizes.get("unit", 0) > 0

    @property
    def params(self) -> dict[str, dict[str, Any]]:
        """Parameters by group (``{}`` when the store does not record them)."""
        p = self.attrs.get("params")
        return p if isinstance(p, dict) else {}

    def param(self, group: str, name: str, default: Any = None) -> Any:
        return self.params.get(group, {}).get(name, default)

    @property
    def fr(self) -> float | None:
        fr = self.attrs.get("fr") or self.param("data", "fr")
        return float(fr) if fr else None


def _read_group(store: ResultsStore, group: str | None, present: set[str]) -> xr.Dataset | None:
    if group is not None and group not in present:
        return None
    try:
        return store.read(group)
    except StoreError:
        return None


def _from_store(store: ResultsStore) -> Loaded:
    try:
        root_group = store.root(mode="r")
    except StoreError:
        raise StoreError(f"{store.url}: no results store here (expected a zarr group written by "
                         "`calcium-dask run`)") from None
    present = set(root_group.group_keys())
    root = _read_group(store, None, present)
    groups = {g: _read_group(store, g, present) for g in ("motion", "summary", "summary_raw", "corr_pnr")}
    attrs = dict(root_group.attrs)
    if "movie" in present:  # the corrected movie's attributes (metadata only) fill gaps
        movie_attrs = dict(root_group["movie"].attrs)
        for key, source_key in (("fr", "fr"), ("input", "source")):
            if attrs.get(key) is None and movie_attrs.get(source_key) is not None:
                attrs[key] = movie_attrs[source_key]
    return Loaded(root=root if root is not None and "footprints" in root else None, attrs=attrs,
                  url=store.url, **groups)


def _from_results(res: Results) -> Loaded:
    attrs, raw, seeding = dict(res.ds.attrs), None, None
    if res.store is not None and res.store.exists():
        attrs = {**attrs, **dict(res.store.root(mode="r").attrs)}
        present = set(res.store.root(mode="r").group_keys())
        raw, seeding = (_read_group(res.store, g, present) for g in ("summary_raw", "corr_pnr"))
    return Loaded(root=res.ds, motion=res.motion, summary=res.summary, summary_raw=raw, corr_pnr=seeding,
                  attrs=attrs, url=res.store.url if res.store is not None else None)


def load(source: Any, *, storage_options: dict | None = None) -> Loaded:
    """Gather the groups the views use from ``source``.

    Parameters
    ----------
    source : Loaded, Results, MotionResult, ResultsStore, str, os.PathLike or xarray.Dataset
        A Dataset is taken as the root group (footprints, traces, ...).
    storage_options : dict, optional
        fsspec options when ``source`` is a URL.

    Returns
    -------
    Loaded
    """
    if isinstance(source, Loaded):
        return source
    if isinstance(source, Results):
        return _from_results(source)
    if isinstance(source, ResultsStore):
        return _from_store(source)
    if hasattr(source, "corrected") and hasattr(source, "summary_raw"):  # a MotionResult
        store = getattr(source, "store", None)
        attrs = dict(store.root(mode="r").attrs) if store is not None and store.exists() else {}
        return Loaded(motion=source.motion, summary=source.summary, summary_raw=source.summary_raw, attrs=attrs,
                      url=store.url if store is not None else None)
    if isinstance(source, (str, os.PathLike)):
        return _from_store(ResultsStore(os.fspath(source), dict(storage_options or {})))
    if isinstance(source, xr.Dataset):
        return Loaded(root=source if "footprints" in source else None, attrs=dict(source.attrs))
    raise TypeError(f"expected a Results, ResultsStore, store URL or xarray.Dataset, got {type(source).__name__}")


# -- units -----------------------------------------------------------------------------
def unit_status(root: xr.Dataset) -> np.ndarray:
    """``'accepted'``, ``'rejected'`` or ``'unevaluated'`` (no ``accepted`` variable) per unit."""
    n = int(root.sizes["unit"])
    if "accepted" not in root:
        return np.full(n, "unevaluated", dtype=object)
    acc = np.asarray(root["accepted"].values).astype(bool)
    return np.where(acc, "accepted", "rejected").astype(object)


def select_units(root: xr.Dataset, which: Which = "all") -> np.ndarray:
    """Positions of the units ``which`` names (``'accepted'`` is every unit before evaluation)."""
    n = int(root.sizes["unit"])
    if isinstance(which, str):
        if which not in ("all", "accepted", "rejected"):
            raise ValueError(f"which must be 'all', 'accepted', 'rejected' or unit indices, got {which!r}")
        if which == "all" or "accepted" not in root:
            return np.arange(n) if which != "rejected" else np.zeros(0, int)
        acc = np.asarray(root["accepted"].values).astype(bool)
        return np.flatnonzero(acc if which == "accepted" else ~acc)
    idx = np.atleast_1d(np.asarray(which, dtype=int))
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"unit indices {idx.tolist()} out of range for {n} units")
    return idx % n if n else idx


def unit_ids(root: xr.Dataset) -> np.ndarray:
    """The ``unit`` coordinate (ids kept through selections), or positions when absent."""
    return np.asarray(root["unit"].values) if "unit" in root.coords else np.arange(root.sizes["unit"])


def iter_footprints(root: xr.Dataset, idx: np.ndarray,
                    batch: int = FOOTPRINT_BATCH) -> Iterator[tuple[int, np.ndarray]]:
    """``(position, footprint)`` for the units ``idx``, reading ``batch`` footprints at a time."""
    for start in range(0, len(idx), batch):
        part = np.asarray(idx[start:start + batch])
        for k, fp in zip(part, np.asarray(root["footprints"].isel(unit=part).values)):
            yield int(k), fp


def metric(root: xr.Dataset | None, name: str) -> np.ndarray | None:
    """A per-unit variable as a numpy array, ``None`` when absent."""
    return None if root is None or name not in root else np.asarray(root[name].values)


# -- arrays ----------------------------------------------------------------------------
def contour_paths(image: np.ndarray, fraction: float = 0.2) -> list[np.ndarray]:
    """Contour pieces of ``image`` at ``fraction`` of its maximum, each (n, 2) as (x, y).

    Coordinates are pixel indices (pixel ``(r, c)`` has its centre at ``x=c, y=r``).
    """
    import contourpy

    img = np.nan_to_num(np.asarray(image, dtype=np.float64))
    peak = float(img.max()) if img.size else 0.0
    if peak <= 0:
        return []
    padded = np.pad(img, 1)  # closes contours that touch the border
    lines = contourpy.contour_generator(z=padded).lines(fraction * peak)
    return [np.asarray(line) - 1.0 for line in lines if len(line) > 1]


def summary_image(loaded: Loaded, image: str | np.ndarray | xr.DataArray) -> tuple[np.ndarray | None, str]:
    """A background image for contours: a summary image by name, or the given array.

    Falls back to the maximum projection of the footprints when the summary group is
    missing, and returns ``(None, name)`` when nothing is available.
    """
    if not isinstance(image, str):
        return np.asarray(image, dtype=np.float32), "image"
    if loaded.summary is not None and image in loaded.summary:
        return np.asarray(loaded.summary[image].values, dtype=np.float32), image
    if loaded.has_units:
        return np.asarray(loaded.root["footprints"].max("unit").values, dtype=np.float32), "footprints (max)"
    return None, image


def envelope(y: np.ndarray, max_points: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Decimate a long trace to about ``max_points`` points keeping each bin's min and max.

    Returns
    -------
    x : ndarray
        Sample positions (frame indices) of the kept points.
    y : ndarray
        Their values; peaks and troughs survive the decimation.
    """
    y = np.asarray(y)
    n = len(y)
    if n <= max_points:
        return np.arange(n), y
    step = int(np.ceil(2 * n / max_points))
    nb = n // step
    bins = y[: nb * step].reshape(nb, step)
    lo, hi = bins.argmin(1), bins.argmax(1)
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)
    x = (np.arange(nb)[:, None] * step + np.stack([first, second], 1)).ravel()
    return x, y[x]


def robust_limits(image: np.ndarray, lo: float = 1.0, hi: float = 99.5) -> tuple[float, float]:
    """Display limits at percentiles of the finite pixels (``(0, 1)`` when there are none)."""
    finite = np.asarray(image)[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    vmin, vmax = np.percentile(finite, [lo, hi])
    return float(vmin), float(vmax if vmax > vmin else vmin + 1.0)
