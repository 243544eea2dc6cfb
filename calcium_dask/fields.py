"""Every field of view of a session as its own pipeline run, all on one cluster.

A multi-plane (or mesoscope multi-ROI) recording becomes one results store with a group
per field of view (``/plane0``, ``/plane1``... or ``/roi0``...), each holding the results
contract of a one-plane run; the root lists them in its attributes (``fields_of_view``).
The fields of view run concurrently as :mod:`calcium_dask.batch` runs sessions (threads of
this process sharing the client, so the planes keep the workers busy together); each
resumes on its own; :func:`~calcium_dask.pipeline.run_pipeline` is the one pipeline.
A recording with one field of view is run as before, into the store's root.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._version import __version__
from .errors import StoreError
from .io.session import Recording, open_session
from .params import Params
from .store import ResultsStore

__all__ = ["run_fields", "FieldsRun", "session_attrs"]

MAX_CONCURRENT = 8  # fields of view whose graphs are on the cluster at once by default


@dataclass
class FieldsRun:
    """What a session run did: its store, recording, and one result per field of view."""

    store: ResultsStore
    recording: Recording
    results: list[Any] = field(default_factory=list)  # batch.SessionResult, or pipeline.RunSummary
    seconds: float = 0.0

    @property
    def failed(self) -> list[Any]:
        """The results of the fields of view that failed."""
        return [r for r in self.results if getattr(r, "failed", False)]


def session_attrs(rec: Recording, params: Params, source: Any) -> dict[str, Any]:
    """The root attributes of a session store: its fields of view and how they were found."""
    return {"fields_of_view": [f.record() for f in rec.fields], "version": __version__, "input": source,
            "format": rec.format, "nplanes": rec.nplanes, "nflyback": rec.nflyback, "nchannels": rec.nchannels,
            "nrois": rec.nrois, "fr": rec.fr, "canvas_shape": list(rec.canvas_shape) if rec.canvas_shape else None,
            "params": params.to_dict()}


def _prepare_root(store: ResultsStore, rec: Recording, params: Params, source: Any, force: bool) -> None:
    """Check what ``store`` already holds, then record the session's fields of view."""
    if store.exists():
        attrs = dict(store.root(mode="r").attrs)
        if attrs.get("stages") is not None and not attrs.get("fields_of_view"):
            raise StoreError(f"{store.url}: holds a run of one field of view; choose another --out for this "
                             f"session of {len(rec)}")
        old = [f.get("name") for f in attrs.get("fields_of_view") or []]
        new = [f.name for f in rec.fields]
        if old and old != new and not force:
            raise StoreError(f"{store.url}: holds a session with fields of view {', '.join(old)}, not "
                             f"{', '.join(new)}; use --force to start over or --out for a new store")
        if force:
            for name in set(old) - set(new):
                store.remove(name)
    else:
        what = store.foreign()
        if what and not force:
            raise StoreError(f"{store.url}: {what}, not a calcium-dask results store; choose another --out "
                             "(or --force to write into it)")
    store.set_attrs(**session_attrs(rec, params, source))


def run_fields(movie_url: Any, out: str, params: Params, client: Any = None, *,
               storage_options: dict | None = None, out_storage_options: dict | None = None,
               until: str | None = None, from_stage: str | None = None, force: bool = False,
               max_concurrent: int | None = None, open_kwargs: dict | None = None,
               echo: Callable[[str], None] = print) -> FieldsRun:
    """Run the pipeline on every field of view of ``movie_url`` into one store ``out``.

    Parameters
    ----------
    movie_url : str or list
        Any input of :func:`~calcium_dask.open_session`; its planes, channels and ROIs come
        from the file's metadata or from ``params.data`` (``nplanes``, ``nchannels``,
        ``functional_chan``, ``align_by_chan``, suite2p's names).
    out : str
        The results store: its root for a one-plane recording, else a group per field of view.
    client : distributed.Client, optional
        The cluster every field of view shares (default: the current client).
    max_concurrent : int, optional
        Fields of view running at once (default: all of them, at most 8).
    open_kwargs : dict, optional
        ``engine`` and ``dataset`` of the input.

    Returns
    -------
    FieldsRun
        Per field of view a :class:`~calcium_dask.batch.SessionResult` (a failure is its
        status, the others go on), or the :class:`~calcium_dask.pipeline.RunSummary` of a
        one-plane recording.
    """
    from .batch import Session, run_sessions
    from .pipeline import run_pipeline

    t0 = time.perf_counter()
    so = dict(storage_options or {})
    out_so = dict(out_storage_options if out_storage_options is not None else so)
    kw = {k: v for k, v in (open_kwargs or {}).items() if v is not None and k in ("engine", "dataset")}
    d = params.data
    rec = open_session(movie_url, nplanes=d.nplanes, nchannels=d.nchannels, functional_chan=d.functional_chan,
                       align_by_chan=d.align_by_chan, storage_options=so, **kw)
    store = ResultsStore(out, out_so)
    if len(rec) == 1:
        summary = run_pipeline(movie_url, out, params, storage_options=so, out_storage_options=out_so, until=until,
                               from_stage=from_stage, force=force, open_kwargs=kw)
        return FieldsRun(summary.store, rec, [summary], time.perf_counter() - t0)
    source = rec.fields[0].movie.attrs["source"]
    _prepare_root(store, rec, params, source, force)
    sessions = [Session(f.name, movie_url, out, params, so, until, {**kw, "plane": f.plane, "roi": f.roi},
                        group=f.name, from_stage=from_stage, out_storage_options=out_so) for f in rec.fields]
    if client is None:
        from distributed import get_client

        client = get_client()
    n = max_concurrent or min(len(sessions), MAX_CONCURRENT)
    results = run_sessions(sessions, client, max_concurrent=n, force=force, echo=echo)
    store.consolidate()  # the root's view of every group, now that all have written
    return FieldsRun(store, rec, results, time.perf_counter() - t0)
