"""Summary images (mean, max, std, local correlation) of any movie in one streaming pass."""

from __future__ import annotations


import dask
import numpy as np
import xarray as xr

from ..compute import compute
from .kernels import combine, finalize, partial_sums

__all__ = ["summary_images", "summary_dataset"]


def summary_dataset(total: dict[str, np.ndarray], *, offset: np.ndarray | None = None) -> xr.Dataset:
    """The ``/summary`` group: mean, max, std and correlation images."""
    images = finalize(total, offset=offset)
    return xr.Dataset({k: (("y", "x"), v) for k, v in images.items()})


def summary_images(movie: xr.DataArray) -> xr.Dataset:
    """Summary images of ``movie`` (frame, y, x), reading each chunk once.

    The per-chunk sums are taken around the first frame (a fixed offset per pixel), which
    keeps the float64 variance accurate for bright, low-contrast movies.
    """
    data = movie.data
    if data.chunks[1:] != ((data.shape[1],), (data.shape[2],)):
        data = data.rechunk({1: -1, 2: -1})
    offset = dask.delayed(lambda b: np.asarray(b[0], np.float64), pure=True)(data[:1])
    parts = [dask.delayed(partial_sums, pure=True)(b, offset=offset) for b in data.to_delayed().ravel()]
    off, total = compute([offset], label="summary images", sums=[(parts, combine)])
    return summary_dataset(total, offset=off)
