"""``open_movie``: any supported file or URL -> a lazy ``xarray.DataArray`` (frame, y, x)."""

from __future__ import annotations

import os
from typing import Any, Literal

import dask.array as da
from dask.base import tokenize
import numpy as np
import xarray as xr

from ..errors import MovieError
from .hdf5 import hdf5_source, nwb_source
from .npy import npy_source
from .sources import LazyFrames
from .tiff import tiff_source
from .urls import expand_files, filesystem, normalize, read_head
from .zarrstore import zarr_array

__all__ = ["open_movie", "guess_engine", "ENGINES", "auto_chunk_frames"]

Engine = Literal["tiff", "zarr", "hdf5", "nwb", "npy"]
ENGINES: tuple[str, ...] = ("tiff", "zarr", "hdf5", "nwb", "npy")
ENGINE_SUFFIXES = {".tif": "tiff", ".tiff": "tiff", ".btf": "tiff", ".tf8": "tiff", ".zarr": "zarr",
                   ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".nwb": "nwb", ".npy": "npy"}
_MAGIC = ((b"II*\x00", "tiff"), (b"MM\x00*", "tiff"), (b"II+\x00", "tiff"), (b"MM\x00+", "tiff"),
          (b"\x89HDF\r\n\x1a\n", "hdf5"), (b"\x93NUMPY", "npy"))
CHUNK_BYTES = 64 * 2**20  # a frame block of ~64 MB: big enough to amortise I/O, small per worker


def guess_engine(url: str, storage_options: dict | None = None) -> str:
    """The engine for ``url``: from its suffix, a zarr directory's metadata, or magic bytes."""
    fs, path = filesystem(url, storage_options)
    if not fs.exists(path):
        raise MovieError(url, "no such file or directory")
    if fs.isdir(path):
        if any(fs.exists(f"{path}/{m}") for m in ("zarr.json", ".zarray", ".zgroup")):
            return "zarr"
        raise MovieError(url, "is a directory without zarr metadata; give a movie file, a zarr "
                              "store, or a glob such as 'dir/*.tif'")
    if fs.size(path) == 0:
        raise MovieError(url, "is an empty file")
    suffix = os.path.splitext(path.rstrip("/"))[1].lower()
    head = read_head(url, 16, storage_options)
    sniffed = next((e for magic, e in _MAGIC if head.startswith(magic)), None)
    by_suffix = ENGINE_SUFFIXES.get(suffix)
    if by_suffix == "nwb" and sniffed == "hdf5":
        return "nwb"
    if by_suffix and sniffed and by_suffix != sniffed:
        raise MovieError(url, f"named like a {by_suffix} file but its content is {sniffed}")
    if by_suffix and by_suffix != "zarr" and sniffed is None:
        raise MovieError(url, f"not a {by_suffix.upper()} file (its first bytes are {head[:8]!r})")
    if sniffed or by_suffix:
        return sniffed or by_suffix  # type: ignore[return-value]
    raise MovieError(url, "unrecognised file type; pass engine= one of " + ", ".join(ENGINES))


def auto_chunk_frames(shape: tuple[int, ...], itemsize: int, target: int = CHUNK_BYTES) -> int:
    """Frames per chunk so that one chunk of whole frames holds about ``target`` bytes."""
    frame_bytes = max(1, int(np.prod(shape[1:])) * itemsize)
    return int(max(1, min(shape[0], target // frame_bytes)))


def _to_dask(src: Any, chunk_frames: int | None, name: str) -> da.Array:
    n = chunk_frames or auto_chunk_frames(src.shape, np.dtype(src.dtype).itemsize)
    meta = np.empty((0, 0, 0), dtype=np.dtype(src.dtype).newbyteorder("="))
    return da.from_array(LazyFrames(src), chunks=(n, -1, -1), meta=meta, name=name, lock=False,
                         asarray=False, fancy=False, inline_array=True)


def _zarr_chunks(arr: Any) -> tuple[int, ...]:
    """Whole frames per dask chunk, a whole number of the array's time chunks (about
    CHUNK_BYTES): one task reads all the tiles of its frames, none is read twice."""
    tc = int(arr.chunks[0])
    frame = arr.shape[:1] + arr.shape[-2:]
    n = max(tc, auto_chunk_frames(frame, np.dtype(arr.dtype).itemsize) // tc * tc)
    return (n, *arr.chunks[1:-2], *arr.shape[-2:])


def _source(engine: str, url: Any, files: list[str], dataset: str | None, plane: int | None,
            so: dict, chunk_frames: int | None) -> tuple[da.Array, dict]:
    token = f"movie-{engine}-{tokenize(files, dataset, plane, chunk_frames)}"
    if engine == "tiff":
        src, meta = tiff_source(files, plane=plane, storage_options=so)
    elif len(files) != 1:
        raise MovieError(str(url), f"several files are supported for TIFF only, not {engine}")
    elif engine == "zarr":
        arr, meta = zarr_array(files[0], dataset=dataset, storage_options=so)
        data = da.from_zarr(arr, chunks=_zarr_chunks(arr))
        if arr.ndim == 4:
            if plane is None or not 0 <= plane < arr.shape[1]:
                raise MovieError(files[0], f"4-D array {arr.shape}: choose a plane (axis 1) with plane=")
            data = data[:, plane]
        if chunk_frames:
            data = data.rechunk({0: chunk_frames})
        return data, meta
    elif engine == "hdf5":
        src, meta = hdf5_source(files[0], dataset=dataset, plane=plane, storage_options=so)
    elif engine == "nwb":
        src, meta = nwb_source(files[0], dataset=dataset, plane=plane, storage_options=so)
    elif engine == "npy":
        src, meta = npy_source(files[0], plane=plane, storage_options=so)
    else:
        raise MovieError(str(url), f"unknown engine '{engine}'; choose one of " + ", ".join(ENGINES))
    return _to_dask(src, chunk_frames, token), meta


def _pair(d: Any) -> list[float]:
    """A pixel size as [dy, dx]; a single number means square pixels."""
    return [float(d), float(d)] if np.isscalar(d) else [float(v) for v in d]


def open_movie(url_or_path: str | os.PathLike | list, *, fr: float | None = None,
               dxy: tuple[float, float] | None = None, storage_options: dict | None = None,
               engine: Engine | None = None, dataset: str | None = None, plane: int | None = None,
               chunk_frames: int | None = None) -> xr.DataArray:
    """Open a movie lazily: only headers are read, pixels when the graph is computed.

    Parameters
    ----------
    url_or_path : str, path or list
        A file or fsspec URL (``s3://``, ``gs://``, ``memory://``...), a glob, or a list of
        TIFF files that together form one movie (as ScanImage writes them).
    fr, dxy : float, (float, float), optional
        Frame rate (Hz) and pixel size (um); override what the file says.
    storage_options : dict, optional
        Passed to fsspec (credentials, endpoint...).
    engine : {"tiff", "zarr", "hdf5", "nwb", "npy"}, optional
        Guessed from the name and the first bytes when omitted.
    dataset : str, optional
        HDF5 dataset, zarr array inside a group, or NWB ``TwoPhotonSeries`` name.
    plane : int, optional
        For 4-D data (frames, planes or channels, y, x): the plane to read.
    chunk_frames : int, optional
        Frames per dask chunk (default: about 64 MB of whole frames).

    Returns
    -------
    xarray.DataArray
        Dims ``("frame", "y", "x")``, dask-backed; attributes ``fr``, ``dxy``, ``source``.
    """
    so = dict(storage_options or {})
    label = url_or_path if isinstance(url_or_path, (str, os.PathLike)) else str(list(url_or_path))
    files = expand_files(url_or_path, so)
    if engine is None:
        engine = guess_engine(files[0], so)  # type: ignore[assignment]
    else:
        fs, path = filesystem(files[0], so)
        if not fs.exists(path):
            raise MovieError(files[0], "no such file or directory")
    if len(files) > 1 and engine == "tiff":
        for f in files[1:]:
            guess_engine(f, so)  # each file must exist and be a TIFF
    data, meta = _source(engine, label, files, dataset, plane, so, chunk_frames)
    if data.shape[0] == 0:
        raise MovieError(str(label), "holds no frames")
    attrs = {
        "fr": float(fr if fr is not None else meta.get("fr") or 30.0),
        "fr_from": "argument" if fr is not None else ("file" if meta.get("fr") else "default"),
        "dxy": _pair(dxy if dxy is not None else meta.get("dxy") or (1.0, 1.0)),
        "source": normalize(files[0]) if len(files) == 1 else [normalize(f) for f in files],
        "engine": engine,
    }
    if dataset is not None:
        attrs["dataset"] = dataset
    if plane is not None:
        attrs["plane"] = plane
    return xr.DataArray(data, dims=("frame", "y", "x"), name="movie", attrs=attrs)
