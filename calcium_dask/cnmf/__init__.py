"""CNMF source extraction: numpy kernels per patch, patches and refit as dask graphs.

As in CaImAn's demo notebook: :func:`fit` runs CNMF on patches and merges their
components; :func:`refit` runs the seeded CNMF on the whole field of view; :func:`cnmf`
does both and, given a results store, writes the estimates to it. The package itself is
callable as :func:`cnmf`: ``calcium_dask.cnmf(movie, params)``.
"""

from __future__ import annotations

import sys
import time
import types

import xarray as xr

from ..params import Params
from ..store import ResultsStore
from .output import estimates_dataset
from .patches import PatchSet, fit_patches
from .refit import CNMFEstimates
from .refit import refit as _refit

__all__ = ["cnmf", "fit", "refit", "CNMFEstimates", "PatchSet", "estimates_dataset"]


def fit(movie: xr.DataArray, params: Params) -> PatchSet:
    """CNMF on patches (``rf``, ``stride``), duplicates in overlaps merged (CaImAn's ``fit``)."""
    return fit_patches(movie, params)


def refit(movie: xr.DataArray, patches: PatchSet, params: Params) -> CNMFEstimates:
    """The seeded CNMF on the whole field of view from the patches' components."""
    return _refit(movie, patches.A, patches.C, patches.b, patches.f, patches.sn, params, tsub=patches.tsub)


def cnmf(movie: xr.DataArray, params: Params, *, store: ResultsStore | str | None = None) -> CNMFEstimates:
    """``fit`` then ``refit``; with a store, write the estimates to its root group."""
    t0 = time.perf_counter()
    movie = movie.assign_attrs(check_nan=params.preprocess.check_nan)  # what the readers fill
    est = refit(movie, fit(movie, params), params)
    if store is not None:
        store = ResultsStore(store) if isinstance(store, str) else store
        ds = estimates_dataset(est)
        ds.attrs["cnmf_seconds"] = round(time.perf_counter() - t0, 3)
        store.clear_root_arrays()  # units of an earlier run (and their evaluation) go
        store.write_root(ds)
    return est


class _CallableModule(types.ModuleType):
    """This package, callable as :func:`cnmf` (``calcium_dask.cnmf`` names both)."""

    def __call__(self, movie: xr.DataArray, params: Params, *,
                 store: ResultsStore | str | None = None) -> CNMFEstimates:
        return cnmf(movie, params, store=store)


sys.modules[__name__].__class__ = _CallableModule
