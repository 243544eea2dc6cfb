"""Missing pixels (NaN, +-inf) in frames: filled before registration and extraction.

Microscopes and converters leave NaN where a pixel was not sampled (dropped lines, masked
regions, ``border_nan=True`` after motion correction). One NaN turns an FFT correlation or
a least-squares fit into NaN, so every task fills them in the frames it reads, from the same
frame (nearest finite pixel), which needs no other chunk and so keeps tasks independent.
CaImAn's ``check_nan`` does the same job by interpolating each pixel over time.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ...errors import MovieError

__all__ = ["fill_missing"]


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
