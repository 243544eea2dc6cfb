"""Registering sessions of one field of view and tracking their units (dask orchestration).

Two passes. First, each session is read (:mod:`.sessions`) and aligned to the reference
in a task of its own. Then, on the canvas that holds every aligned field (the union of
all), each session's footprints and images are warped in a task, and each pair of
sessions is matched in a task (candidates from a k-d tree, so no matrix over all units is
made). The pairwise matches are made consistent
(:func:`~calcium_dask.tracking.kernels.track_units`) and written with the transforms and
the union footprints (:mod:`.result`). The graphs run on the current ``dask.distributed``
client when there is one, else on local threads.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import scipy.sparse as sp
from dask.delayed import Delayed

from ..errors import CalciumDaskError, ParamsError
from ..params import Params, TrackingParams
from ..compute import compute
from ..results import Results
from .kernels import (Alignment, AlignmentError, PairMatches, Tracks, align_images, centroids, masks,
                      match_sessions, normalise_columns, on_canvas, registration_image, track_units, union_canvas,
                      warp_footprints, warp_image)
from .result import Tracking, check_target, tracking_dataset, write_tracking
from .sessions import SessionData, load_session, open_session_store, session_name

__all__ = ["register_sessions", "SessionAlignment", "AlignedSession", "align_session", "warp_session", "match_pair",
           "match_and_track", "TrackingError", "SessionProblem"]


class TrackingError(CalciumDaskError, ValueError):
    """Sessions cannot be registered together (fewer than two usable, a bad reference...)."""


class SessionProblem(UserWarning):
    """One session could not be registered (or has nothing to track); the others were."""


@dataclass(frozen=True)
class SessionAlignment:
    """A session and its alignment to the reference's field (None when it failed: ``error``)."""

    data: SessionData
    alignment: Alignment | None
    error: str | None


@dataclass(frozen=True)
class AlignedSession:
    """A session on the canvas (the union of all fields, see :func:`~.kernels.union_canvas`).

    Attributes
    ----------
    data : SessionData
        The session as read (its ``footprints`` dropped once warped: see ``footprints``).
    alignment : Alignment or None
        Canvas pixel to session pixel; None when the session could not be aligned.
    error : str or None
    footprints : scipy.sparse.csc_matrix (H * W, K)
        Warped onto the canvas, each with maximum 1.
    centroids : ndarray (K, 2)
    masks : scipy.sparse.csc_matrix (H * W, K)
    mean, correlation : ndarray (H, W) float32 or None
        Summary images on the canvas (NaN where the session did not see).
    seen : ndarray (H * W,) bool
        Canvas pixels inside the session's field of view.
    shape : (int, int)
        The canvas ``(H, W)``.
    """

    data: SessionData
    alignment: Alignment | None
    error: str | None
    footprints: sp.csc_matrix
    centroids: np.ndarray
    masks: sp.csc_matrix
    mean: np.ndarray | None
    correlation: np.ndarray | None
    seen: np.ndarray
    shape: tuple[int, int]

    @property
    def n_units(self) -> int:
        return int(self.footprints.shape[1])


IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _image(ses: SessionData, use: str) -> np.ndarray:
    if ses.mean is None and ses.correlation is None:  # results without summary images: the footprints
        return np.asarray(ses.footprints.sum(axis=1), np.float32).reshape(ses.shape)
    return registration_image(ses.mean, ses.correlation, use=use)


def _scale(ref: SessionData, ses: SessionData) -> tuple[float, float]:
    """Session pixels per reference pixel, or AlignmentError when sizes cannot be reconciled."""
    if ref.dxy is not None and ses.dxy is not None and not np.allclose(ref.dxy, ses.dxy, rtol=1e-6):
        return (ref.dxy[0] / ses.dxy[0], ref.dxy[1] / ses.dxy[1])
    if ses.shape != ref.shape:
        raise AlignmentError(
            f"{ses.shape[0]}x{ses.shape[1]} pixels, the reference ({ref.name}) {ref.shape[0]}x{ref.shape[1]}, "
            "and their pixel sizes (data.dxy) do not account for it: refused (record dxy in the stores "
            "to have it rescaled)")
    return (1.0, 1.0)


def align_session(ref: SessionData, ses: SessionData, *, is_reference: bool, use: str = "mean",
                  max_rotation: float = 10.0, nonrigid: bool = True, spacing: float = 48.0,
                  max_deformation: float = 6.0, min_overlap: float = 0.3,
                  min_corr: float = 0.55) -> SessionAlignment:
    """Align one session's field to the reference's (a task).

    A session that cannot be aligned comes back with ``error`` set instead of raising, so
    the other sessions still register.
    """
    try:
        if is_reference:
            alignment = Alignment(IDENTITY.copy(), None, 1.0, 1.0, 1.0)
        else:
            alignment = align_images(_image(ref, use), _image(ses, use), scale=_scale(ref, ses),
                                     max_rotation=max_rotation, nonrigid=nonrigid, spacing=spacing,
                                     max_deformation=max_deformation, min_overlap=min_overlap, min_corr=min_corr)
    except AlignmentError as e:
        return SessionAlignment(ses, None, str(e))
    return SessionAlignment(ses, alignment, None)


def warp_session(sa: SessionAlignment, origin: np.ndarray, shape: tuple[int, int],
                 reference_shape: tuple[int, int], *, mask_thr: float = 0.2) -> AlignedSession:
    """A session's footprints and images on the canvas (a task)."""
    ses = sa.data
    light = dataclasses.replace(ses, footprints=sp.csc_matrix(ses.footprints.shape, dtype=np.float32))
    P = shape[0] * shape[1]
    if sa.alignment is None:  # not registered: none of its units is tracked
        empty = sp.csc_matrix((P, 0), dtype=np.float32)
        light = dataclasses.replace(light, units=np.zeros(0, np.int64))
        return AlignedSession(light, None, sa.error, empty, np.zeros((0, 2)), empty, None, None,
                              np.zeros(P, bool), shape)
    alignment = on_canvas(sa.alignment, origin, shape, reference_shape)
    coords = alignment.coordinates(shape)
    A = normalise_columns(warp_footprints(ses.footprints, coords, ses.shape))
    images = {k: None if getattr(ses, k) is None else
              warp_image(getattr(ses, k), alignment.affine, alignment.flow, shape) for k in ("mean", "correlation")}
    H, W = ses.shape
    seen = ((coords[0] >= 0) & (coords[0] <= H - 1) & (coords[1] >= 0) & (coords[1] <= W - 1)).ravel()
    return AlignedSession(light, alignment, None, A, centroids(A, shape), masks(A, mask_thr), **images,
                          seen=seen, shape=shape)


def _in_common(a: AlignedSession, common: np.ndarray, mask_thr: float
               ) -> tuple[sp.csc_matrix, sp.csc_matrix, np.ndarray]:
    """Footprints, masks and centroids of a session's units on the pixels both sessions saw."""
    if common.all():
        return a.footprints, a.masks, a.centroids
    F = (sp.diags(common.astype(np.float32)) @ a.footprints).tocsc()
    return F, masks(F, mask_thr), centroids(F, a.shape)


def match_pair(a: AlignedSession, b: AlignedSession, *, kind: str, max_dist: float, dist_weight: float,
               thresh_cost: float, mask_thr: float) -> PairMatches:
    """Matches between two aligned sessions (a task).

    Footprints are compared on the canvas pixels both sessions saw: a cell cut by one
    session's edge is compared by its part inside both fields, not against its whole.
    """
    if a.error or b.error or a.n_units == 0 or b.n_units == 0:
        return PairMatches(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    common = a.seen & b.seen
    Fa, Ma, ca = _in_common(a, common, mask_thr)
    Fb, Mb, cb = _in_common(b, common, mask_thr)
    return match_sessions(*((Ma, Mb) if kind == "jaccard" else (Fa, Fb)), ca, cb, max_dist=max_dist,
                          dist_weight=dist_weight, kind=kind, thresh_cost=thresh_cost)


def match_and_track(aligned: Sequence[Any], tp: TrackingParams) -> tuple[list[AlignedSession], Tracks]:
    """Match every pair of sessions (a task each) and make the matches consistent.

    Parameters
    ----------
    aligned : sequence of AlignedSession or of delayed ones
        The sessions on one canvas.
    tp : TrackingParams

    Returns
    -------
    aligned : list of AlignedSession
        Computed.
    tracks : Tracks
        Columns index each session's ``footprints``.
    """
    pair = dask.delayed(match_pair, pure=True)
    parts = [a if isinstance(a, Delayed) else dask.delayed(a) for a in aligned]  # each sent once, not per pair
    pairs = list(itertools.combinations(range(len(parts)), 2))
    matched = [pair(parts[a], parts[b], **_match_options(tp)) for a, b in pairs]
    results = compute([*parts, *matched], label="match sessions")
    done, matches = results[: len(parts)], dict(zip(pairs, results[len(parts):]))
    tracks = track_units([a.n_units for a in done], matches, min_link=tp.min_link, unmatched_cost=tp.thresh_cost)
    return done, tracks


def _align_options(tp: TrackingParams) -> dict[str, Any]:
    return dict(use=tp.align_image, max_rotation=tp.max_rotation, nonrigid=tp.align_nonrigid,
                spacing=tp.nonrigid_spacing, max_deformation=tp.max_deformation, min_overlap=tp.min_overlap,
                min_corr=tp.min_align_corr)


def _match_options(tp: TrackingParams) -> dict[str, Any]:
    return dict(kind=tp.overlap, max_dist=tp.max_dist, dist_weight=tp.dist_weight, thresh_cost=tp.thresh_cost,
                mask_thr=tp.mask_thr)


def _names(sources: Sequence[Any], names: Sequence[str] | None) -> list[str]:
    if names is not None:
        if len(names) != len(sources):
            raise ParamsError(f"{len(names)} names for {len(sources)} sessions")
        out = [str(n) for n in names]
    else:
        out = [session_name(s, i) for i, s in enumerate(sources)]
    seen: dict[str, int] = {}
    for i, n in enumerate(out):  # "day1", "day1" -> "day1", "day1-1"
        if n in seen:
            out[i] = f"{n}-{i}"
        seen[n] = i
    if len(set(out)) != len(out):
        raise ParamsError(f"session names are not unique: {out}")
    return out


def _reference(n: int, reference: int | None) -> int:
    ref = (n - 1) // 2 if reference is None else int(reference)
    if not 0 <= ref < n:
        raise ParamsError(f"reference session {reference} out of range for {n} sessions (0 to {n - 1})")
    return ref


def _loaders(sources: Sequence[Any], names: list[str], only_accepted: bool,
             storage_options: dict | None) -> list[Any]:
    """One value per session: read now for results in memory, a task for a store."""
    out = []
    for src, name in zip(sources, names):
        if isinstance(src, Results):
            out.append(dask.delayed(load_session(src, name, only_accepted=only_accepted)))
        elif isinstance(src, (str, os.PathLike)):
            out.append(dask.delayed(load_session, pure=True)(os.fspath(src), name, only_accepted=only_accepted,
                                                             storage_options=storage_options))
        else:
            raise TypeError(f"a session is a results store URL or a Results, got {type(src).__name__}")
    return out


def _check_stores(sources: Sequence[Any], storage_options: dict | None) -> None:
    """A missing or unfinished store is a user error: name it before any work starts."""
    for src in sources:
        if isinstance(src, (str, os.PathLike)):
            open_session_store(os.fspath(src), storage_options)


def register_sessions(sessions: Sequence[str | os.PathLike | Results], params: Params | None = None, *,
                      reference: int | None = None, out: str | None = None, names: Sequence[str] | None = None,
                      storage_options: dict | None = None, out_storage_options: dict | None = None) -> Tracking:
    """Align sessions of one field of view and track their units across them.

    Parameters
    ----------
    sessions : sequence of str, path or Results
        Results stores (URLs) or results in memory, in time order.
    params : Params, optional
        ``params.tracking`` (defaults: CaImAn's ``thresh_cost`` 0.7 and ``max_dist`` 10).
    reference : int, optional
        Session the others are aligned to (default ``params.tracking.reference``, else the
        middle session).
    out : str, optional
        Tracking store to write (zarr; path or URL).
    names : sequence of str, optional
        Session names (default: the stores' folder names).
    storage_options, out_storage_options : dict, optional
        fsspec options for the session stores and for ``out``.

    Returns
    -------
    Tracking
        Its ``errors`` name the sessions that could not be registered (each also warned
        as a :class:`~calcium_dask.tracking.SessionProblem`); the others are registered.

    Raises
    ------
    TrackingError
        Fewer than two sessions, or fewer than two that could be aligned.
    """
    sources = list(sessions)
    if len(sources) < 2:
        raise TrackingError(f"tracking needs at least two sessions, got {len(sources)}")
    tp = (params or Params()).tracking
    ref = _reference(len(sources), tp.reference if reference is None else reference)
    names = _names(sources, names)
    _check_stores(sources, storage_options)
    if out is not None:
        check_target(out, out_storage_options or storage_options)
    loaded = _loaders(sources, names, tp.only_accepted, storage_options)
    align = dask.delayed(align_session, pure=True)
    alignments = compute([align(loaded[ref], ses, is_reference=(s == ref), **_align_options(tp))
                          for s, ses in enumerate(loaded)], label="align sessions")
    _report(alignments, ref)
    ref_shape = alignments[ref].data.shape
    origin, shape = union_canvas([a.alignment for a in alignments], [a.data.shape for a in alignments], ref_shape)
    warp = dask.delayed(warp_session, pure=True)
    aligned, tracks = match_and_track([warp(a, origin, shape, ref_shape, mask_thr=tp.mask_thr) for a in alignments],
                                      tp)
    ds = tracking_dataset(aligned, tracks, ref, origin, tp)
    tracking = Tracking(ds)
    if out is not None:
        tracking = write_tracking(tracking, out, storage_options=out_storage_options or storage_options)
    return tracking


def _report(aligned: list[SessionAlignment], ref: int) -> None:
    """Warn about each session that failed or has no units; refuse when < 2 registered."""
    if aligned[ref].error:
        raise TrackingError(f"{aligned[ref].data.name}: the reference session cannot be used: {aligned[ref].error}")
    for a in aligned:
        if a.error:
            warnings.warn(f"{a.data.name}: not registered: {a.error}", SessionProblem, stacklevel=3)
        elif a.data.footprints.shape[1] == 0:
            warnings.warn(f"{a.data.name}: no units to track (none in the store, or none accepted)",
                          SessionProblem, stacklevel=3)
    if sum(a.error is None for a in aligned) < 2:
        raise TrackingError("fewer than two sessions could be registered: "
                            + "; ".join(f"{a.data.name}: {a.error}" for a in aligned if a.error))
