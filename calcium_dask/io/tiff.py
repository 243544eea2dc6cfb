"""TIFF and BigTIFF movies (one file, or several files as one movie), read lazily."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import struct
from typing import Any, Iterator

import fsspec
import numpy as np

from ..errors import MovieError
from .sources import RawSource, TiffPart, TiffSource
from .urls import filesystem

__all__ = ["tiff_source", "quiet_tifffile"]


def _describe(url: str, storage_options: dict) -> dict[str, Any]:
    """Read a TIFF header: series shape, dtype, contiguity and metadata; nothing more."""
    import tifffile

    try:
        with quiet_tifffile(), fsspec.open(url, "rb", **storage_options) as f:
            size = f.size if hasattr(f, "size") else None
            with tifffile.TiffFile(f) as tf:
                s = tf.series[0]
                page = s.keyframe
                info = dict(shape=tuple(s.shape), axes=s.axes, dtype=np.dtype(s.dtype),
                            dataoffset=s.dataoffset, nbytes=int(np.prod(s.shape)) * s.dtype.itemsize,
                            byteorder=tf.byteorder, page_shape=tuple(page.shape), size=size,
                            fr=_frame_rate(tf), dxy=_pixel_size(tf))
    except tifffile.TiffFileError as e:
        raise MovieError(url, f"not a readable TIFF file ({e})") from None
    except (IndexError, KeyError, ValueError, EOFError, OSError, struct.error) as e:
        raise MovieError(url, f"TIFF file is damaged or truncated ({type(e).__name__}: {e})") from None
    return info


def _frame_rate(tf: Any) -> float | None:
    ij = tf.imagej_metadata or {}
    if ij.get("finterval"):
        return 1.0 / float(ij["finterval"])
    si = getattr(tf, "scanimage_metadata", None) or {}
    rate = (si.get("FrameData") or {}).get("SI.hRoiManager.scanFrameRate")
    return float(rate) if rate else None


def _pixel_size(tf: Any) -> tuple[float, float] | None:
    """um per pixel, trusted only when ImageJ says the unit is microns (72 dpi is a default)."""
    unit = str((tf.imagej_metadata or {}).get("unit", "")).lower()
    if unit not in ("micron", "um", "\u00b5m", "microns"):
        return None
    try:
        xres, yres = tf.pages.first.tags["XResolution"].value, tf.pages.first.tags["YResolution"].value
    except KeyError:
        return None
    if not xres[0] or not yres[0]:
        return None
    return (yres[1] / yres[0], xres[1] / xres[0])


@contextlib.contextmanager
def quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's warnings about odd metadata (common in microscope files)."""
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _layout(url: str, info: dict, plane: int | None, allow_2d: bool) -> tuple[int, int, int]:
    """(frames, pages per frame, plane) of a file, or a MovieError saying what is wrong."""
    shape = info["shape"]
    if len(info["page_shape"]) != 2:
        raise MovieError(url, f"pages of shape {info['page_shape']} are not grayscale 2-D frames")
    if len(shape) == 2:
        if not allow_2d:
            raise MovieError(url, f"a single 2-D image {shape}, not a movie: give a 3-D stack or several files")
        return 1, 1, 0
    lead = shape[:-2]
    per_frame = int(np.prod(lead[1:])) if len(lead) > 1 else 1
    if per_frame > 1 and plane is None:
        raise MovieError(url, f"{len(shape)}-D data {shape} (axes {info['axes']}): choose one of the "
                              f"{per_frame} planes/channels per frame with plane=")
    if per_frame == 1 and plane not in (None, 0):
        raise MovieError(url, f"plane={plane} asked but the file has one plane per frame")
    plane = plane or 0
    if not 0 <= plane < per_frame:
        raise MovieError(url, f"plane={plane} out of range: the file has {per_frame} planes per frame")
    return int(lead[0]), per_frame, plane


def tiff_source(urls: list[str], *, plane: int | None = None,
                storage_options: dict | None = None) -> tuple[Any, dict[str, Any]]:
    """A frame source over ``urls`` (one movie) and the metadata found in the first file."""
    so = dict(storage_options or {})
    parts, dims, dtype, first = [], None, None, None
    for url in urls:
        info = _describe(url, so)
        n, per_frame, pl = _layout(url, info, plane, allow_2d=len(urls) > 1)
        if info["size"] is not None and info["dataoffset"] is not None \
                and info["dataoffset"] + info["nbytes"] > info["size"]:
            raise MovieError(url, f"TIFF file is truncated: {info['size']} bytes, image data needs "
                                  f"{info['dataoffset'] + info['nbytes']}")
        if dims is not None and (info["page_shape"] != dims or info["dtype"] != dtype):
            raise MovieError(url, f"frames {info['page_shape']} {info['dtype']} differ from the first "
                                  f"file's {dims} {dtype}")
        dims, dtype, first = info["page_shape"], info["dtype"], first or info
        parts.append((TiffPart(url, n, per_frame, pl), info))
    shape = (sum(p.n_frames for p, _ in parts), *dims)
    meta = {"fr": first["fr"], "dxy": first["dxy"]}
    if len(parts) == 1 and parts[0][1]["dataoffset"] is not None:
        part, info = parts[0]
        dt = info["dtype"].newbyteorder(info["byteorder"])
        return RawSource(urls[0], shape, dt, info["dataoffset"], so, part.pages_per_frame, part.plane), meta
    return TiffSource(tuple(p for p, _ in parts), shape, dtype, so), meta


def _page_source(url: str, storage_options: dict) -> Any:
    """The pages of one TIFF as a :class:`StridedPages` when they are uncompressed and evenly
    spaced (checked on the first, second, middle and last page), else :class:`TiffPages`."""
    import tifffile

    from .pages import StridedPages, TiffPages

    try:
        with quiet_tifffile(), fsspec.open(url, "rb", **storage_options) as f:
            size = f.size if hasattr(f, "size") else None
            with tifffile.TiffFile(f) as tf:
                tf.pages.useframes = True
                n = len(tf.pages)
                first = tf.pages.first
                shape, dtype = tuple(first.shape), np.dtype(first.dtype).newbyteorder(tf.byteorder)
                probe = sorted({0, min(1, n - 1), n // 2, n - 1})
                pages = [tf.pages[i] for i in probe]
    except tifffile.TiffFileError as e:
        raise MovieError(url, f"not a readable TIFF file ({e})") from None
    except (IndexError, KeyError, ValueError, EOFError, OSError, struct.error) as e:
        raise MovieError(url, f"TIFF file is damaged or truncated ({type(e).__name__}: {e})") from None
    if len(shape) != 2:
        raise MovieError(url, f"pages of shape {shape} are not grayscale 2-D frames")
    offsets = [p.dataoffsets[0] if p.is_contiguous and p.compression == 1 else None for p in pages]
    nbytes = int(np.prod(shape)) * dtype.itemsize
    stride = (offsets[1] - offsets[0]) if n > 1 and None not in offsets else nbytes
    even = None not in offsets and all(o == offsets[0] + i * stride for o, i in zip(offsets, probe)) \
        and stride >= nbytes
    if even and size is not None and offsets[0] + (n - 1) * stride + nbytes > size:
        raise MovieError(url, f"TIFF file is truncated: {size} bytes, its {n} pages need "
                              f"{offsets[0] + (n - 1) * stride + nbytes}")
    if even:
        return StridedPages(url, n, shape, dtype, int(offsets[0]), int(stride), dict(storage_options))
    return TiffPages(url, n, shape, dtype.newbyteorder("="), dict(storage_options))


@functools.lru_cache(maxsize=256)
def _cached_page_source(url: str, options: str, stamp: str) -> Any:
    return _page_source(url, json.loads(options))


def _pages_of(url: str, storage_options: dict) -> Any:
    """:func:`_page_source`, remembered per file version: each field of view of a session
    opens the same file (once per stage), and counting a long recording's pages walks
    all its IFDs."""
    fs, path = filesystem(url, storage_options)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise MovieError(url, "no such file or directory") from None
    stamp = json.dumps([info.get("size"), info.get("mtime"), info.get("LastModified"), info.get("ETag")], default=str)
    try:
        options = json.dumps(storage_options, sort_keys=True)
    except TypeError:  # options that are objects: not remembered
        return _page_source(url, storage_options)
    return _cached_page_source(url, options, stamp)


def tiff_pages(urls: list[str], storage_options: dict | None = None) -> Any:
    """Every page of ``urls`` (one session, in order) as one :class:`PageParts`."""
    from .pages import PageParts

    so = dict(storage_options or {})
    parts = tuple(_pages_of(u, so) for u in urls)
    for u, p in zip(urls[1:], parts[1:]):
        if p.shape != parts[0].shape or np.dtype(p.dtype).newbyteorder("=") != np.dtype(parts[0].dtype).newbyteorder("="):
            raise MovieError(u, f"pages {p.shape} {p.dtype} differ from the first file's {parts[0].shape} "
                                f"{parts[0].dtype}")
    return PageParts(parts)
