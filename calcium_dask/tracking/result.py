"""The tracking result: a Dataset of identities, transforms and union footprints, its store,
and lazy access to each tracked unit's dF/F in the sessions' own stores.

Tracking store (zarr, ``xarray.open_zarr(url)``), dims ``tracked_unit``, ``session``,
``axis`` (``y``, ``x``) and ``y``, ``x``: the common frame, the reference session's field
grown to hold every session's field (the union of all; attribute ``reference_origin`` is
the pixel where the reference's pixel (0, 0) lies, ``reference_shape`` its size):

=====================  ===============================  =========================================
variable               dims                             meaning
=====================  ===============================  =========================================
``assignments``        tracked_unit, session            unit position along ``unit`` in the
                                                        session's store, -1 where not seen
``confidence``         tracked_unit                     1 - mean cost over its pairs of members
                                                        (unmatched pairs cost 1); NaN if seen once
``member_confidence``  tracked_unit, session            the same for one member
``sessions_seen``      tracked_unit                     sessions the unit is seen in
``footprints``         tracked_unit, y, x               union footprint in the common frame
``centroid``           tracked_unit, axis               its centroid, reference pixels
``session_url``        session                          the session's results store ("" if none)
``session_units``      session                          units in the session's store
``registered``         session                          False when the session could not be aligned
``session_error``      session                          why not ("" when registered)
``affine``             session, axis, affine_col        common-frame pixel p to session pixel:
                                                        affine @ (p + flow(p), 1)
``flow``               session, axis, y, x              non-rigid part, pixels
``rotation_deg``,      session                          readable summary of ``affine``: the
``scale``,             (session, axis)                  rotation, pixel size ratio, and where the
``translation``                                         reference's centre lies from the session's
``align_corr``,        session                          image correlation after the full and the
``rigid_corr``,                                         rigid alignment; overlap of the fields
``overlap``
``mean``,              session, y, x                    the sessions' summary images in the
``correlation``                                         common frame (NaN where unseen)
=====================  ===============================  =========================================

Attributes: ``reference`` (its position), ``params`` (the ``tracking`` group), ``version``,
``complete`` (written last). The dF/F of a tracked unit is read from its session's store
(variable ``dff``, unit = ``assignments``): :meth:`Tracking.dff`, never copied.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp
import xarray as xr

from .._version import __version__
from ..errors import StoreError
from ..store import ResultsStore
from .kernels import Tracks, centroids, map_coordinates_of, normalise_columns, warp_footprints

if TYPE_CHECKING:
    from ..params import TrackingParams
    from .register import AlignedSession

__all__ = ["Tracking", "open_tracking", "write_tracking", "tracking_dataset", "check_target", "is_tracking_store",
           "KIND"]

KIND = "calcium-dask tracking"
UNIT_CHUNK = 64


@dataclass
class Tracking:
    """Units tracked across sessions (see the module docstring for ``ds``).

    Attributes
    ----------
    ds : xarray.Dataset
    url : str or None
        Where it is stored, once written.
    storage_options : dict
        fsspec options for the session stores (reading dF/F).
    """

    ds: xr.Dataset
    url: str | None = None
    storage_options: dict = field(default_factory=dict)
    _opened: dict = field(default_factory=dict, repr=False, compare=False)

    def _source(self, s: int, variable: str) -> xr.DataArray:
        """A variable of session ``s``'s results store, opened lazily once."""
        url = str(self.ds["session_url"].values[s])
        if not url:
            raise StoreError(f"{self.sessions[s]}: its results are not in a store; nothing to read {variable} from")
        if s not in self._opened:
            self._opened[s] = xr.open_zarr(url, storage_options=self.storage_options or None, consolidated=False)
        if variable not in self._opened[s]:
            raise StoreError(f"{url}: no '{variable}' in this results store")
        return self._opened[s][variable]

    @property
    def sessions(self) -> list[str]:
        """The sessions' names, in the order given."""
        return [str(s) for s in self.ds["session"].values]

    @property
    def assignments(self) -> np.ndarray:
        """(tracked_unit, session) unit positions in the sessions' stores, -1 where unseen."""
        return np.asarray(self.ds["assignments"].values)

    @property
    def reference(self) -> int:
        """Position of the session the others were aligned to."""
        return int(self.ds.attrs["reference"])

    @property
    def errors(self) -> dict[str, str]:
        """Sessions that could not be registered, and why."""
        return {s: str(e) for s, e, ok in zip(self.sessions, self.ds["session_error"].values,
                                              self.ds["registered"].values) if not ok}

    def _session(self, session: int | str) -> int:
        return self.sessions.index(session) if isinstance(session, str) else int(session)

    def matched_pairs(self, a: int | str, b: int | str) -> np.ndarray:
        """``(n, 2)`` unit positions of session a and b tracked as the same unit."""
        A = self.assignments[:, [self._session(a), self._session(b)]]
        return A[(A >= 0).all(1)]

    def found_in_all(self, sessions: list[int | str] | None = None) -> np.ndarray:
        """Tracked units seen in every given session (default: every registered one)."""
        idx = [self._session(s) for s in sessions] if sessions is not None else \
            list(np.flatnonzero(self.ds["registered"].values))
        return np.flatnonzero((self.assignments[:, idx] >= 0).all(1))

    def dff(self, session: int | str, tracked_units: Any = None, *, variable: str = "dff") -> xr.DataArray:
        """dF/F (or another ``(unit, frame)`` variable) of tracked units in one session, lazily.

        Parameters
        ----------
        session : int or str
        tracked_units : int, sequence of int or None
            Default: every tracked unit.
        variable : str
            ``dff``, ``traces``, ``spikes``...

        Returns
        -------
        xarray.DataArray (tracked_unit, frame)
            Read from the session's store when computed; rows of units not seen in this
            session are NaN.
        """
        s = self._session(session)
        tu = np.arange(self.ds.sizes["tracked_unit"]) if tracked_units is None else \
            np.atleast_1d(np.asarray(tracked_units, np.int64))
        idx = self.assignments[tu, s]
        rows = self._source(s, variable).isel(unit=np.where(idx >= 0, idx, 0)).where(xr.DataArray(idx >= 0, dims="unit"))
        rows = rows.rename(unit="tracked_unit").drop_vars("unit", errors="ignore")
        return rows.assign_coords(tracked_unit=tu, session=self.sessions[s]).rename(f"{variable}")

    def session_footprints(self, session: int | str, tracked_units: Any) -> np.ndarray:
        """The session's own footprints of tracked units, warped into the common frame.

        Read from the session's store (only those units); a unit not seen in the session,
        or a session without a store, gives its union footprint instead.

        Returns
        -------
        ndarray (n, H, W) float32, each with maximum 1
        """
        s = self._session(session)
        tu = np.atleast_1d(np.asarray(tracked_units, np.int64))
        union = np.asarray(self.ds["footprints"].isel(tracked_unit=tu).values, np.float32)
        url = str(self.ds["session_url"].values[s])
        idx = self.assignments[tu, s]
        have = idx >= 0
        if not url or not have.any() or not bool(self.ds["registered"].values[s]):
            return union
        with dask.config.set(scheduler="sync"):  # a few small reads, here, not on a cluster
            own = np.asarray(self._source(s, "footprints").isel(unit=idx[have]).values, np.float32)
        Hs, Ws = own.shape[1:]
        A = sp.csc_matrix(own.reshape(len(own), Hs * Ws).T)
        flow = np.asarray(self.ds["flow"].values[s])
        coords = map_coordinates_of(np.asarray(self.ds["affine"].values[s]), flow if flow.any() else None,
                                    union.shape[1:])
        warped = normalise_columns(warp_footprints(A, coords, (Hs, Ws)))
        union[have] = _dense_block(warped, union.shape[1:])
        return union

    def unit_dff(self, tracked_unit: int, *, variable: str = "dff") -> dict[str, xr.DataArray]:
        """One tracked unit's dF/F in each session it is seen in (lazy, ``(frame,)`` each)."""
        row = self.assignments[int(tracked_unit)]
        return {self.sessions[s]: self.dff(s, [tracked_unit], variable=variable).isel(tracked_unit=0)
                for s in np.flatnonzero(row >= 0)}


# -- building ----------------------------------------------------------------------------
def _dense_block(A: sp.csc_matrix, shape: tuple[int, int]) -> np.ndarray:
    return np.asarray(A.T.toarray(), np.float32).reshape(A.shape[1], *shape)


def _union_footprints(aligned: list[AlignedSession], tracks: Tracks) -> sp.csc_matrix:
    """Each tracked unit's members' footprints (max 1 each) averaged, in the common frame."""
    A = sp.hstack([a.footprints for a in aligned], format="csc")
    offset = np.concatenate([[0], np.cumsum([a.n_units for a in aligned])])
    t, s = np.nonzero(tracks.assignments >= 0)
    cols = offset[s] + tracks.assignments[t, s]
    n = np.bincount(t, minlength=len(tracks.assignments))
    member = sp.csc_matrix((1.0 / n[t], (cols, t)), shape=(A.shape[1], len(tracks.assignments)), dtype=np.float32)
    return (A @ member).tocsc()


def _lazy_dense(U: sp.csc_matrix, shape: tuple[int, int]) -> da.Array:
    blocks = []
    for lo in range(0, U.shape[1], UNIT_CHUNK):
        part = U[:, lo:lo + UNIT_CHUNK]
        blocks.append(da.from_delayed(dask.delayed(_dense_block)(part, shape), shape=(part.shape[1], *shape),
                                      dtype=np.float32))
    return da.concatenate(blocks) if blocks else da.zeros((0, *shape), np.float32)


def _strings(values: list[str]) -> np.ndarray:
    """Variable-length strings (zarr 3 stores fixed-width unicode only as an unstable extension)."""
    out = np.empty(len(values), dtype=object)
    out[:] = [str(v) for v in values]
    return out


def _session_vars(aligned: list[AlignedSession], shape: tuple[int, int], reference: int) -> dict[str, Any]:
    S = len(aligned)
    nan_img = np.full(shape, np.nan, np.float32)
    al = [a.alignment for a in aligned]
    affine = np.stack([x.affine if x is not None else np.full((2, 3), np.nan) for x in al])
    ref = aligned[reference]
    c = (np.asarray(ref.data.shape, np.float64) - 1) / 2 - ref.alignment.affine[:, 2]  # its centre on the canvas
    centre_to = np.stack([x.affine[:, :2] @ c + x.affine[:, 2] if x is not None else np.full(2, np.nan) for x in al])
    c_ses = np.stack([(np.asarray(a.data.shape, np.float64) - 1) / 2 for a in aligned])

    def per(attr: str) -> np.ndarray:
        return np.array([getattr(x, attr) if x is not None else np.nan for x in al], np.float64)

    return {
        "session_url": (("session",), _strings([a.data.url or "" for a in aligned])),
        "session_units": (("session",), np.array([a.data.n_units for a in aligned], np.int64)),
        "registered": (("session",), np.array([a.error is None for a in aligned])),
        "session_error": (("session",), _strings([a.error or "" for a in aligned])),
        "affine": (("session", "axis", "affine_col"), affine),
        "rotation_deg": (("session",), np.array([x.rotation_deg if x is not None else np.nan for x in al])),
        "scale": (("session", "axis"), np.array([x.scale if x is not None else (np.nan, np.nan) for x in al])),
        "translation": (("session", "axis"), centre_to - c_ses),
        "flow": (("session", "axis", "y", "x"), np.stack(
            [x.flow if x is not None and x.flow is not None else np.zeros((2, *shape), np.float32) for x in al])),
        "align_corr": (("session",), per("corr")),
        "rigid_corr": (("session",), per("rigid_corr")),
        "overlap": (("session",), per("overlap")),
        "mean": (("session", "y", "x"), np.stack([a.mean if a.mean is not None else nan_img for a in aligned])),
        "correlation": (("session", "y", "x"),
                        np.stack([a.correlation if a.correlation is not None else nan_img for a in aligned])),
    } if S else {}


def tracking_dataset(aligned: list[AlignedSession], tracks: Tracks, reference: int, origin: np.ndarray,
                     tp: TrackingParams) -> xr.Dataset:
    """The tracking Dataset (see the module docstring) from the aligned sessions and tracks."""
    ref = aligned[reference].data
    shape = aligned[reference].shape
    # the kernels number each session's tracked columns; the store numbers all its units
    assignments = np.full_like(tracks.assignments, -1)
    for s, a in enumerate(aligned):
        col = tracks.assignments[:, s]
        assignments[col >= 0, s] = a.data.units[col[col >= 0]]
    U = _union_footprints(aligned, tracks)
    ds = xr.Dataset(
        {"assignments": (("tracked_unit", "session"), assignments),
         "confidence": (("tracked_unit",), tracks.confidence.astype(np.float32)),
         "member_confidence": (("tracked_unit", "session"), tracks.member_confidence.astype(np.float32)),
         "sessions_seen": (("tracked_unit",), (tracks.assignments >= 0).sum(1).astype(np.int64)),
         "footprints": (("tracked_unit", "y", "x"), _lazy_dense(U, shape)),
         "centroid": (("tracked_unit", "axis"), centroids(U, shape)),
         **_session_vars(aligned, shape, reference)},
        coords={"tracked_unit": np.arange(len(assignments)), "session": _strings([a.data.name for a in aligned]),
                "axis": _strings(["y", "x"]), "affine_col": _strings(["y", "x", "1"])},
        attrs={"kind": KIND, "reference": int(reference), "reference_name": ref.name,
               "reference_origin": [int(v) for v in origin], "reference_shape": list(ref.shape),
               "params": json.loads(json.dumps(dataclasses.asdict(tp))), "version": __version__,
               "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return ds


# -- the store ---------------------------------------------------------------------------
def check_target(url: str | ResultsStore, storage_options: dict | None = None) -> None:
    """Refuse to overwrite anything but an earlier tracking store (or an empty place)."""
    store = url if isinstance(url, ResultsStore) else ResultsStore(url, dict(storage_options or {}))
    what = store.foreign()
    if what:
        raise StoreError(f"{store.url}: {what}, not a tracking store; choose another --out")
    if store.exists():
        attrs = dict(store.root(mode="r").attrs)
        if attrs.get("kind") != KIND and (attrs or list(store.root(mode="r").keys())):
            raise StoreError(f"{store.url}: holds a results store or other data, not a tracking store; "
                             "choose another --out")


def write_tracking(tracking: Tracking, url: str, *, storage_options: dict | None = None) -> Tracking:
    """Write the tracking store (its ``complete`` mark last) and return it opened from there."""
    store = ResultsStore(url, dict(storage_options or {}))
    check_target(store)
    ds = tracking.ds.copy()
    ds.attrs = {**ds.attrs, "complete": False}
    encoding = {"footprints": {"chunks": (UNIT_CHUNK, *ds["footprints"].shape[1:])}}
    with dask.config.set(scheduler="threads"):  # the data is here, in this process
        store.write(ds, encoding=encoding)
    store.set_attrs(complete=True)
    return open_tracking(store.url, storage_options=storage_options)


def open_tracking(url: str, *, storage_options: dict | None = None) -> Tracking:
    """Open a tracking store written by :func:`~calcium_dask.register_sessions` (lazily)."""
    store = ResultsStore(url, dict(storage_options or {}))
    try:
        attrs = dict(store.root(mode="r").attrs)
    except StoreError:
        raise StoreError(f"{store.url}: no tracking store here") from None
    if attrs.get("kind") != KIND:
        raise StoreError(f"{store.url}: not a tracking store (a results store? use open_results)")
    if not attrs.get("complete"):
        raise StoreError(f"{store.url}: the tracking store was not completely written; run calcium-dask register again")
    ds = store.read()
    return Tracking(ds, store.url, dict(storage_options or {}))


def is_tracking_store(url: str, storage_options: dict | None = None) -> bool:
    """Whether ``url`` holds a tracking store (complete or not)."""
    try:
        return ResultsStore(url, dict(storage_options or {})).root(mode="r").attrs.get("kind") == KIND
    except (StoreError, ValueError, OSError):
        return False
