"""The Results object: the results store's root Dataset with CaImAn's vocabulary.

``Results`` holds an ``xarray.Dataset`` laid out as DESIGN.md section 2 says and offers
the names a CaImAn user knows (``A``, ``C``, ``S``, ``YrA``, ``b``, ``f``, ``F_dff``,
``SNR_comp``, ``r_values``, ``cnn_preds``, ``idx_components``...) and CaImAn's
``evaluate_components`` and ``detrend_df_f``, which call :mod:`calcium_dask.evaluate` (the
computations live there). It does not plot.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp
import xarray as xr

from .errors import StoreError
from .params import Params
from .store import ResultsStore

__all__ = ["Results", "open_results", "fields_of_view", "UNIT_VARS"]

#: variables the evaluate stage adds
EVALUATION_VARS = ("snr", "r_value", "cnn_pred", "motion_corr", "border_weight", "background_corr", "accepted",
                   "duplicate_of", "dff")
#: variables indexed by unit, subset together by select_components
UNIT_VARS = ("footprints", "traces", "spikes", "residuals", "dff", "snr", "r_value", "cnn_pred", "accepted",
             "duplicate_of", "motion_corr", "border_weight", "background_corr",
             "baseline", "initial_calcium", "neurons_sn", "ar_coefficients")


@dataclass
class Results:
    """CNMF results (see the module docstring).

    Attributes
    ----------
    ds : xarray.Dataset
        Root variables of the store (footprints, traces, ...).
    discarded : xarray.Dataset or None
        Units removed by :meth:`select_components` with ``save_discarded_components``.
    motion, summary : xarray.Dataset or None
        The ``/motion`` and ``/summary`` groups when the results came from a store.
    """

    ds: xr.Dataset
    discarded: xr.Dataset | None = None
    motion: xr.Dataset | None = None
    summary: xr.Dataset | None = None
    store: ResultsStore | None = field(default=None, repr=False)

    # -- CaImAn's names ------------------------------------------------------------
    @property
    def dims(self) -> tuple[int, int]:
        return int(self.ds.sizes["y"]), int(self.ds.sizes["x"])

    @property
    def A(self) -> sp.csc_matrix:
        """Footprints, (pixels, units) sparse, pixels in CaImAn's (Fortran) order ``x * H + y``."""
        fp = np.asarray(self.ds["footprints"].values)
        K = fp.shape[0]
        return sp.csc_matrix(fp.transpose(0, 2, 1).reshape(K, int(np.prod(fp.shape[1:]))).T)

    @property
    def b(self) -> np.ndarray:
        """Background footprints, (pixels, nb), pixels in Fortran order."""
        bf = np.asarray(self.ds["background_footprints"].values)
        return bf.transpose(0, 2, 1).reshape(len(bf), int(np.prod(bf.shape[1:]))).T

    def _var(self, name: str) -> np.ndarray | None:
        return np.asarray(self.ds[name].values) if name in self.ds else None

    C = property(lambda self: self._var("traces"), doc="Denoised traces (units, frames).")
    S = property(lambda self: self._var("spikes"), doc="Deconvolved activity (units, frames).")
    YrA = property(lambda self: self._var("residuals"), doc="Trace residuals; raw trace = C + YrA.")
    f = property(lambda self: self._var("background_traces"), doc="Background traces (nb, frames).")
    F_dff = property(lambda self: self._var("dff"), doc="dF/F (units, frames).")
    SNR_comp = property(lambda self: self._var("snr"), doc="Trace SNR of each unit.")
    r_values = property(lambda self: self._var("r_value"), doc="Spatial correlation of each unit.")
    cnn_preds = property(lambda self: self._var("cnn_pred"), doc="Shape-classifier score of each unit.")

    @property
    def idx_components(self) -> np.ndarray:
        """Indices of the accepted units (all units before evaluation)."""
        if "accepted" not in self.ds:
            return np.arange(self.ds.sizes["unit"])
        return np.flatnonzero(self.ds["accepted"].values)

    @property
    def idx_components_bad(self) -> np.ndarray:
        if "accepted" not in self.ds:
            return np.zeros(0, int)
        return np.flatnonzero(~self.ds["accepted"].values.astype(bool))

    @property
    def coordinates(self) -> list[dict[str, Any]]:
        """Contour of each footprint at 20% of its max: ``{"unit", "coordinates" (n, 2) x/y, "CoM"}``."""
        import contourpy

        out = []
        for k, fpk in enumerate(np.asarray(self.ds["footprints"].values)):
            peak = float(fpk.max())
            lines = contourpy.contour_generator(z=fpk).lines(0.2 * peak) if peak > 0 else []
            longest = max(lines, key=len) if len(lines) else np.zeros((0, 2))
            w = np.clip(fpk, 0, None)
            yy, xx = np.indices(fpk.shape)
            com = (float((w * yy).sum() / w.sum()), float((w * xx).sum() / w.sum())) if w.sum() else (np.nan,) * 2
            out.append({"unit": k, "coordinates": np.asarray(longest), "CoM": com})
        return out

    # -- evaluation ----------------------------------------------------------------
    def _params(self, params: Params | None) -> Params:
        if params is not None:
            return params
        stored = self.store.root(mode="r").attrs.get("params") if self.store is not None else None
        return Params.from_dict(stored, strict=False) if stored else Params()

    def evaluate_components(self, movie: xr.DataArray | None = None, params: Params | None = None) -> Results:
        """A copy with ``snr``, ``r_value``, ``cnn_pred``, ``motion_corr``, ``border_weight``,
        ``background_corr``, ``accepted``, ``duplicate_of`` and ``dff`` recomputed (CaImAn's
        ``estimates.evaluate_components``; the motion test uses the results' ``/motion``).

        Parameters
        ----------
        movie : xarray.DataArray, optional
            The motion-corrected movie the units come from (read in one distributed pass
            for ``r_value``); default: the store's corrected movie.
        params : Params, optional
            Thresholds in ``params.quality`` (and ``data``, ``init.gSig``, ``dff``);
            default: the parameters the store was made with, else the defaults.
        """
        from .evaluate.orchestrate import evaluate_components

        if movie is None:
            if self.store is None:
                raise ValueError("evaluate_components needs the movie: these results have no store")
            movie = self.store.movie()
        ev = evaluate_components(movie, self.ds, self._params(params), self.motion)
        ds = self.ds.drop_vars([v for v in EVALUATION_VARS if v in self.ds])
        return replace(self, ds=ds.merge(ev))

    def detrend_df_f(self, quantileMin: float = 8.0, frames_window: int | None = 500, *,
                     flag_auto: bool = True, use_fast: bool = False, use_residuals: bool = True,
                     detrend_only: bool = False) -> Results:
        """A copy with ``dff`` (``F_dff``) recomputed from the model, CaImAn's
        ``estimates.detrend_df_f`` (see :func:`calcium_dask.evaluate.detrend_df_f`).

        ``use_residuals`` adds the residuals to the denoised traces (the raw traces), as
        CaImAn does when its ``use_residuals`` is True.
        """
        from .evaluate.kernels.dff import detrend_df_f
        from .evaluate.orchestrate import footprints_matrix

        fp = self.ds["footprints"]
        _, H, W = fp.shape
        bg = self._var("background_footprints")
        b = bg.reshape(len(bg), H * W).T if bg is not None and len(bg) else None
        dff = detrend_df_f(footprints_matrix(fp), b, self.C, self.f if b is not None else None,
                           self.YrA if use_residuals else None, quantileMin=quantileMin,
                           frames_window=frames_window, flag_auto=flag_auto, use_fast=use_fast,
                           detrend_only=detrend_only)
        return replace(self, ds=self.ds.assign(dff=(("unit", "frame"), dff.astype(np.float32))))

    # -- selection -----------------------------------------------------------------
    def select_components(self, idx_components: np.ndarray | None = None, *,
                          save_discarded_components: bool = True) -> Results:
        """Keep the given (default: accepted) units; optionally keep the others aside."""
        keep = self.idx_components if idx_components is None else np.asarray(idx_components, int)
        mask = np.zeros(self.ds.sizes["unit"], bool)
        mask[keep] = True
        unit_vars = [v for v in self.ds.data_vars if "unit" in self.ds[v].dims]
        kept = self.ds.isel(unit=np.flatnonzero(mask))
        dropped = self.ds[unit_vars].isel(unit=np.flatnonzero(~mask))
        discarded = None
        if save_discarded_components:
            discarded = dropped if self.discarded is None else xr.concat([self.discarded, dropped], "unit")
        return Results(kept, discarded, self.motion, self.summary, self.store)

    def restore_discarded_components(self) -> Results:
        """Put back the units set aside by :meth:`select_components`."""
        if self.discarded is None or self.discarded.sizes.get("unit", 0) == 0:
            return self
        unit_vars = [v for v in self.ds.data_vars if "unit" in self.ds[v].dims]
        units = xr.concat([self.ds[unit_vars], self.discarded[unit_vars]], "unit").sortby("unit")
        rest = self.ds.drop_vars(unit_vars + ["unit"])
        return Results(xr.merge([rest, units]), None, self.motion, self.summary, self.store)

    # -- movies --------------------------------------------------------------------
    def denoised_movie(self, *, include_background: bool = True) -> xr.DataArray:
        """``A C (+ b f)`` as a lazy (frame, y, x) movie."""
        fp = da.from_array(np.asarray(self.ds["footprints"].values), chunks=-1)
        movie = da.einsum("kyx,kt->tyx", fp, da.from_array(self.C, chunks=(-1, 500)))
        if include_background and "background_footprints" in self.ds:
            bg = da.from_array(np.asarray(self.ds["background_footprints"].values), chunks=-1)
            movie = movie + da.einsum("kyx,kt->tyx", bg, da.from_array(self.f, chunks=(-1, 500)))
        return xr.DataArray(movie, dims=("frame", "y", "x"), name="denoised")

    def residual_movie(self, movie: xr.DataArray) -> xr.DataArray:
        """``Y - A C - b f`` for the (corrected) movie, lazily."""
        return (movie - self.denoised_movie().data).rename("residual")

    # -- persistence ---------------------------------------------------------------
    def to_zarr(self, url: str, *, storage_options: dict | None = None) -> ResultsStore:
        """Write the units (and the discarded ones, group ``/discarded``) to a results store."""
        store = ResultsStore(url, dict(storage_options or {}))
        marks = store.stages()  # the target's own stage marks, if it is a pipeline's store
        store.write_root(self.ds.drop_attrs().assign_attrs(
            {k: v for k, v in self.ds.attrs.items() if k != "stages"}))  # marks describe a store, not units
        if "stages" in dict(store.root(mode="r").attrs) and not set(EVALUATION_VARS).isdisjoint(self.ds) \
                and "evaluate" not in marks:
            store.mark_complete("evaluate", 0.0, written_by="Results.to_zarr")  # open_results keeps them
        if self.discarded is not None:
            store.write(self.discarded, group="discarded")
        else:
            store.remove("discarded")
        return store

    def to_nwb(self, path: str, **kwargs: Any) -> str:
        """Write an NWB file (see :func:`calcium_dask.nwb.write_nwb`)."""
        from .nwb import write_nwb

        return write_nwb(self, path, **kwargs)


def fields_of_view(url: str, *, storage_options: dict | None = None) -> list[dict[str, Any]]:
    """The fields of view a session store lists (``[]`` for a store of one field of view)."""
    store = ResultsStore(url, dict(storage_options or {}))
    if not store.exists():
        raise StoreError(f"{store.url}: no results store here")
    return list(store.root(mode="r").attrs.get("fields_of_view") or [])


def _fov_group(store: ResultsStore, plane: int | None, fov: str | None) -> str | None:
    """The group of the field of view asked for, checked against the store's list."""
    listed = [f.get("name") for f in store.root(mode="r").attrs.get("fields_of_view") or []]
    if plane is not None and fov is not None:
        raise ValueError("give plane= or fov=, not both")
    name = fov if fov is not None else (f"plane{plane}" if plane is not None else None)
    if not listed:
        if name not in (None, "plane0"):
            raise StoreError(f"{store.url}: holds one field of view; no '{name}'")
        return None
    if name is None:
        raise StoreError(f"{store.url}: a session of {len(listed)} fields of view ({', '.join(listed)}); "
                         "choose one with plane= or fov=")
    if name not in listed:
        raise StoreError(f"{store.url}: no field of view '{name}' (fields: {', '.join(listed)})")
    return name


def open_results(url: str, *, storage_options: dict | None = None, plane: int | None = None,
                 fov: str | None = None) -> Results:
    """Open a results store's units, motion and summary groups (lazily where possible).

    For a session of several fields of view, ``plane=`` (``plane1``) or ``fov=`` (its
    group name, e.g. ``roi2`` or ``plane0_roi1``) chooses one; :func:`fields_of_view`
    lists them.
    """
    store = ResultsStore(url, dict(storage_options or {}))
    if not store.exists():
        raise StoreError(f"{store.url}: no results store here")
    store = ResultsStore(store.url, store.storage_options, _fov_group(store, plane, fov))
    if not store.exists():
        raise StoreError(f"{store.location}: this field of view has not run yet")
    root = store.root(mode="r")
    stages = root.attrs.get("stages")  # None: written without the pipeline, nothing to check
    if stages is not None and "cnmf" not in stages:
        done = ", ".join(stages) or "none"
        raise StoreError(f"{store.location}: CNMF has not completed (complete stages: {done}); "
                         "run calcium-dask run again to finish")
    with dask.config.set(scheduler="threads"):  # read here from the store, not gathered from a worker
        ds = store.read().load()
    if "footprints" not in ds:
        raise StoreError(f"{store.location}: no CNMF results yet (run the cnmf stage)")
    if stages is not None and "evaluate" not in stages:  # left by an unfinished evaluation
        ds = ds.drop_vars([v for v in EVALUATION_VARS if v in ds])
    optional = {g: (store.read(g) if g in root else None) for g in ("discarded", "motion", "summary")}
    return Results(ds, optional["discarded"], optional["motion"], optional["summary"], store)
