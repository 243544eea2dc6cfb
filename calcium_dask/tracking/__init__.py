"""Tracking neurons across sessions: align the sessions of one field of view, match their
units, and keep one identity per neuron over all sessions.

>>> import calcium_dask as cd
>>> tr = cd.register_sessions(["day1.zarr", "day2.zarr", "day3.zarr"], out="tracking.zarr")  # doctest: +SKIP
>>> tr.assignments            # (tracked_unit, session): unit in each store, or -1   # doctest: +SKIP
>>> tr.dff("day2", [0, 5])    # their dF/F in day 2, read lazily from day2.zarr       # doctest: +SKIP

Numpy kernels in :mod:`.kernels`; :mod:`.register` builds the dask graph (one task per
session's alignment, one per pair of sessions' matching); :mod:`.result` is the tracking
store and the :class:`Tracking` object.
"""

from __future__ import annotations

from .register import SessionProblem, TrackingError, register_sessions
from .result import Tracking, is_tracking_store, open_tracking

__all__ = ["register_sessions", "Tracking", "open_tracking", "is_tracking_store", "TrackingError",
           "SessionProblem"]
