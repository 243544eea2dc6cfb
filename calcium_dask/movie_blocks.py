"""The movie as blocks that tasks read: time chunks of any dask-backed movie, or the tiles of a
stored (zarr) movie that each task opens itself; missing pixels are filled as blocks are read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import dask
import numpy as np
import xarray as xr
import zarr

from .io.kernels.missing_pixels import fill_missing

__all__ = ["FrameSource", "ZarrMovie", "DaskFrames", "frame_source", "zarr_movie", "iter_blocks",
           "read_downsampled", "fill_missing_lazy"]


class FrameSource(Protocol):
    """What tasks read frames from: any picklable object with a shape and ``read``."""

    shape: tuple[int, int, int]
    t_chunk: int  # frames a read should cover (the stored chunk)
    name: str  # the file or URL, named in errors

    def restrict(self, t0: int, t1: int) -> FrameSource:
        """The source a task reading only frames ``t0:t1`` needs (it may carry less)."""

    def read(self, t0: int, t1: int, box: Box | None = None) -> np.ndarray:
        """Frames ``t0:t1`` inside ``box = (y0, y1, x0, x1)`` as float32, missing pixels filled."""


Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ZarrMovie:
    """A movie in a zarr array that tasks open themselves (picklable: URL and path only)."""

    url: str
    path: str
    shape: tuple[int, int, int]
    t_chunk: int
    storage_options: dict = field(default_factory=dict)
    check_nan: bool = True  # fill missing pixels (else they are an error)

    def _array(self) -> zarr.Array:
        kw = {"storage_options": self.storage_options} if "://" in self.url and self.storage_options else {}
        return zarr.open_array(self.url, path=self.path, mode="r", **kw)

    def read(self, t0: int, t1: int, box: Box | None = None) -> np.ndarray:
        """Frames ``t0:t1``, restricted to ``box = (y0, y1, x0, x1)`` (only its tiles are read)."""
        y0, y1, x0, x1 = box if box is not None else (0, self.shape[1], 0, self.shape[2])
        arr = self._array()
        block = np.asarray(arr[t0:t1, y0:y1, x0:x1], dtype=np.float32)
        if "scale_factor" in arr.attrs:  # a compact (16-bit) movie: CF decoding, as xarray does
            block = block * np.float32(arr.attrs["scale_factor"]) + np.float32(arr.attrs.get("add_offset", 0.0))
        return fill_missing(block, fill=self.check_nan, t0=t0, source=f"{self.url}/{self.path}")

    def restrict(self, t0: int, t1: int) -> ZarrMovie:
        return self  # a task opens the array and reads only what it asks for

    @property
    def name(self) -> str:
        return f"{self.url}/{self.path}"


class DaskFrames:
    """A dask-backed movie (a file read lazily, or frames corrected on the fly) that a task
    computes piece by piece with the synchronous scheduler, inside the task.

    ``restrict`` cuts the graph to a span of frames, so a task carries only the graph of
    the frames it reads. (A plain class, not a dataclass: dask computes the collections it
    finds in a dataclass's fields before a task gets them.)
    """

    def __init__(self, data: Any, source: str, check_nan: bool = True, offset: int = 0) -> None:
        self.data = data  # dask array (frame, y, x), whole frames per chunk, regular time chunks
        self.source = source
        self.check_nan = check_nan
        self.offset = offset  # movie frame of ``data``'s first frame

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.offset + int(self.data.shape[0]), *map(int, self.data.shape[1:]))

    @property
    def t_chunk(self) -> int:
        return int(self.data.chunks[0][0])

    @property
    def name(self) -> str:
        return self.source

    def restrict(self, t0: int, t1: int) -> DaskFrames:
        (part,) = dask.optimize(self.data[t0 - self.offset:t1 - self.offset])
        return DaskFrames(part, self.source, self.check_nan, t0)

    def read(self, t0: int, t1: int, box: Box | None = None) -> np.ndarray:
        y0, y1, x0, x1 = box if box is not None else (0, self.shape[1], 0, self.shape[2])
        piece = self.data[t0 - self.offset:t1 - self.offset, y0:y1, x0:x1]
        block = np.asarray(piece.compute(scheduler="sync"), dtype=np.float32)
        return fill_missing(block, fill=self.check_nan, t0=t0, source=self.source)

    def __dask_tokenize__(self) -> Any:
        return (type(self).__name__, self.data.name, self.source, self.check_nan, self.offset)


def frame_source(movie: xr.DataArray) -> FrameSource:
    """Where tasks read ``movie``: its zarr array when it came from a results store, the
    object a lazy corrected movie names (``frame_source`` attribute), else its dask graph."""
    given = movie.attrs.get("frame_source")
    if given is not None:
        return given
    ref = zarr_movie(movie)
    if ref is not None:
        return ref
    data = movie.data.rechunk({1: -1, 2: -1})
    if len(set(data.chunks[0][:-1])) > 1:
        data = data.rechunk({0: data.chunks[0][0]})
    source = movie.attrs.get("source", "movie")
    source = source[0] if isinstance(source, (list, tuple)) and source else source
    return DaskFrames(data, str(source), _check_nan(movie))


def iter_blocks(source: FrameSource, t0: int, t1: int, box: Box | None = None):
    """``(first frame, frames)`` of ``t0:t1`` read one stored chunk at a time."""
    step = source.t_chunk
    for a in range(t0, t1, step):
        b = min(a - a % step + step, t1)
        yield a, source.read(a, b, box)


def read_downsampled(source: FrameSource, box: Box, tsub: int, span: tuple[int, int] | None = None) -> np.ndarray:
    """The time series of ``box`` over frames ``span`` (default: all) as (n // tsub, h, w),
    averaged over groups of ``tsub`` frames, read one chunk at a time so that memory stays
    at the output's size."""
    y0, y1, x0, x1 = box
    first, last = span if span is not None else (0, source.shape[0])
    n_out = (last - first) // tsub
    out = np.empty((n_out, y1 - y0, x1 - x0), np.float32)
    step = max(tsub, (source.t_chunk // tsub) * tsub)
    for t0 in range(0, n_out * tsub, step):
        t1 = min(t0 + step, n_out * tsub)
        block = source.read(first + t0, first + t1, box)
        out[t0 // tsub: t1 // tsub] = block.reshape(-1, tsub, *block.shape[1:]).mean(1)
    return out


def zarr_movie(movie: xr.DataArray) -> ZarrMovie | None:
    """The zarr array behind ``movie`` when it came from a results store, else None."""
    url, path = movie.attrs.get("zarr_url"), movie.attrs.get("zarr_path")
    if not url or not path:
        return None
    chunks = movie.encoding.get("chunks") or movie.encoding.get("preferred_chunks", {}).get("frame")
    t_chunk = movie.attrs.get("zarr_t_chunk") or (chunks[0] if isinstance(chunks, tuple) else int(chunks or 500))
    return ZarrMovie(url, path, tuple(movie.shape), int(t_chunk), dict(movie.attrs.get("zarr_storage_options", {})),
                     check_nan=_check_nan(movie))


def _check_nan(movie: xr.DataArray) -> bool:
    """Whether reads fill missing pixels: the ``check_nan`` attribute CNMF and evaluation set."""
    return bool(movie.attrs.get("check_nan", True))


def fill_missing_lazy(data: Any, check_nan: bool = True, source: Any = "movie", first: int = 0) -> Any:
    """A dask array of frames with missing pixels filled chunk by chunk (lazily).

    Integer movies pass through untouched (they cannot hold NaN); float movies come out
    as float32. ``source`` is the movie's file or URL, or its list of files (the first is
    named); ``first`` is the movie's frame number of ``data``'s first frame (errors name
    the movie's frames).
    """
    if data.dtype.kind != "f":
        return data
    if isinstance(source, (list, tuple)):
        source = source[0] if source else "movie"
    return data.map_blocks(_fill_block, check_nan=check_nan, source=str(source), first=int(first),
                           dtype=np.float32)


def _fill_block(block: np.ndarray, check_nan: bool, source: str, first: int = 0,
                block_info: dict | None = None) -> np.ndarray:
    t0 = first + (int(block_info[0]["array-location"][0][0]) if block_info else 0)
    return fill_missing(block, fill=check_nan, t0=t0, source=source).astype(np.float32, copy=False)
