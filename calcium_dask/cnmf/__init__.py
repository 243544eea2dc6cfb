"""CNMF source extraction: numpy kernels per patch (``cnmf.kernels``), patches and refit as
dask graphs.

As in CaImAn's demo notebook: :func:`fit` runs CNMF on patches and merges their
components; :func:`refit` runs the seeded CNMF on the whole field of view; :func:`cnmf`
does both. The package itself is callable as :func:`cnmf`:
``calcium_dask.cnmf(mc, params)``.

Each takes the corrected movie as a :class:`~calcium_dask.motion.MotionResult` (what
:func:`calcium_dask.motion_correct` returns) or as any (frame, y, x) movie, and returns a
:class:`~calcium_dask.results.Results` whose traces live in a results store: ``store=``
(then the step is resumable: a store holding this stage's results, made with the same
parameters, is opened instead of recomputed), or a scratch store in a temporary folder
when the cluster's workers share this machine's disk.
"""

from __future__ import annotations

import sys
import time
import types
import warnings
from typing import TYPE_CHECKING, Any

import xarray as xr

from ..params import Params
from ..results import Results, open_results
from ..store import ResultsStore, as_store
from ..traces import TraceArrays, TraceLayout, scratch_store
from .output import write_estimates
from .patches import PatchSet, fit_patches
from .refit import RefitResult
from .refit import refit as _refit

if TYPE_CHECKING:
    from .cnmfe import CNMFEPatchSet

__all__ = ["cnmf", "fit", "refit", "correlation_pnr", "PatchSet", "CNMFEPatchSet", "RefitResult", "NoSeedsWarning"]

STAGE = "cnmf"

#: CNMF-E's names, its modules imported on first use: a two-photon run's client never
#: needs them, and they cost ~0.2 s of its start
_ONE_PHOTON = ("CNMFEPatchSet", "NoSeedsWarning", "correlation_pnr")


def __getattr__(name: str) -> Any:
    if name in _ONE_PHOTON:
        from . import cnmfe

        return getattr(cnmfe, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _movie_of(mc: Any) -> tuple[xr.DataArray, xr.Dataset | None, xr.Dataset | None, ResultsStore | None]:
    """The corrected movie, motion and summary groups and store behind ``mc`` (a
    MotionResult, or a movie)."""
    if isinstance(mc, xr.DataArray):
        return mc, None, None, None
    return mc.corrected, mc.motion, mc.summary, getattr(mc, "store", None)


def fit(mc: Any, params: Params) -> PatchSet | CNMFEPatchSet:
    """CNMF on patches (``rf``, ``stride``), duplicates in overlaps merged (CaImAn's ``fit``);
    CNMF-E with its ring background when ``method_init='corr_pnr'`` (one-photon movies).

    Parameters
    ----------
    mc : MotionResult or xarray.DataArray
        The motion-corrected movie.
    params : Params

    Returns
    -------
    PatchSet or CNMFEPatchSet
        The patches' components (footprints, low-rate traces for seeding the refit; CNMF-E:
        also the patches' ring backgrounds and the images the seeds were chosen on).
    """
    movie = _movie_of(mc)[0].assign_attrs(check_nan=params.preprocess.check_nan)
    if params.init.method_init == "corr_pnr":
        from .cnmfe import NoSeedsWarning, fit_patches_cnmfe

        ps = fit_patches_cnmfe(movie, params)
        if ps.A.shape[1] == 0:
            warnings.warn(_no_seeds(ps, params), NoSeedsWarning, stacklevel=2)
        return ps
    return fit_patches(movie, params)


def _no_seeds(ps: CNMFEPatchSet, params: Params) -> str:
    corr, pnr = ps.best
    return (f"CNMF-E found no neuron: no pixel reached min_corr={params.init.min_corr} and "
            f"min_pnr={params.init.min_pnr} together (the largest correlation was {corr:.2f}, the largest "
            f"peak-to-noise ratio {pnr:.1f}); lower them after looking at the images of "
            "calcium_dask.cnmf.correlation_pnr(movie, params)")


def refit(mc: Any, patches: PatchSet | CNMFEPatchSet, params: Params, *, store: ResultsStore | str | None = None) -> Results:
    """The seeded CNMF on the whole field of view from the patches' components (CaImAn's
    ``refit``), its traces written to ``store`` (default: a scratch store).

    Returns
    -------
    Results
        Footprints ``A`` (pixels ``y * W + x``), traces ``C``, ``S``, ``YrA``, background
        ``b``, ``f``; not evaluated yet (see :func:`calcium_dask.evaluate`).
    """
    return _refit_marked(mc, patches, params, store, time.perf_counter())


def _refit_marked(mc: Any, patches: PatchSet | CNMFEPatchSet, params: Params, store: ResultsStore | str | None,
                  started: float) -> Results:
    """:func:`refit`, its completion mark counting the seconds since ``started`` (the
    stage's own start: the patches' fit too when :func:`cnmf` ran it)."""
    movie, motion, summary, mc_store = _movie_of(mc)
    movie = movie.assign_attrs(check_nan=params.preprocess.check_nan)  # what the readers fill
    target = as_store(store) if store is not None else (mc_store or scratch_store())
    _run_refit(movie, patches, params, target)
    target.mark_complete(STAGE, time.perf_counter() - started, params_digest=params.digest(STAGE),
                         units=int(target.read()["footprints"].shape[0]))
    return _opened(target, movie, motion, summary, params)


def _run_refit(movie: xr.DataArray, patches: PatchSet | CNMFEPatchSet, params: Params,
               store: ResultsStore) -> RefitResult:
    """The refit, writing its traces to the root of ``store`` (scratch arrays in /scratch);
    CNMF-E's also writes the images its seeds were chosen on (``/corr_pnr``)."""
    from ..movie_blocks import frame_source
    from .cnmfe import CNMFEPatchSet, refit_cnmfe, seeding_dataset

    source = frame_source(movie)
    layout = TraceLayout.for_movie(movie.shape[0], source.t_chunk)
    store.clear_marks_from(STAGE)
    store.clear_root_arrays()  # units of an earlier run (and their evaluation) go
    scratch = TraceArrays(store, "scratch", layout)
    try:
        if isinstance(patches, CNMFEPatchSet):
            store.write(seeding_dataset(patches, params), group="corr_pnr")
            res = refit_cnmfe(source, patches, tuple(movie.shape[1:]), params, scratch,
                              TraceArrays(store, "", layout))
        else:
            store.remove("corr_pnr")  # an earlier CNMF-E run's seeding images
            res = _refit(source, patches.A, patches.C, patches.b, patches.f, patches.sn, tuple(movie.shape[1:]),
                         params, scratch, TraceArrays(store, "", layout), tsub=patches.tsub)
        write_estimates(store, res, tile=params.compute.tile)
    finally:
        store.remove("scratch")
    return res


def _opened(store: ResultsStore, movie: xr.DataArray, motion: Any, summary: Any, params: Params) -> Results:
    res = open_results(store)
    return Results(res.ds, None, motion if motion is not None else res.motion,
                   summary if summary is not None else res.summary, store, movie, params)


def cnmf(mc: Any, params: Params, *, store: ResultsStore | str | None = None) -> Results:
    """``fit`` then ``refit`` (CaImAn's ``cnm.fit`` and ``cnm.refit``).

    Parameters
    ----------
    mc : MotionResult or xarray.DataArray
        The motion-corrected movie (a MotionResult carries its store, shifts and summary
        images along).
    params : Params
    store : ResultsStore or str, optional
        Results store to write the units to. A store whose ``cnmf`` stage completed with
        the same parameters is opened, not recomputed. Default: the MotionResult's store,
        else a scratch store.

    Returns
    -------
    Results
    """
    movie, motion, summary, mc_store = _movie_of(mc)
    target = as_store(store) if store is not None else mc_store
    if target is not None and target.completed(STAGE, params.digest(STAGE)):
        return _opened(target, movie.assign_attrs(check_nan=params.preprocess.check_nan), motion, summary, params)
    t0 = time.perf_counter()
    return _refit_marked(mc, fit(mc, params), params, target, t0)


class _CallableModule(types.ModuleType):
    """This package, callable as :func:`cnmf` (``calcium_dask.cnmf`` names both)."""

    def __call__(self, mc: Any, params: Params, *, store: ResultsStore | str | None = None) -> Results:
        return cnmf(mc, params, store=store)


sys.modules[__name__].__class__ = _CallableModule
