"""``.npy`` files: the header is parsed and frames read by byte offset (no pickle)."""

from __future__ import annotations

import fsspec
import numpy as np
from numpy.lib import format as npformat

from ..errors import MovieError
from .sources import RawSource

__all__ = ["npy_source"]


def npy_source(url: str, *, plane: int | None = None,
               storage_options: dict | None = None) -> tuple[RawSource, dict]:
    so = dict(storage_options or {})
    with fsspec.open(url, "rb", **so) as f:
        try:
            version = npformat.read_magic(f)
            reader = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            shape, fortran, dtype = reader(f)
        except ValueError as e:
            raise MovieError(url, f"not a valid .npy file ({e})") from None
        offset = f.tell()
        size = f.size
    if dtype.hasobject:
        raise MovieError(url, "holds Python objects; only numeric arrays are read (no pickle)")
    if fortran and len(shape) > 1:
        raise MovieError(url, "is stored in Fortran order; save it C-ordered (np.ascontiguousarray)")
    if len(shape) == 4:
        if plane is None:
            raise MovieError(url, f"4-D array {shape}: choose a plane (axis 1) with plane=")
        if not 0 <= plane < shape[1]:
            raise MovieError(url, f"plane={plane} out of range for shape {shape}")
        frame_stride, shape = shape[1], (shape[0], shape[2], shape[3])
    elif len(shape) == 3:
        frame_stride, plane = 1, 0
    else:
        raise MovieError(url, f"array of shape {shape}: a movie needs 3 dimensions (frame, y, x)")
    need = offset + int(np.prod(shape)) * frame_stride * dtype.itemsize
    if size is not None and size < need:
        raise MovieError(url, f"file is truncated: {size} bytes, the header promises {need}")
    return RawSource(url, tuple(int(s) for s in shape), dtype, offset, so, frame_stride, plane), {}
