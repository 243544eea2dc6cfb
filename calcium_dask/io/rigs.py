"""Which reader describes a recording's layout: a rig's format, ScanImage's TIFF metadata,
or ``nplanes``/``nchannels`` given for a plain movie."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import MovieError
from .layout import RecordingLayout
from .pages import FramePages, PagedChannels

__all__ = ["rig_layout", "ZarrFrames"]


@dataclass(frozen=True)
class ZarrFrames:
    """Frames of a 3-D zarr array that tasks open themselves (URL and path only)."""

    url: str
    path: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    storage_options: dict = field(default_factory=dict)

    def read(self, start: int, stop: int) -> np.ndarray:
        import zarr

        kw = {"storage_options": self.storage_options} if "://" in self.url and self.storage_options else {}
        return np.asarray(zarr.open_array(self.url, path=self.path, mode="r", **kw)[start:stop])


def _interleaved(engine: str, files: list[str], so: dict, nplanes: int | None, nchannels: int | None,
                 classic: Callable[[], tuple[Any, dict]]) -> RecordingLayout:
    """A plain movie whose frames interleave ``nplanes`` planes and ``nchannels`` channels."""
    src, meta = classic()
    if engine == "zarr":
        if src.ndim != 3:
            raise MovieError(files[0], f"{src.ndim}-D array {src.shape}: nplanes/nchannels de-interleave "
                                       "the frames of 3-D data only")
        src = ZarrFrames(files[0], src.path, tuple(src.shape), np.dtype(src.dtype), so)
    slots = PagedChannels(FramePages(src), int(nchannels or 1))
    fr = meta.get("fr")
    return RecordingLayout(files[0], engine, slots, nplanes=int(nplanes or 1), frame_rate=fr,
                           dxy=meta.get("dxy"), files=tuple(files))


def rig_layout(engine: str, files: list[str], so: dict, *, nplanes: int | None, nchannels: int | None,
               force: bool, classic: Callable[[], tuple[Any, dict]]) -> RecordingLayout | None:
    """The layout of ``files`` read by ``engine`` (see :func:`calcium_dask.io.recording_layout`)."""
    interleaved = (nplanes or 1) > 1 or (nchannels or 1) > 1 or force
    if engine == "sbx":
        from .scanbox import scanbox_layout

        return scanbox_layout(files[0], nplanes=nplanes, nchannels=nchannels, storage_options=so)
    if engine == "bruker":
        from .bruker import bruker_layout

        return bruker_layout(files[0], nplanes=nplanes, nchannels=nchannels, storage_options=so)
    if engine == "nd2":
        from .nikon import nd2_layout

        return nd2_layout(files[0], nplanes=nplanes, nchannels=nchannels, storage_options=so)
    if engine == "tiff":
        from .scanimage import scanimage_metadata, tiff_layout

        if interleaved or scanimage_metadata(files[0], so) is not None:
            return tiff_layout(files, nplanes=nplanes, nchannels=nchannels, storage_options=so)
        return None
    return _interleaved(engine, files, so, nplanes, nchannels, classic) if interleaved else None
