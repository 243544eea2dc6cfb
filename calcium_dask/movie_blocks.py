"""The movie as blocks that tasks read: time chunks of any dask-backed movie, or the tiles of a
stored (zarr) movie that each task opens itself; missing pixels are filled as blocks are read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
import xarray as xr
import zarr

from .io.kernels.missing_pixels import fill_missing

__all__ = ["ZarrMovie", "zarr_movie", "time_blocks", "patch_input", "fill_missing_lazy"]


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

    def read(self, t0: int, t1: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Frames ``t0:t1``, restricted to ``box = (y0, y1, x0, x1)`` (only its tiles are read)."""
        y0, y1, x0, x1 = box if box is not None else (0, self.shape[1], 0, self.shape[2])
        block = np.asarray(self._array()[t0:t1, y0:y1, x0:x1], dtype=np.float32)
        return fill_missing(block, fill=self.check_nan, t0=t0, source=f"{self.url}/{self.path}")

    def read_downsampled(self, box: tuple[int, int, int, int], tsub: int) -> np.ndarray:
        """The whole time series of ``box``, averaged over groups of ``tsub`` frames.

        Reads one time chunk at a time, so memory stays at the output's size.
        """
        y0, y1, x0, x1 = box
        n_out = self.shape[0] // tsub
        out = np.empty((n_out, y1 - y0, x1 - x0), np.float32)
        step = max(tsub, (self.t_chunk // tsub) * tsub)
        for t0 in range(0, n_out * tsub, step):
            t1 = min(t0 + step, n_out * tsub)
            block = self.read(t0, t1, box)
            out[t0 // tsub: t1 // tsub] = block.reshape(-1, tsub, *block.shape[1:]).mean(1)
        return out


def zarr_movie(movie: xr.DataArray) -> ZarrMovie | None:
    """The zarr array behind ``movie`` when it came from a results store, else None."""
    url, path = movie.attrs.get("zarr_url"), movie.attrs.get("zarr_path")
    if not url or not path:
        return None
    chunks = movie.encoding.get("chunks") or movie.encoding.get("preferred_chunks", {}).get("frame")
    t_chunk = chunks[0] if isinstance(chunks, tuple) else int(chunks or 500)
    return ZarrMovie(url, path, tuple(movie.shape), int(t_chunk), dict(movie.attrs.get("zarr_storage_options", {})),
                     check_nan=_check_nan(movie))


def _check_nan(movie: xr.DataArray) -> bool:
    """Whether reads fill missing pixels: the ``check_nan`` attribute CNMF and evaluation set."""
    return bool(movie.attrs.get("check_nan", True))


def time_blocks(movie: xr.DataArray) -> list[tuple[int, Any]]:
    """``(t0, delayed block (Tc, H, W))`` covering the movie, one per time chunk."""
    ref = zarr_movie(movie)
    if ref is not None:
        read = dask.delayed(ZarrMovie.read, pure=True)
        return [(t0, read(ref, t0, min(t0 + ref.t_chunk, ref.shape[0])))
                for t0 in range(0, ref.shape[0], ref.t_chunk)]
    data = fill_missing_lazy(movie.data.rechunk({1: -1, 2: -1}), _check_nan(movie), movie.attrs.get("source", "movie"))
    starts = np.cumsum((0,) + data.chunks[0][:-1])
    return list(zip((int(s) for s in starts), data.to_delayed().ravel()))


def patch_input(movie: xr.DataArray, box: tuple[int, int, int, int]) -> Any:
    """What a patch task receives: a ZarrMovie to read itself, or the materialised patch."""
    ref = zarr_movie(movie)
    if ref is not None:
        return ref
    y0, y1, x0, x1 = box
    patch = fill_missing_lazy(movie.data[:, y0:y1, x0:x1], _check_nan(movie), movie.attrs.get("source", "movie"))
    return patch.rechunk(-1).to_delayed().ravel()[0]


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
