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
import warnings

import xarray as xr

from ..params import Params
from ..store import ResultsStore
from .cnmfe import CNMFEPatchSet, NoSeedsWarning, correlation_pnr, fit_patches_cnmfe, refit_cnmfe, seeding_dataset
from .output import estimates_dataset
from .patches import PatchSet, fit_patches
from .refit import CNMFEstimates
from .refit import refit as _refit

__all__ = ["cnmf", "fit", "refit", "correlation_pnr", "CNMFEstimates", "PatchSet", "CNMFEPatchSet",
           "NoSeedsWarning", "estimates_dataset"]


def fit(movie: xr.DataArray, params: Params) -> PatchSet | CNMFEPatchSet:
    """CNMF on patches (``rf``, ``stride``), duplicates in overlaps merged (CaImAn's ``fit``);
    CNMF-E with its ring background when ``method_init='corr_pnr'``."""
    if params.init.method_init == "corr_pnr":
        ps = fit_patches_cnmfe(movie, params)
        if ps.A.shape[1] == 0:
            warnings.warn(_no_seeds(ps, params), NoSeedsWarning, stacklevel=2)
        return ps
    return fit_patches(movie, params)


def refit(movie: xr.DataArray, patches: PatchSet | CNMFEPatchSet, params: Params) -> CNMFEstimates:
    """The seeded CNMF on the whole field of view from the patches' components (CNMF-E:
    their full-rate traces, from one pass over the movie)."""
    if isinstance(patches, CNMFEPatchSet):
        return refit_cnmfe(movie, patches, params)
    return _refit(movie, patches.A, patches.C, patches.b, patches.f, patches.sn, params, tsub=patches.tsub)


def _no_seeds(ps: CNMFEPatchSet, params: Params) -> str:
    corr, pnr = ps.best
    return (f"CNMF-E found no neuron: no pixel reached min_corr={params.init.min_corr} and "
            f"min_pnr={params.init.min_pnr} together (the largest correlation was {corr:.2f}, the largest "
            f"peak-to-noise ratio {pnr:.1f}); lower them after looking at the images of "
            "calcium_dask.cnmf.correlation_pnr(movie, params)")


def cnmf(movie: xr.DataArray, params: Params, *, store: ResultsStore | str | None = None) -> CNMFEstimates:
    """``fit`` then ``refit``; with a store, write the estimates to its root group."""
    t0 = time.perf_counter()
    movie = movie.assign_attrs(check_nan=params.preprocess.check_nan)  # what the readers fill
    patches = fit(movie, params)
    est = refit(movie, patches, params)
    if store is not None:
        store = ResultsStore(store) if isinstance(store, str) else store
        if isinstance(patches, CNMFEPatchSet):  # what the seeds were chosen on: to tune min_corr, min_pnr
            store.write(seeding_dataset(patches, params), group="corr_pnr")
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
