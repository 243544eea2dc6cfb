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
from .layout import RecordingLayout, select_field
from .npy import npy_source
from .rigs import rig_layout
from .sources import LazyFrames
from .tiff import tiff_source
from .urls import expand_files, filesystem, normalize, read_head
from .zarrstore import zarr_array

__all__ = ["open_movie", "guess_engine", "ENGINES", "auto_chunk_frames", "recording_layout", "field_movie"]

Engine = Literal["tiff", "zarr", "hdf5", "nwb", "npy", "sbx", "bruker", "nd2"]
ENGINES: tuple[str, ...] = ("tiff", "zarr", "hdf5", "nwb", "npy", "sbx", "bruker", "nd2")
ENGINE_SUFFIXES = {".tif": "tiff", ".tiff": "tiff", ".btf": "tiff", ".tf8": "tiff", ".zarr": "zarr",
                   ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".nwb": "nwb", ".npy": "npy",
                   ".sbx": "sbx", ".xml": "bruker", ".nd2": "nd2"}
_MAGIC = ((b"II*\x00", "tiff"), (b"MM\x00*", "tiff"), (b"II+\x00", "tiff"), (b"MM\x00+", "tiff"),
          (b"\x89HDF\r\n\x1a\n", "hdf5"), (b"\x93NUMPY", "npy"), (b"\xda\xce\xbe\x0a", "nd2"))
_NO_MAGIC = ("sbx", "bruker")  # raw frames, or an XML document: told apart by name and content
CHUNK_BYTES = 64 * 2**20  # a frame block of ~64 MB: big enough to amortise I/O, small per worker


def guess_engine(url: str, storage_options: dict | None = None) -> str:
    """The engine for ``url``: from its suffix, a zarr directory's metadata, or magic bytes."""
    fs, path = filesystem(url, storage_options)
    if not fs.exists(path):
        raise MovieError(url, "no such file or directory")
    if fs.isdir(path):
        if any(fs.exists(f"{path}/{m}") for m in ("zarr.json", ".zarray", ".zgroup")):
            return "zarr"
        from .bruker import find_bruker_xml

        if find_bruker_xml(url, storage_options) is not None:
            return "bruker"
        raise MovieError(url, "is a directory without zarr metadata or a PrairieView XML; give a movie "
                              "file, a zarr store, a Bruker T-series folder, or a glob such as 'dir/*.tif'")
    if fs.size(path) == 0:
        raise MovieError(url, "is an empty file")
    suffix = os.path.splitext(path.rstrip("/"))[1].lower()
    if suffix == ".mat" and fs.exists(os.path.splitext(path)[0] + ".sbx"):
        return "sbx"  # a Scanbox header named instead of its frames
    head = read_head(url, 16, storage_options)
    sniffed = next((e for magic, e in _MAGIC if head.startswith(magic)), None)
    by_suffix = ENGINE_SUFFIXES.get(suffix)
    if by_suffix == "nwb" and sniffed == "hdf5":
        return "nwb"
    if by_suffix and sniffed and by_suffix != sniffed:
        raise MovieError(url, f"named like a {by_suffix} file but its content is {sniffed}")
    if by_suffix == "bruker" and sniffed is None:
        if b"<PVScan" not in read_head(url, 1024, storage_options):
            raise MovieError(url, "an XML file that is not a PrairieView (Bruker) T-series document")
        return "bruker"
    if by_suffix in _NO_MAGIC:
        return by_suffix  # type: ignore[return-value]
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


def _frame_source(engine: str, url: Any, files: list[str], dataset: str | None, plane: int | None,
                  so: dict) -> tuple[Any, dict]:
    """The movie's frame source (a zarr array for zarr) and the metadata found with it."""
    if engine == "tiff":
        return tiff_source(files, plane=plane, storage_options=so)
    if len(files) != 1:
        raise MovieError(str(url), f"several files are supported for TIFF only, not {engine}")
    if engine == "zarr":
        return zarr_array(files[0], dataset=dataset, storage_options=so)
    if engine == "hdf5":
        return hdf5_source(files[0], dataset=dataset, plane=plane, storage_options=so)
    if engine == "nwb":
        return nwb_source(files[0], dataset=dataset, plane=plane, storage_options=so)
    if engine == "npy":
        return npy_source(files[0], plane=plane, storage_options=so)
    raise MovieError(str(url), f"unknown engine '{engine}'; choose one of " + ", ".join(ENGINES))


def _source(engine: str, url: Any, files: list[str], dataset: str | None, plane: int | None,
            so: dict, chunk_frames: int | None) -> tuple[da.Array, dict]:
    token = f"movie-{engine}-{tokenize(files, dataset, plane, chunk_frames)}"
    src, meta = _frame_source(engine, url, files, dataset, plane, so)
    if engine != "zarr":
        return _to_dask(src, chunk_frames, token), meta
    arr = src
    data = da.from_zarr(arr, chunks=_zarr_chunks(arr))
    if arr.ndim == 4:
        if plane is None or not 0 <= plane < arr.shape[1]:
            raise MovieError(files[0], f"4-D array {arr.shape}: choose a plane (axis 1) with plane=")
        data = data[:, plane]
    if chunk_frames:
        data = data.rechunk({0: chunk_frames})
    return data, meta


def _pair(d: Any) -> list[float]:
    """A pixel size as [dy, dx]; a single number means square pixels."""
    return [float(d), float(d)] if np.isscalar(d) else [float(v) for v in d]


def _sources(files: list[str]) -> str | list[str]:
    return normalize(files[0]) if len(files) == 1 else [normalize(f) for f in files]


def field_movie(layout: RecordingLayout, *, plane: int | None = None, channel: int | None = None,
                roi: int | None = None, fr: float | None = None, dxy: Any = None,
                chunk_frames: int | None = None) -> xr.DataArray:
    """One field of view (plane, channel, ROI) of a recording as a lazy (frame, y, x) movie.

    Its frames are every ``nplanes``-th frame slot of the recording (flyback planes and a
    last partial volume left out); its frame rate is the recording's volume rate.
    """
    src = select_field(layout, plane=plane, channel=channel, roi=roi)
    token = f"movie-{layout.format}-{tokenize(layout.files, layout.nplanes, src.plane, src.channel, src.rows, chunk_frames)}"
    data = _to_dask(src, chunk_frames, token)
    attrs: dict[str, Any] = {
        "fr": float(fr if fr is not None else layout.fr or 30.0),
        "fr_from": "argument" if fr is not None else ("file" if layout.fr else "default"),
        "dxy": _pair(dxy if dxy is not None else layout.dxy or (1.0, 1.0)),
        "source": _sources(list(layout.files)), "engine": layout.format,
        "plane": src.plane, "channel": src.channel, "nplanes": layout.planes, "nflyback": layout.nflyback,
        "nchannels": layout.nchannels,
    }
    if roi is not None or layout.rois:
        r = layout.rois[int(roi or 0)]
        attrs.update(roi=int(roi or 0), nrois=len(layout.rois), position=[float(v) for v in r.position])
    return xr.DataArray(data, dims=("frame", "y", "x"), name="movie", attrs=attrs)


def recording_layout(url_or_path: Any, *, engine: str | None = None, nplanes: int | None = None,
                     nchannels: int | None = None, force: bool = False, dataset: str | None = None,
                     storage_options: dict | None = None) -> RecordingLayout | None:
    """The layout of a rig's recording (ScanImage, Scanbox, Bruker, Nikon), or of any movie
    whose frames interleave ``nplanes`` planes and ``nchannels`` channels; None for a
    plain one-plane movie (unless ``force``). Reads metadata only."""
    so = dict(storage_options or {})
    files = expand_files(url_or_path, so)
    if engine is None:
        engine = guess_engine(files[0], so)
    else:
        fs, path = filesystem(files[0], so)
        if not fs.exists(path):
            raise MovieError(files[0], "no such file or directory")
    if len(files) > 1 and engine == "tiff":
        for f in files[1:]:
            guess_engine(f, so)  # each file must exist and be a TIFF
    return rig_layout(engine, files, so, nplanes=nplanes, nchannels=nchannels, force=force,
                      classic=lambda: _frame_source(engine, url_or_path, files, dataset, None, so))


def open_movie(url_or_path: str | os.PathLike | list, *, fr: float | None = None,
               dxy: tuple[float, float] | None = None, storage_options: dict | None = None,
               engine: Engine | None = None, dataset: str | None = None, plane: int | None = None,
               chunk_frames: int | None = None, nplanes: int | None = None, nchannels: int | None = None,
               channel: int | None = None, roi: int | None = None) -> xr.DataArray:
    """Open a movie lazily: only headers are read, pixels when the graph is computed.

    Parameters
    ----------
    url_or_path : str, path or list
        A file or fsspec URL (``s3://``, ``gs://``, ``memory://``...), a glob, or a list of
        TIFF files that together form one movie (as ScanImage writes them); a Scanbox
        ``.sbx`` (its ``.mat`` beside it), a Bruker T-series folder or its XML, a Nikon ``.nd2``.
    fr, dxy : float, (float, float), optional
        Frame rate (Hz) and pixel size (um); override what the file says.
    storage_options : dict, optional
        Passed to fsspec (credentials, endpoint...).
    engine : {"tiff", "zarr", "hdf5", "nwb", "npy", "sbx", "bruker", "nd2"}, optional
        Guessed from the name and the first bytes when omitted.
    dataset : str, optional
        HDF5 dataset, zarr array inside a group, or NWB ``TwoPhotonSeries`` name.
    plane : int, optional
        The plane to read (0-based): of a volumetric recording (ScanImage fast z, Scanbox,
        Bruker, Nikon z-stack loop, or ``nplanes`` given), else of 4-D data (frames,
        planes or channels, y, x).
    chunk_frames : int, optional
        Frames per dask chunk (default: about 64 MB of whole frames).
    nplanes, nchannels : int, optional
        Planes per volume (flyback frames included) and channels per frame slot, for
        movies whose frames interleave them (suite2p's names); checked against a rig's
        metadata when it has them.
    channel, roi : int, optional
        The channel and the mesoscope ROI to read (0-based).

    Returns
    -------
    xarray.DataArray
        Dims ``("frame", "y", "x")``, dask-backed; attributes ``fr``, ``dxy``, ``source``
        (and ``plane``, ``channel``, ``roi``, ``position`` for a field of view of a rig's
        recording, whose ``fr`` is the volume rate). A last partial volume is dropped
        with a :class:`~calcium_dask.io.layout.PartialVolumeWarning`.
    """
    so = dict(storage_options or {})
    label = url_or_path if isinstance(url_or_path, (str, os.PathLike)) else str(list(url_or_path))
    layout = recording_layout(url_or_path, engine=engine, nplanes=nplanes, nchannels=nchannels,
                              force=roi is not None, dataset=dataset, storage_options=so)
    if layout is not None:
        movie = field_movie(layout, plane=plane, channel=channel, roi=roi, fr=fr, dxy=dxy, chunk_frames=chunk_frames)
        layout.warn_partial()
        return movie
    if channel not in (None, 0):
        raise MovieError(str(label), f"channel={channel} out of range: the movie has one channel")
    files = expand_files(url_or_path, so)
    engine = engine or guess_engine(files[0], so)  # type: ignore[assignment]
    data, meta = _source(engine, label, files, dataset, plane, so, chunk_frames)
    if data.shape[0] == 0:
        raise MovieError(str(label), "holds no frames")
    attrs = {
        "fr": float(fr if fr is not None else meta.get("fr") or 30.0),
        "fr_from": "argument" if fr is not None else ("file" if meta.get("fr") else "default"),
        "dxy": _pair(dxy if dxy is not None else meta.get("dxy") or (1.0, 1.0)),
        "source": _sources(files),
        "engine": engine,
    }
    if dataset is not None:
        attrs["dataset"] = dataset
    if plane is not None:
        attrs["plane"] = plane
    return xr.DataArray(data, dims=("frame", "y", "x"), name="movie", attrs=attrs)
