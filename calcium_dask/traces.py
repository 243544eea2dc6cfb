"""Unit x frame arrays (traces, spikes, residuals, dF/F, scratch sums) kept in a zarr store.

A session of hours has traces no process should hold whole (2,000 units x 2 million frames
is 16 GB as float32). They live in the results store as zarr arrays chunked along both
dims, ``(UNIT_CHUNK, frame_chunk)`` with at most ``FRAME_CHUNK_MAX`` frames per chunk, and
tasks read and write them in whole chunks:

- a *unit task* owns a range of whole unit chunks and reads or writes every frame of them
  (a trace is deconvolved over its whole length in one task);
- a *frame task* owns a range of whole frame chunks (a span of the movie) and reads or
  writes every unit there.

No two tasks write one chunk, so tasks never race, and the client holds only per-unit
scalars. :class:`TraceLayout` says where the chunks fall; :class:`TraceArrays` is the
picklable handle tasks read and write through.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import zarr

from .store import ResultsStore

__all__ = ["TraceLayout", "TraceArrays", "UNIT_CHUNK", "FOOTPRINT_UNITS", "FRAME_CHUNK_MAX", "unit_spans", "scratch_store"]

UNIT_CHUNK = 16  # units per chunk: a unit task holds 16 whole traces per array it reads
FOOTPRINT_UNITS = 64  # units per chunk of the footprints (units x tiles; zero chunks are not stored)
FRAME_CHUNK_MAX = 10_000  # frames per chunk (DESIGN.md section 2: bounded, so readers stream)
MIN_SPANS = 16  # frame spans a short movie is cut into, so that every worker has work


def _local_hosts() -> set[str]:
    import socket

    import psutil

    hosts = {"127.0.0.1", "localhost", "::1", socket.gethostname()}
    for addrs in psutil.net_if_addrs().values():
        hosts.update(a.address.split("%")[0] for a in addrs)
    return hosts


def scratch_store() -> ResultsStore:
    """A results store in a new temporary folder, for steps run without ``store=``.

    Workers must reach it: it is refused when a worker of the current Dask client runs on
    another machine (pass ``store=`` with a URL every worker can write then, e.g.
    ``s3://bucket/run.zarr``). The folder is removed when this process exits.
    """
    import atexit
    import os
    import shutil
    import tempfile
    from urllib.parse import urlparse

    from .errors import StoreError

    try:
        from distributed import get_client

        workers = get_client().scheduler_info().get("workers", {})
    except (ImportError, ValueError):
        workers = {}
    remote = sorted({urlparse(w).hostname for w in workers} - _local_hosts() - {None})
    if remote:
        raise StoreError(f"workers on other machines ({', '.join(remote)}) cannot share a temporary folder: "
                         "pass store= with a URL every worker can write (e.g. s3://bucket/run.zarr)")
    folder = tempfile.mkdtemp(prefix="calcium-dask-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return ResultsStore(os.path.join(folder, "results.zarr"))


@dataclass(frozen=True)
class TraceLayout:
    """Where the chunks of a unit x frame array fall.

    Attributes
    ----------
    n_frames : int
    frame_chunk : int
        Frames per chunk: a multiple of the movie's time chunk ``frame_step`` (a frame task
        reads whole movie chunks), at most ``FRAME_CHUNK_MAX``.
    unit_chunk : int
    """

    n_frames: int
    frame_chunk: int
    unit_chunk: int = UNIT_CHUNK

    @classmethod
    def for_movie(cls, n_frames: int, frame_step: int) -> TraceLayout:
        """A layout for a movie of ``n_frames`` read in chunks of ``frame_step`` frames."""
        step = max(1, min(int(frame_step), n_frames))
        most = max(step, FRAME_CHUNK_MAX // step * step)
        want = step * math.ceil(n_frames / MIN_SPANS / step)
        return cls(int(n_frames), int(min(most, max(step, want))))

    def frame_spans(self) -> list[tuple[int, int]]:
        """``(t0, t1)`` of each frame chunk: the spans frame tasks own."""
        return [(t0, min(t0 + self.frame_chunk, self.n_frames)) for t0 in range(0, self.n_frames, self.frame_chunk)]

    def chunks(self, n_units: int) -> tuple[int, int]:
        """Chunk shape ``(units, frames)`` of an array of ``n_units`` rows."""
        return (max(1, min(self.unit_chunk, n_units)), max(1, min(self.frame_chunk, self.n_frames)))


def unit_spans(n_units: int, unit_chunk: int = UNIT_CHUNK) -> list[tuple[int, int]]:
    """Ranges of whole unit chunks that unit tasks own: ``(u0, u1)``, each ``unit_chunk``
    units but the last."""
    return [(u0, min(u0 + unit_chunk, n_units)) for u0 in range(0, n_units, unit_chunk)]


@dataclass(frozen=True)
class TraceArrays:
    """Unit x frame arrays in a group of a results store (picklable: tasks open it themselves).

    Parameters
    ----------
    store : ResultsStore
    group : str
        Group of the store holding the arrays (``""``: the root).
    layout : TraceLayout
    """

    store: ResultsStore
    group: str
    layout: TraceLayout

    def path(self, name: str) -> str:
        """Path of the array ``name`` in the store."""
        return f"{self.group}/{name}" if self.group else name

    def _open_group(self) -> zarr.Group:
        root = self.store.root()
        return root.require_group(self.group) if self.group else root

    def create(self, name: str, n_units: int, *, dims: tuple[str, str] = ("unit", "frame"),
               dtype: Any = np.float32) -> None:
        """Create (or replace) the array ``name`` of ``n_units`` rows, filled with zeros."""
        shape = (int(n_units), self.layout.n_frames)
        self._open_group().create_array(name, shape=shape, chunks=self.layout.chunks(n_units), dtype=dtype,
                                        dimension_names=dims, fill_value=0, overwrite=True,
                                        config={"write_empty_chunks": False})

    def put(self, name: str, data: np.ndarray, *, dims: tuple[str, str] = ("unit", "sample")) -> None:
        """Store ``data`` (units x any columns, e.g. the patches' low-rate traces) as the
        array ``name``, chunked by units, for tasks to read their rows of (a graph that
        carried it would pass it through the scheduler)."""
        data = np.asarray(data, np.float32)
        arr = self._open_group().create_array(name, shape=data.shape, dtype=np.float32, dimension_names=dims,
                                              chunks=(self.layout.unit_chunk, max(1, data.shape[1])),
                                              fill_value=0, overwrite=True)
        arr[...] = data

    def _array(self, name: str, mode: str = "r") -> zarr.Array:
        return self.store.array(self.path(name), mode=mode)

    def n_units(self, name: str) -> int:
        """Number of rows (units) of the array ``name``."""
        return int(self._array(name).shape[0])

    def read(self, name: str, units: tuple[int, int] | None = None,
             frames: tuple[int, int] | None = None) -> np.ndarray:
        """Rows ``units`` and columns ``frames`` of ``name`` (float32)."""
        arr = self._array(name)
        u0, u1 = units if units is not None else (0, arr.shape[0])
        t0, t1 = frames if frames is not None else (0, arr.shape[1])
        return np.asarray(arr[u0:u1, t0:t1], dtype=np.float32)

    def read_rows(self, name: str, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Any rows of ``name`` over all frames (e.g. the members of a merge group)."""
        rows = np.asarray(rows, np.int64)
        arr = self._array(name)
        if rows.size == 0:
            return np.zeros((0, arr.shape[1]), np.float32)
        return np.asarray(arr.get_orthogonal_selection((rows, slice(None))), dtype=np.float32)

    def write(self, name: str, data: np.ndarray, *, u0: int = 0, t0: int = 0) -> None:
        """Write ``data`` at rows ``u0:``, columns ``t0:`` (whole chunks, except at the ends)."""
        data = np.asarray(data, np.float32)
        self._array(name, mode="r+")[u0:u0 + data.shape[0], t0:t0 + data.shape[1]] = data

    def lazy(self, name: str) -> da.Array:
        """The array as dask (one task per chunk, read when computed)."""
        return da.from_zarr(self._array(name))

    def delete(self, name: str) -> None:
        """Remove the array ``name`` from the store."""
        self.store._remove(self.path(name))


# -- passes over trace arrays (no movie) ---------------------------------------------------
def _gather_span(arrays: TraceArrays, src: str, dst: str, u0: int, rows: np.ndarray,
                 scale: np.ndarray | None, extra: str | None, extra_rows: np.ndarray | None,
                 out_arrays: TraceArrays) -> np.ndarray:
    """Rows ``rows`` of ``src`` (and, where ``rows < 0``, row ``extra_rows`` of ``extra``)
    scaled by ``scale``, written at ``u0`` of ``dst`` in ``out_arrays``; their sums of
    absolute values."""
    block = np.empty((len(rows), arrays.layout.n_frames), np.float32)
    own = rows >= 0
    block[own] = arrays.read_rows(src, rows[own])
    if (~own).any():
        block[~own] = arrays.read_rows(extra, extra_rows[~own])
    if scale is not None:
        block *= np.asarray(scale, np.float32)[:, None]
    out_arrays.write(dst, block, u0=u0)
    return np.abs(block).sum(axis=1, dtype=np.float64)


def gather_rows(arrays: TraceArrays, src: str, dst: str, rows: np.ndarray, *, scale: np.ndarray | None = None,
                extra: str | None = None, extra_rows: np.ndarray | None = None, dst_arrays: TraceArrays | None = None,
                dims: tuple[str, str] = ("unit", "frame"), label: str) -> np.ndarray:
    """Write ``dst`` whose row ``i`` is row ``rows[i]`` of ``src`` (times ``scale[i]``), or,
    where ``rows[i] < 0``, row ``extra_rows[i]`` of ``extra``: selection, reordering and
    appending in one pass of unit tasks. ``dst`` goes to ``dst_arrays`` (default: the
    same group, same layout). Returns each new row's sum of absolute values."""
    import dask

    from .compute import compute

    rows = np.asarray(rows, np.int64)
    out = dst_arrays or arrays
    out.create(dst, len(rows), dims=dims)
    tasks = [dask.delayed(_gather_span, pure=True)(
        arrays, src, dst, u0, rows[u0:u1], None if scale is None else scale[u0:u1], extra,
        None if extra_rows is None else np.asarray(extra_rows)[u0:u1], out)
        for u0, u1 in unit_spans(len(rows), arrays.layout.unit_chunk)]
    parts = compute(tasks, label=label) if tasks else []
    return np.concatenate(parts) if parts else np.zeros(0)


@dataclass
class Moments:
    """Counts, means and centred second moments of traces and of pairs of traces, combinable
    over frame spans (Chan et al.'s pairwise update), so that correlations of long traces
    need no trace in memory and lose no precision to large means."""

    n: int
    mean: np.ndarray  # (K,)
    m2: np.ndarray  # (K,) sum of squared deviations
    co: np.ndarray  # (P,) sum of products of deviations of each pair

    @classmethod
    def of(cls, X: np.ndarray, pairs: np.ndarray) -> Moments:
        X = np.asarray(X, np.float64)
        mean = X.mean(axis=1) if X.shape[1] else np.zeros(len(X))
        Z = X - mean[:, None]
        co = np.einsum("pt,pt->p", Z[pairs[:, 0]], Z[pairs[:, 1]]) if len(pairs) else np.zeros(0)
        return cls(X.shape[1], mean, np.einsum("kt,kt->k", Z, Z), co)

    def combine(self, other: Moments, pairs: np.ndarray) -> Moments:
        n = self.n + other.n
        if not self.n or not other.n:
            return self if other.n == 0 else other
        d = other.mean - self.mean
        w = self.n * other.n / n
        return Moments(n, self.mean + d * other.n / n, self.m2 + other.m2 + d * d * w,
                       self.co + other.co + d[pairs[:, 0]] * d[pairs[:, 1]] * w)

    def correlations(self, pairs: np.ndarray) -> np.ndarray:
        """Pearson correlation of each pair (0 where a trace is constant)."""
        sd = np.sqrt(np.maximum(self.m2, 0.0))
        den = sd[pairs[:, 0]] * sd[pairs[:, 1]]
        return np.where(den > 0, self.co / np.where(den > 0, den, 1.0), 0.0)


def pair_correlations(data: da.Array, pairs: np.ndarray, spans: Sequence[tuple[int, int]], *,
                      label: str) -> np.ndarray:
    """Pearson correlation of rows ``pairs[:, 0]`` and ``pairs[:, 1]`` of the (units, frames)
    dask array ``data``: one task per span of frames, moments combined as they finish."""
    import dask

    from .compute import compute

    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if not len(pairs):
        return np.zeros(0)
    pairs_d = dask.delayed(pairs, pure=True)
    parts = [dask.delayed(Moments.of, pure=True)(data[:, t0:t1], pairs_d) for t0, t1 in spans]
    total = compute([], label=label, sums=[(parts, lambda ms: _combine_all(ms, pairs))])[0]
    return total.correlations(pairs)


def _combine_all(moments: list[Moments], pairs: np.ndarray) -> Moments:
    out = moments[0]
    for m in moments[1:]:
        out = out.combine(m, pairs)
    return out
