"""Pages of a recording read by index, and channels picked out of them.

A *page* is one stored image (a TIFF page, a Scanbox or Nikon frame record, a Bruker
file's page). A *slot* is one frame of one plane with all its channels. Sources here are
picklable (URLs and offsets, never open files), so that each dask task reads the pages of
its frames itself; :class:`~calcium_dask.io.layout.FieldSource` turns them into the
frames of one field of view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import fsspec
import numpy as np

from .kernels.interleave import channel_pages, read_runs, unpack_samples

__all__ = ["PageSource", "SlotSource", "StridedPages", "TiffPages", "PageParts", "PagedChannels",
           "SampleChannels", "FramePages"]

Rows = tuple[int, int] | None


class PageSource(Protocol):
    n_pages: int
    shape: tuple[int, int]  # (lines, values per line)
    dtype: np.dtype

    def read_pages(self, pages: np.ndarray, rows: Rows = None) -> np.ndarray: ...


class SlotSource(Protocol):
    n_slots: int
    shape: tuple[int, int]  # (lines, pixels) of one channel
    dtype: np.dtype
    nchannels: int

    def read(self, slots: np.ndarray, channel: int, rows: Rows = None) -> np.ndarray: ...


def _rows(rows: Rows, height: int) -> tuple[int, int]:
    return (0, height) if rows is None else (int(rows[0]), int(rows[1]))


@dataclass(frozen=True)
class StridedPages:
    """Uncompressed pages at a fixed byte stride in one file: page ``i`` starts at
    ``offset + i * stride`` (ScanImage and ``tifffile`` TIFFs, Scanbox ``.sbx``, Nikon ND2
    frame chunks). Only the rows asked for are read."""

    url: str
    n_pages: int
    shape: tuple[int, int]
    dtype: np.dtype  # with the file's byte order
    offset: int
    stride: int
    storage_options: dict = field(default_factory=dict)

    def read_pages(self, pages: np.ndarray, rows: Rows = None) -> np.ndarray:
        y0, y1 = _rows(rows, self.shape[0])
        row_bytes = self.shape[1] * self.dtype.itemsize
        n = (y1 - y0) * row_bytes
        out = np.empty((len(pages), y1 - y0, self.shape[1]), self.dtype.newbyteorder("="))
        i = 0
        with fsspec.open(self.url, "rb", **self.storage_options) as f:
            for a, b in read_runs(np.asarray(pages), max_waste=2 * n / self.stride):
                start = self.offset + a * self.stride + y0 * row_bytes
                length = (b - 1 - a) * self.stride + n
                f.seek(start)
                buf = f.read(length)
                if len(buf) < length:
                    raise OSError(f"{self.url}: file ends early (truncated?) while reading pages {a}-{b}")
                for p in np.asarray(pages)[i:]:
                    if p >= b:
                        break
                    at = (int(p) - a) * self.stride
                    out[i] = np.frombuffer(buf, self.dtype, (y1 - y0) * self.shape[1], at).reshape(y1 - y0, -1)
                    i += 1
        return out


@dataclass(frozen=True)
class TiffPages:
    """Pages of one TIFF read by ``tifffile`` (compressed, or laid out irregularly)."""

    url: str
    n_pages: int
    shape: tuple[int, int]
    dtype: np.dtype
    storage_options: dict = field(default_factory=dict)

    def read_pages(self, pages: np.ndarray, rows: Rows = None) -> np.ndarray:
        import tifffile

        from .tiff import quiet_tifffile

        y0, y1 = _rows(rows, self.shape[0])
        out = np.empty((len(pages), y1 - y0, self.shape[1]), np.dtype(self.dtype).newbyteorder("="))
        with quiet_tifffile(), fsspec.open(self.url, "rb", **self.storage_options) as f, tifffile.TiffFile(f) as tf:
            tf.pages.useframes = True  # parse each IFD once, without the tags we skip
            for i, p in enumerate(np.asarray(pages).tolist()):
                out[i] = tf.pages[p].asarray().reshape(self.shape)[y0:y1]
        return out


@dataclass(frozen=True)
class PageParts:
    """The pages of several files as one sequence (a session split into files)."""

    parts: tuple[Any, ...]

    @property
    def n_pages(self) -> int:
        return sum(p.n_pages for p in self.parts)

    @property
    def shape(self) -> tuple[int, int]:
        return self.parts[0].shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.parts[0].dtype).newbyteorder("=")

    def read_pages(self, pages: np.ndarray, rows: Rows = None) -> np.ndarray:
        pages = np.asarray(pages, dtype=np.int64)
        y0, y1 = _rows(rows, self.shape[0])
        out = np.empty((len(pages), y1 - y0, self.shape[1]), self.dtype)
        first = 0
        for part in self.parts:
            mine = (pages >= first) & (pages < first + part.n_pages)
            if mine.any():
                out[mine] = part.read_pages(pages[mine] - first, rows)
            first += part.n_pages
        return out


@dataclass(frozen=True)
class FramePages:
    """Pages of any frame source (``read(start, stop)``: npy, HDF5, NWB, TIFF series...)."""

    source: Any

    @property
    def n_pages(self) -> int:
        return int(self.source.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.source.shape[1:])  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.source.dtype).newbyteorder("=")

    def read_pages(self, pages: np.ndarray, rows: Rows = None) -> np.ndarray:
        y0, y1 = _rows(rows, self.shape[0])
        pages = np.asarray(pages, dtype=np.int64)
        out = np.empty((len(pages), y1 - y0, self.shape[1]), self.dtype)
        i = 0
        for a, b in read_runs(pages):
            block = np.asarray(self.source.read(a, b))
            k = int(np.count_nonzero((pages >= a) & (pages < b)))
            out[i:i + k] = block[pages[i:i + k] - a, y0:y1]
            i += k
        return out


@dataclass(frozen=True)
class PagedChannels:
    """Slots whose channels are consecutive pages (ScanImage, plain TIFF, HDF5...)."""

    pages: Any
    nchannels: int = 1

    @property
    def n_slots(self) -> int:
        return self.pages.n_pages // self.nchannels

    @property
    def pages_per_slot(self) -> int:
        return self.nchannels

    @property
    def shape(self) -> tuple[int, int]:
        return self.pages.shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.pages.dtype).newbyteorder("=")

    def read(self, slots: np.ndarray, channel: int, rows: Rows = None) -> np.ndarray:
        return self.pages.read_pages(channel_pages(slots, nchannels=self.nchannels, channel=channel), rows)


@dataclass(frozen=True)
class SampleChannels:
    """Slots whose channels are interleaved pixel by pixel in one record (Scanbox, with
    inverted values; Nikon ND2). ``pages`` holds rows of ``width * nchannels`` values."""

    pages: Any
    nchannels: int = 1
    invert: bool = False

    @property
    def n_slots(self) -> int:
        return self.pages.n_pages

    pages_per_slot = 1

    @property
    def shape(self) -> tuple[int, int]:
        h, w = self.pages.shape
        return h, w // self.nchannels

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.pages.dtype).newbyteorder("=")

    def read(self, slots: np.ndarray, channel: int, rows: Rows = None) -> np.ndarray:
        raw = self.pages.read_pages(np.asarray(slots, dtype=np.int64), rows)
        return unpack_samples(raw, nchannels=self.nchannels, channel=channel, invert=self.invert)
