"""Picklable frame sources: what a worker needs to read frames ``[start, stop)`` itself.

A source holds a URL and offsets, never an open file, so a dask task carries it to any
worker (file handles and tifffile's zarr store cannot be pickled). ``LazyFrames`` adapts
a source to the array protocol ``dask.array.from_array`` expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import fsspec
import numpy as np

__all__ = ["FrameSource", "LazyFrames", "RawSource", "TiffPart", "TiffSource", "Hdf5Source"]


class FrameSource(Protocol):
    shape: tuple[int, int, int]
    dtype: np.dtype

    def read(self, start: int, stop: int) -> np.ndarray: ...


@dataclass(frozen=True)
class LazyFrames:
    """Array-like over a :class:`FrameSource`; indexing reads only the frames it needs."""

    source: Any

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.source.shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.source.dtype).newbyteorder("=")

    @property
    def ndim(self) -> int:
        return 3

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        t = key[0]
        if isinstance(t, (int, np.integer)):
            return self.source.read(int(t), int(t) + 1)[0][key[1:]]
        start, stop, step = t.indices(self.shape[0])
        if step != 1 or stop <= start:
            idx = np.arange(start, stop, step)
            frames = np.stack([self.source.read(i, i + 1)[0] for i in idx]) if len(idx) else \
                np.empty((0,) + self.shape[1:], self.dtype)
            return frames[(slice(None),) + key[1:]]
        return self.source.read(start, stop)[(slice(None),) + key[1:]]


@dataclass(frozen=True)
class RawSource:
    """Frames stored contiguously at a byte offset (uncompressed TIFF series, ``.npy``)."""

    url: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    offset: int
    storage_options: dict = field(default_factory=dict)
    frame_stride: int = 1  # frames of other planes interleaved (TZYX / TCYX files)
    plane: int = 0

    def read(self, start: int, stop: int) -> np.ndarray:
        h, w = self.shape[1:]
        frame_bytes = h * w * self.dtype.itemsize
        first = start * self.frame_stride + self.plane
        n_frames = (stop - start - 1) * self.frame_stride + 1 if stop > start else 0
        with fsspec.open(self.url, "rb", **self.storage_options) as f:
            f.seek(self.offset + first * frame_bytes)
            buf = f.read(n_frames * frame_bytes)
        if len(buf) < n_frames * frame_bytes:
            raise OSError(f"{self.url}: file ends early (truncated?) while reading frames {start}-{stop}")
        arr = np.frombuffer(buf, dtype=self.dtype).reshape(n_frames, h, w)
        return arr[:: self.frame_stride].astype(self.dtype.newbyteorder("="), copy=True)


@dataclass(frozen=True)
class TiffPart:
    """One TIFF file of a movie: its URL, how many frames it holds, and its page layout."""

    url: str
    n_frames: int
    pages_per_frame: int = 1
    plane: int = 0


@dataclass(frozen=True)
class TiffSource:
    """Frames spread over one or more TIFF files whose pages are read with tifffile."""

    parts: tuple[TiffPart, ...]
    shape: tuple[int, int, int]
    dtype: np.dtype
    storage_options: dict = field(default_factory=dict)

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start,) + self.shape[1:], self.dtype)
        first = 0
        for part in self.parts:
            lo, hi = max(start, first), min(stop, first + part.n_frames)
            if lo < hi:
                pages = [(t - first) * part.pages_per_frame + part.plane for t in range(lo, hi)]
                out[lo - start: hi - start] = _read_tiff_pages(part.url, pages, self.storage_options)
            first += part.n_frames
        return out


def _read_tiff_pages(url: str, pages: list[int], storage_options: dict) -> np.ndarray:
    import tifffile

    from .tiff import quiet_tifffile

    with quiet_tifffile(), fsspec.open(url, "rb", **storage_options) as f, tifffile.TiffFile(f) as tf:
        tf.pages.useframes = True  # parse each IFD once, without loading tags we skip
        arr = np.stack([tf.pages[i].asarray() for i in pages])
    return arr.reshape((len(pages),) + arr.shape[-2:])


@dataclass(frozen=True)
class Hdf5Source:
    """A 3-D (or 4-D, with ``plane``) dataset in an HDF5 or NWB file."""

    url: str
    dataset: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    storage_options: dict = field(default_factory=dict)
    plane: int | None = None
    plane_axis: int = 1

    def read(self, start: int, stop: int) -> np.ndarray:
        import h5py

        with fsspec.open(self.url, "rb", **self.storage_options) as f, h5py.File(f, "r") as h:
            d = h[self.dataset]
            if self.plane is None:
                return d[start:stop]
            key = [slice(start, stop), slice(None), slice(None), slice(None)]
            key[self.plane_axis] = self.plane
            return d[tuple(key)]
