"""Missing pixels (NaN, +-inf) in frames: filled before registration and extraction.

Microscopes and converters leave NaN where a pixel was not sampled (dropped lines, masked
regions, ``border_nan=True`` after motion correction). One NaN turns an FFT correlation or
a least-squares fit into NaN, so every task fills them in the frames it reads, from the same
frame (nearest finite pixel), which needs no other chunk and so keeps tasks independent.
CaImAn's ``check_nan`` does the same job by interpolating each pixel over time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .errors import MovieError

__all__ = ["fill_missing", "fill_missing_lazy"]


def fill_missing(frames: np.ndarray, *, fill: bool = True, t0: int = 0, source: str = "movie") -> np.ndarray:
    """Frames ``(T, H, W)`` with every non-finite pixel replaced by the nearest finite one.

    Parameters
    ----------
    frames : ndarray (T, H, W)
        Returned unchanged (not copied) when every pixel is finite.
    fill : bool
        ``params.preprocess.check_nan``; when false, a non-finite pixel is an error.
    t0 : int
        Index of the first frame in the movie (named in the error).
    source : str
        The movie's file or URL (named in the error).

    Returns
    -------
    ndarray (T, H, W) float32
        Frames that were entirely missing take the mean of the block's filled frames
        (0 when the whole block is missing).

    Raises
    ------
    MovieError
        When ``fill`` is false and a pixel is NaN or infinite.
    """
    frames = np.asarray(frames)
    if frames.dtype.kind != "f":
        return frames
    bad = ~np.isfinite(frames)
    if not bad.any():
        return frames
    frames_bad = np.flatnonzero(bad.any(axis=(1, 2)))
    if not fill:
        raise MovieError(source, f"NaN or infinite pixels in {len(frames_bad)} frames (first: frame "
                                 f"{t0 + int(frames_bad[0])}); set preprocess.check_nan=true to fill them")
    out = np.array(frames, dtype=np.float32)
    empty = []
    for i in frames_bad:
        if bad[i].all():
            empty.append(i)
            continue
        _, (iy, ix) = ndimage.distance_transform_edt(bad[i], return_indices=True)
        out[i] = out[i][iy, ix]
    if empty:
        full = np.setdiff1d(np.arange(len(out)), empty)
        out[empty] = out[full].mean(axis=0) if len(full) else 0.0
    return out


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
