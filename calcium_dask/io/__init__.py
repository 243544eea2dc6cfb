"""Movie input and output: lazy readers for TIFF, zarr, HDF5, NWB and ``.npy`` on any fsspec URL."""

from __future__ import annotations

from .movie import ENGINES, auto_chunk_frames, guess_engine, open_movie
from .urls import expand_files, filesystem, normalize

__all__ = ["open_movie", "guess_engine", "ENGINES", "auto_chunk_frames", "expand_files",
           "filesystem", "normalize"]
