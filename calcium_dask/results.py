"""The Results object: CNMF estimates (evaluated or not) with CaImAn's vocabulary.

``Results`` holds an ``xarray.Dataset`` laid out as DESIGN.md section 2 says, lazily: unit x
frame variables (``traces``, ``spikes``, ``residuals``, ``dff``, ``background_traces``) are
dask arrays read from the results store chunk by chunk, so a session of any length opens
in a notebook. It offers the names a CaImAn user knows (``A``, ``C``, ``S``, ``YrA``, ``b``,
``f``, ``F_dff``, ``SNR_comp``, ``r_values``, ``cnn_preds``, ``idx_components``...) and
CaImAn's ``evaluate_components``, ``detrend_df_f`` and ``select_components``, which call
:mod:`calcium_dask.evaluation` (the computations live there). It does not plot.

Pixel order: every footprint matrix here (``A``, ``b``) indexes pixels in C order,
``y * W + x``, so ``res.A[:, k].toarray().reshape(H, W)`` is unit ``k``'s footprint, as
``res.ds.footprints[k]`` is. (CaImAn's matrices are in Fortran order: reshape with
``order='F'`` there, with the default order here.)
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

__all__ = ["Results", "open_results", "fields_of_view", "UNIT_VARS", "EVALUATION_VARS"]

#: variables the evaluate stage adds
EVALUATION_VARS = ("snr", "r_value", "cnn_pred", "motion_corr", "border_weight", "background_corr", "spread",
                   "accepted", "duplicate_of", "dff")
#: variables indexed by unit, subset together by select_components
UNIT_VARS = ("footprints", "traces", "spikes", "residuals", "dff", "snr", "r_value", "cnn_pred", "accepted",
             "duplicate_of", "motion_corr", "border_weight", "background_corr", "spread",
             "baseline", "initial_calcium", "neurons_sn", "ar_coefficients")


@dataclass
class Results:
    """CNMF results (see the module docstring).

    Attributes
    ----------
    ds : xarray.Dataset
        Root variables of the store (footprints, traces, ...), lazy.
    discarded : xarray.Dataset or None
        Units removed by :meth:`select_components` with ``save_discarded_components``.
    motion, summary : xarray.Dataset or None
        The ``/motion`` and ``/summary`` groups (motion correction's shifts and template;
        mean, max, std and correlation images).
    store : ResultsStore or None
        Where the results live (a pipeline's store, or a scratch store).
    movie : xarray.DataArray or None
        The motion-corrected movie the units were extracted from (lazy): what
        :meth:`evaluate_components` reads for the spatial correlation.
    params : Params or None
        The parameters the results were made with.
    """

    ds: xr.Dataset
    discarded: xr.Dataset | None = None
    motion: xr.Dataset | None = None
    summary: xr.Dataset | None = None
    store: ResultsStore | None = field(default=None, repr=False)
    movie: xr.DataArray | None = field(default=None, repr=False)
    params: Params | None = field(default=None, repr=False)
    _A: sp.csc_matrix | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        K, T = self.ds.sizes.get("unit", 0), self.ds.sizes.get("frame", 0)
        state = f"{int(self.ds['accepted'].sum())} accepted" if "accepted" in self.ds else "not evaluated"
        where = f", store {self.store.url}" if self.store is not None else ""
        return f"<Results: {K} units x {T} frames, {state}{where}>"

    # -- CaImAn's names ------------------------------------------------------------
    @property
    def dims(self) -> tuple[int, int]:
        """The field of view's (height, width), pixels (CaImAn's ``dims``)."""
        return int(self.ds.sizes["y"]), int(self.ds.sizes["x"])

    @property
    def A(self) -> sp.csc_matrix:
        """Footprints, (pixels, units) sparse, pixel index ``y * W + x`` (C order)."""
        if self._A is None:
            from .evaluation.orchestrate import footprints_matrix

            self._A = footprints_matrix(self.ds["footprints"])
        return self._A

    @property
    def b(self) -> np.ndarray:
        """Background footprints, (pixels, nb), pixel index ``y * W + x``."""
        bf = np.asarray(self.ds["background_footprints"].values)
        return bf.reshape(len(bf), -1).T

    def _var(self, name: str) -> Any:
        return self.ds[name].data if name in self.ds else None

    C = property(lambda self: self._var("traces"), doc="Denoised traces (units, frames), lazy.")
    S = property(lambda self: self._var("spikes"), doc="Deconvolved activity (units, frames), lazy.")
    YrA = property(lambda self: self._var("residuals"), doc="Trace residuals; raw trace = C + YrA (lazy).")
    f = property(lambda self: self._var("background_traces"), doc="Background traces (nb, frames), lazy.")
    F_dff = property(lambda self: self._var("dff"), doc="dF/F (units, frames), lazy.")

    def _small(self, name: str) -> np.ndarray | None:
        return np.asarray(self.ds[name].values) if name in self.ds else None

    SNR_comp = property(lambda self: self._small("snr"), doc="Trace SNR of each unit.")
    r_values = property(lambda self: self._small("r_value"), doc="Spatial correlation of each unit.")
    cnn_preds = property(lambda self: self._small("cnn_pred"), doc="Shape-classifier score of each unit.")

    @property
    def idx_components(self) -> np.ndarray:
        """Indices of the accepted units (all units before evaluation)."""
        if "accepted" not in self.ds:
            return np.arange(self.ds.sizes["unit"])
        return np.flatnonzero(self.ds["accepted"].values)

    @property
    def idx_components_bad(self) -> np.ndarray:
        """Indices of the rejected units (none before evaluation)."""
        if "accepted" not in self.ds:
            return np.zeros(0, int)
        return np.flatnonzero(~self.ds["accepted"].values.astype(bool))

    @property
    def coordinates(self) -> list[dict[str, Any]]:
        """Contour of each footprint at 20% of its max: ``{"unit", "coordinates" (n, 2) x/y, "CoM"}``."""
        import contourpy

        A = self.A
        H, W = self.dims
        yy, xx = np.divmod(np.arange(H * W), W)
        out = []
        for k in range(A.shape[1]):
            fpk = A[:, k].toarray().reshape(H, W)
            peak = float(fpk.max()) if fpk.size else 0.0
            lines = contourpy.contour_generator(z=fpk).lines(0.2 * peak) if peak > 0 else []
            longest = max(lines, key=len) if len(lines) else np.zeros((0, 2))
            col = A[:, k].tocoo()
            w = np.clip(col.data, 0, None)
            rows = col.row
            com = ((float(w @ yy[rows] / w.sum()), float(w @ xx[rows] / w.sum())) if w.sum() else (np.nan,) * 2)
            out.append({"unit": k, "coordinates": np.asarray(longest), "CoM": com})
        return out

    # -- evaluation ----------------------------------------------------------------
    def _params(self, params: Params | None) -> Params:
        if params is not None:
            return params
        if self.params is not None:
            return self.params
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
            for ``r_value``); default: the movie these results were made from.
        params : Params, optional
            Thresholds in ``params.quality`` (and ``data``, ``init.gSig``, ``dff``);
            default: the parameters the results were made with, else the defaults.

        Returns
        -------
        Results
            Its per-unit metrics computed; its ``dff`` lazy (computed when read or saved).
        """
        from .evaluation.orchestrate import evaluate_components

        movie = movie if movie is not None else self.movie
        if movie is None and self.store is not None:
            movie = self.store.movie()
        if movie is None:
            raise ValueError("evaluate_components needs the movie: these results know none (pass movie=)")
        params = self._params(params)
        ev = evaluate_components(movie, self.ds, params, self.motion)
        ds = self.ds.drop_vars([v for v in EVALUATION_VARS if v in self.ds])
        return replace(self, ds=ds.merge(ev), movie=movie, params=params)

    def detrend_df_f(self, quantileMin: float = 8.0, frames_window: int | None = 500, *,
                     flag_auto: bool = True, use_fast: bool = False, use_residuals: bool = True,
                     detrend_only: bool = False) -> Results:
        """A copy with ``dff`` (``F_dff``) recomputed from the model, CaImAn's
        ``estimates.detrend_df_f`` (see :func:`calcium_dask.evaluation.kernels.dff.detrend_df_f`),
        lazily: unit tasks compute it when it is read or saved.

        ``use_residuals`` adds the residuals to the denoised traces (the raw traces), as
        CaImAn does when its ``use_residuals`` is True. Results of CNMF-E
        (``method_init='corr_pnr'``) take no background into the baseline.
        """
        from .evaluation.orchestrate import lazy_dff

        one_photon = self._params(None).init.method_init == "corr_pnr"
        dff = lazy_dff(self.ds, self.A, quantileMin=quantileMin, frames_window=frames_window, flag_auto=flag_auto,
                       use_fast=use_fast, use_residuals=use_residuals, detrend_only=detrend_only,
                       use_background=not one_photon)
        return replace(self, ds=self.ds.assign(dff=(("unit", "frame"), dff)))

    # -- selection -----------------------------------------------------------------
    def select_components(self, idx_components: np.ndarray | None = None, *,
                          save_discarded_components: bool = True) -> Results:
        """Keep the given (default: accepted) units; optionally keep the others aside (lazily)."""
        keep = self.idx_components if idx_components is None else np.asarray(idx_components, int)
        mask = np.zeros(self.ds.sizes["unit"], bool)
        mask[keep] = True
        unit_vars = [v for v in self.ds.data_vars if "unit" in self.ds[v].dims]
        kept = self.ds.isel(unit=np.flatnonzero(mask))
        dropped = self.ds[unit_vars].isel(unit=np.flatnonzero(~mask))
        discarded = None
        if save_discarded_components:
            discarded = dropped if self.discarded is None else xr.concat([self.discarded, dropped], "unit")
        return replace(self, ds=kept, discarded=discarded, _A=None)

    def restore_discarded_components(self) -> Results:
        """Put back the units set aside by :meth:`select_components`."""
        if self.discarded is None or self.discarded.sizes.get("unit", 0) == 0:
            return self
        unit_vars = [v for v in self.ds.data_vars if "unit" in self.ds[v].dims]
        units = xr.concat([self.ds[unit_vars], self.discarded[unit_vars]], "unit").sortby("unit")
        rest = self.ds.drop_vars(unit_vars + ["unit"])
        return replace(self, ds=xr.merge([rest, units]), discarded=None, _A=None)

    # -- movies --------------------------------------------------------------------
    def denoised_movie(self, *, include_background: bool = True) -> xr.DataArray:
        """``A C (+ b f)`` as a lazy (frame, y, x) movie, one task per chunk of frames."""
        H, W = self.dims
        M, X = self.A, self.C
        if include_background and "background_footprints" in self.ds:
            M = sp.hstack([M, sp.csc_matrix(self.b)]).tocsc()
            X = da.concatenate([da.asarray(X), da.asarray(self.f)], axis=0)
        X = da.asarray(X).rechunk({0: -1})
        M_ = dask.delayed(sp.csr_matrix(M, dtype=np.float32), pure=True)
        movie = X.map_blocks(_frames_of, M_, H, W, dtype=np.float32, chunks=(X.chunks[1], (H,), (W,)),
                             drop_axis=0, new_axis=[1, 2])
        return xr.DataArray(movie, dims=("frame", "y", "x"), name="denoised")

    def residual_movie(self, movie: xr.DataArray) -> xr.DataArray:
        """``Y - A C - b f`` for the (corrected) movie, lazily."""
        den = self.denoised_movie().data.rechunk(movie.data.chunks)
        return (movie - den).rename("residual")

    # -- persistence ---------------------------------------------------------------
    def save(self, url: str, *, storage_options: dict | None = None, label: str = "save results") -> ResultsStore:
        """Write the units (and the discarded ones, group ``/discarded``) to the results store
        ``url``, streaming: no unit x frame array is held in memory.

        ``url`` must not be the store these results are read from (they would overwrite
        the arrays they read): save to a new URL.
        """
        store = ResultsStore(url, dict(storage_options or {}))
        if self.store is not None and store.url == self.store.url:
            raise StoreError(f"{store.url}: these results are read from this store; save them to another URL")
        marks = store.stages()  # the target's own stage marks, if it is a pipeline's store
        store.clear_root_arrays()
        write_units(store, self.ds.drop_attrs(), label=label)
        attrs = {k: v for k, v in self.ds.attrs.items() if k != "stages"}  # marks describe a store, not units
        if attrs:
            store.set_attrs(**attrs)
        if "stages" in dict(store.root(mode="r").attrs) and not set(EVALUATION_VARS).isdisjoint(self.ds) \
                and "evaluate" not in marks:
            store.mark_complete("evaluate", 0.0, written_by="Results.save")  # open_results keeps them
        if self.discarded is not None:
            store.remove("discarded")
            write_units(store, self.discarded, group="discarded", label=f"{label}: discarded")
        else:
            store.remove("discarded")
        return store

    to_zarr = save  # xarray's and earlier calcium-dask's name

    def to_nwb(self, path: str, **kwargs: Any) -> str:
        """Write an NWB file (see :func:`calcium_dask.nwb.write_nwb`)."""
        from .nwb import write_nwb

        return write_nwb(self, path, **kwargs)


def write_units(store: ResultsStore, ds: xr.Dataset, *, group: str | None = None, tile: int = 64,
                label: str = "write units") -> None:
    """Write a Dataset of units (lazy or not) into ``group`` (default: the root, keeping the
    other groups), chunked as the pipeline writes: footprints in blocks of units x tiles
    with zero chunks left out, unit x frame arrays in (unit, frame) chunks. Streams: each
    task writes whole chunks."""
    from .compute import compute
    from .traces import FOOTPRINT_UNITS, UNIT_CHUNK, TraceLayout

    T = int(ds.sizes.get("frame", 0))
    F = TraceLayout.for_movie(T, 1).frame_chunk if T else 1
    encoding = {}
    for name, v in ds.data_vars.items():
        if v.dims == ("unit", "y", "x"):
            want = (FOOTPRINT_UNITS, tile, tile)
        elif v.ndim == 2 and v.dims[1] == "frame":
            want = (UNIT_CHUNK, F)
        else:
            continue
        chunks = tuple(max(1, min(c, s)) for c, s in zip(want, v.shape))
        ds = ds.assign({name: v.chunk(dict(zip(v.dims, chunks)))})
        encoding[name] = {"chunks": chunks}
    opts = dict(compute=False, encoding=encoding, write_empty_chunks=False)
    delayed = store.write(ds, group=group, **opts) if group else store.write_root(ds, **opts)
    compute([delayed], label=label)


def _frames_of(X: np.ndarray, M: sp.csr_matrix, H: int, W: int) -> np.ndarray:
    """Frames ``(M @ X).T`` of one chunk of traces, as (frames, H, W)."""
    return np.asarray(M @ np.asarray(X, np.float32), np.float32).T.reshape(-1, H, W)


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


def open_results(url: str | ResultsStore, *, storage_options: dict | None = None, plane: int | None = None,
                 fov: str | None = None) -> Results:
    """Open a results store's units, motion and summary groups, lazily.

    Nothing is read but metadata and small per-unit arrays: traces, footprints and dF/F
    are dask arrays read chunk by chunk when used. For a session of several fields of
    view, ``plane=`` (``plane1``) or ``fov=`` (its group name, e.g. ``roi2`` or
    ``plane0_roi1``) chooses one (:func:`fields_of_view` lists them); a
    :class:`~calcium_dask.store.ResultsStore` of one field of view opens that one.
    """
    if isinstance(url, ResultsStore) and url.group is not None:
        store = url
    else:
        store = url if isinstance(url, ResultsStore) else ResultsStore(url, dict(storage_options or {}))
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
    ds = store.read()
    if "footprints" not in ds:
        raise StoreError(f"{store.location}: no CNMF results yet (run the cnmf stage)")
    if stages is not None and "evaluate" not in stages:  # left by an unfinished evaluation
        ds = ds.drop_vars([v for v in EVALUATION_VARS if v in ds])
    with dask.config.set(scheduler="threads"):  # small per-unit arrays, read here
        small = [v for v in ds.data_vars if ds[v].dims in (("unit",), ("unit", "lag"))]
        ds = ds.assign({v: ds[v].load() for v in small})
    optional = {g: (store.read(g) if g in root else None) for g in ("discarded", "motion", "summary")}
    stored = root.attrs.get("params")
    params = Params.from_dict(stored, strict=False) if stored else None
    movie = store.movie() if "movie" in root else None
    return Results(ds, optional["discarded"], optional["motion"], optional["summary"], store, movie, params)
