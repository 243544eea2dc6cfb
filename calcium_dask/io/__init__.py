"""Movie input and output: lazy readers for TIFF (ScanImage), zarr, HDF5, NWB, ``.npy``, Scanbox,
Bruker and Nikon ND2 on any fsspec URL, and a session's planes, channels and mesoscope ROIs."""

from __future__ import annotations

from .layout import PartialVolumeWarning
from .movie import ENGINES, auto_chunk_frames, guess_engine, open_movie, recording_layout
from .session import FieldOfView, Recording, open_field, open_session
from .urls import expand_files, filesystem, normalize

__all__ = ["open_movie", "open_session", "open_field", "Recording", "FieldOfView", "recording_layout",
           "PartialVolumeWarning", "guess_engine", "ENGINES", "auto_chunk_frames", "expand_files",
           "filesystem", "normalize"]
