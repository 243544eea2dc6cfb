"""The stages end to end, resumable (DESIGN.md sections 2 and 4).

Each stage reads what earlier stages left in the results store and writes its own groups,
then its completion mark. A rerun skips the stages that are marked complete (with the same
parameters and the same input), so a killed run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import fsspec
import xarray as xr

from ._version import __version__
from .cnmf import cnmf
from .cnmf.patches import patch_tsub
from .errors import StoreError
from .io.movie import ENGINE_SUFFIXES
from .io.session import open_field
from .motion import corrected_movie, motion_correct, stored_motion
from .params import DataParams, Params
from .results import EVALUATION_VARS, Results, open_results, write_units
from .store import STAGE_ORDER, ResultsStore, as_store, made_with

__all__ = ["STAGES", "run_pipeline", "evaluate", "RunSummary", "input_checksum"]


@dataclass
class RunSummary:
    """What a run did: the store, and one row per stage (name, status, seconds, details)."""

    store: ResultsStore
    rows: list[dict[str, Any]] = field(default_factory=list)


def input_checksum(url: str, storage_options: dict | None = None, n: int = 65536) -> str:
    """SHA-256 of the input's first bytes and size: a cheap guard against a changed input."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    target = path
    if fs.isdir(path):  # zarr: its metadata document
        for meta in ("zarr.json", ".zarray", ".zgroup"):
            if fs.exists(f"{path}/{meta}"):
                target = f"{path}/{meta}"
                break
    h = hashlib.sha256()
    with fs.open(target, "rb") as f:
        h.update(f.read(n))
    h.update(str(fs.size(target)).encode())
    return h.hexdigest()[:16]


def evaluate(est: Results, params: Params | None = None, *, store: ResultsStore | str | None = None) -> Results:
    """Evaluate the units of ``est`` (CaImAn's ``estimates.evaluate_components`` and
    ``detrend_df_f``): snr, r_value, cnn_pred, accepted, dF/F...

    Parameters
    ----------
    est : Results
        What :func:`calcium_dask.cnmf` returned (or :func:`calcium_dask.open_results`).
    params : Params, optional
        ``quality`` thresholds and ``dff`` options; default: the parameters ``est`` was made with.
    store : ResultsStore or str, optional
        Write the evaluation there and mark the stage complete: ``est``'s own store (the
        metrics and dF/F are added to it; a store already evaluated with the same
        parameters is opened, not recomputed), or another URL (the units and their
        evaluation are saved there). Without one, dF/F stays lazy.

    Returns
    -------
    Results
    """
    params = params if params is not None else est._params(None)
    target = as_store(store) if store is not None else None
    same = target is not None and est.store is not None and target.url == est.store.url
    if same and target.completed(STAGE_EVALUATE, params.digest(STAGE_EVALUATE)):
        return _reopened(target, est, params)
    t0 = time.perf_counter()
    movie = est.movie if est.movie is not None else (corrected_movie(est.store) if est.store is not None else None)
    res = est.evaluate_components(movie, params)
    if target is None:
        return res
    if same:
        target.clear_marks_from(STAGE_EVALUATE)
        write_units(target, res.ds[[v for v in EVALUATION_VARS if v in res.ds]], label="evaluation: write")
    else:
        res.save(target.url, storage_options=target.storage_options)
    accepted = res.ds["accepted"].values.astype(bool)
    target.mark_complete(STAGE_EVALUATE, time.perf_counter() - t0, params_digest=params.digest(STAGE_EVALUATE),
                         accepted=int(accepted.sum()), rejected=int((~accepted).sum()))
    return _reopened(target, res, params)


def _reopened(store: ResultsStore, res: Results, params: Params) -> Results:
    """``res`` read back from ``store`` (lazy), keeping the movie and motion it knows."""
    back = open_results(store)
    return replace(back, movie=res.movie if res.movie is not None else back.movie,
                   motion=res.motion if res.motion is not None else back.motion, params=params)


STAGE_EVALUATE = "evaluate"


def _stage_motion(movie: xr.DataArray, params: Params, store: ResultsStore, align: xr.DataArray | None) -> None:
    motion_correct(movie, params, store=store, align=align)


def _stage_cnmf(movie: xr.DataArray, params: Params, store: ResultsStore, align: xr.DataArray | None) -> None:
    cnmf(stored_motion(store, movie), params, store=store)


def _stage_evaluate(movie: xr.DataArray, params: Params, store: ResultsStore, align: xr.DataArray | None) -> None:
    res = open_results(store)
    evaluate(replace(res, movie=corrected_movie(store, movie)), params, store=store)


#: stage name -> function(movie, params, store, align) running it on the store (each marks its
#: completion, with its details, and reuses a completed result made with the same parameters);
#: ``align`` is the channel motion is computed on when it is not the movie's own (or None)
STAGES: dict[str, Callable[[xr.DataArray, Params, ResultsStore, xr.DataArray | None], None]] = {
    "motion": _stage_motion,
    "cnmf": _stage_cnmf,
    "evaluate": _stage_evaluate,
}


def _check_resumable(store: ResultsStore, params: Params, checksum: str, force: bool,
                     from_stage: str | None = None) -> None:
    """Refuse to add stages to a store made from other parameters or another input, and to
    write into a path that holds something else (files, a zarr array, another tool's group).

    Other parameters are accepted when every completed stage kept (those before
    ``from_stage``) read none of the changed ones (:meth:`Params.digest`): CNMF is rerun on
    the same motion correction with new CNMF parameters, as in CaImAn's notebooks."""
    if store.group is None and store.exists() and store.root(mode="r").attrs.get("fields_of_view"):
        raise StoreError(f"{store.url}: holds a session of several fields of view; run the whole session "
                         "again or choose another --out")
    if force:
        return
    what = store.foreign()
    if what:
        raise StoreError(f"{store.location}: {what}, not a calcium-dask results store; choose another --out "
                         "(or --force to write into it)")
    if not store.exists():
        return
    attrs = dict(store.root(mode="r").attrs)
    if not attrs.get("stages"):
        return
    # parameters a store's older version did not have take their defaults: an upgrade resumes
    stored = Params.from_dict(attrs["params"], strict=False) if attrs.get("params") is not None else None
    if stored is not None and stored.to_dict() != params.to_dict():
        stale = _first_stale_stage(attrs["stages"], params)
        if stale is not None and (from_stage is None or STAGE_ORDER.index(from_stage) > STAGE_ORDER.index(stale)):
            raise StoreError(f"{store.location}: holds a run with other parameters for stage '{stale}'; use "
                             f"--from {stale} to rerun from it, --force to start over or --out for a new store")
    if attrs.get("input_checksum") not in (None, checksum):
        raise StoreError(f"{store.location}: was made from another input ({attrs.get('input')}); use --force "
                         "to start over")


def _first_stale_stage(stages: dict[str, Any], params: Params) -> str | None:
    """The first of the completed ``stages`` (a store's records) whose parameters differ
    from ``params``' (a record without a digest, from an older version, counts as differing)."""
    return next((s for s in STAGE_ORDER if s in stages and not made_with(stages[s], params.digest(s))), None)


def _open_options(movie_url: Any, params: Params, open_kwargs: dict | None) -> dict:
    """``open_kwargs`` (``engine``, ``dataset``, ``plane``, ``roi``), naming the HDF5 dataset
    ``data.var_name_hdf5`` when the caller named none and it is not CaImAn's default (which
    the reader already prefers)."""
    kw = {k: v for k, v in (open_kwargs or {}).items() if v is not None}
    name = params.data.var_name_hdf5
    if kw.get("dataset") is None and name != DataParams.var_name_hdf5:
        first = str(movie_url[0] if isinstance(movie_url, (list, tuple)) else movie_url)
        suffix = os.path.splitext(first.rstrip("/"))[1].lower()
        if (kw.get("engine") or ENGINE_SUFFIXES.get(suffix)) == "hdf5":
            kw["dataset"] = name
    return kw


def run_pipeline(movie_url: Any, out: str, params: Params, *, storage_options: dict | None = None,
                 out_storage_options: dict | None = None, until: str | None = None,
                 from_stage: str | None = None, force: bool = False,
                 open_kwargs: dict | None = None, group: str | None = None) -> RunSummary:
    """Run the stages on the current Dask client, resuming where a previous run stopped.

    Parameters
    ----------
    movie_url : str or list
        The input movie (any :func:`~calcium_dask.open_movie` source).
    out : str
        The results store (path or URL).
    params : Params
    until, from_stage : str, optional
        Run only the stages up to / from these (``from_stage`` reruns completed ones).
    force : bool
        Start over: forget every completed stage.
    open_kwargs : dict, optional
        ``engine``, ``dataset``, ``plane``, ``roi`` of the input (see
        :func:`~calcium_dask.io.open_field`); the channels come from ``params.data``.
    group : str, optional
        Write into this group of ``out`` (one field of view of a session, e.g. ``plane1``).
    """
    names = list(STAGES)
    for s in (until, from_stage):
        if s is not None and s not in names:
            raise StoreError(f"unknown stage '{s}'; stages are: {', '.join(names)}")
    last = names.index(until) if until else len(names) - 1
    first = names.index(from_stage) if from_stage else 0
    so = dict(storage_options or {})
    d = params.data  # suite2p's names for the recording's layout
    fov = open_field(movie_url, storage_options=so, nplanes=d.nplanes, nchannels=d.nchannels,
                     functional_chan=d.functional_chan, align_by_chan=d.align_by_chan,
                     **_open_options(movie_url, params, open_kwargs))
    movie = fov.movie
    checksum = input_checksum(movie.attrs["source"] if isinstance(movie.attrs["source"], str)
                              else movie.attrs["source"][0], so)
    if "cnmf" in names[first: last + 1]:
        patch_tsub(movie.shape, params)  # a session too long for the parameters: refused before any work
    store = ResultsStore(out, dict(out_storage_options or {}), group)
    _check_resumable(store, params, checksum, force, from_stage)
    if force and store.exists():
        for s in list(store.stages()):
            store.clear_mark(s)
        store.clear_root_arrays()  # the units of the earlier run must not outlive its marks
    store.set_attrs(params=params.to_dict(), version=__version__, input=movie.attrs["source"],
                    open_kwargs={k: v for k, v in (open_kwargs or {}).items() if v is not None},
                    input_checksum=checksum, shape=list(movie.shape), fr=movie.attrs["fr"],
                    field_of_view=fov.record(),
                    stages=store.stages())  # a record, even empty: open_results trusts only marks
    summary = RunSummary(store)
    if from_stage is not None:
        store.clear_marks_from(from_stage)
    for i, name in enumerate(names[: last + 1]):
        if store.completed(name, params.digest(name)):
            summary.rows.append({"stage": name, "status": "done before", **store.stages()[name]})
            continue
        if i < first:
            raise StoreError(f"{store.location}: stage '{name}' has not run yet; run without --from first")
        STAGES[name](movie, params, store, fov.align)
        record = {k: v for k, v in store.stages()[name].items() if k != "params_digest"}
        summary.rows.append({"stage": name, "status": "ran", **record})
    return summary
