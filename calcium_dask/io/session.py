"""A session's fields of view: every plane (and mesoscope ROI) of a recording, each a lazy movie.

``open_session`` reads a recording's metadata once and lists its fields of view; each
holds its functional channel's movie (frame, y, x), the movie of the channel its motion
is computed on (``align_by_chan``, suite2p's name) when that is another one, its frame
rate (the volume rate) and, for mesoscope ROIs, its position on the session's canvas.
Channels are numbered from 1 here, as in suite2p's ``functional_chan``/``align_by_chan``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import xarray as xr

from ..errors import MovieError
from .layout import RecordingLayout
from .movie import field_movie, open_movie, recording_layout

__all__ = ["FieldOfView", "Recording", "open_session", "open_field", "fov_name"]


@dataclass(frozen=True)
class FieldOfView:
    """One plane (and ROI) of a session: what one pipeline run processes.

    Attributes
    ----------
    name : str
        Its results group: ``plane0``, ``roi1``, ``plane2_roi1``...
    plane, roi : int or None
        0-based plane and mesoscope ROI (None: the recording has none).
    channel : int
        1-based functional channel of ``movie``.
    movie : xarray.DataArray
        The functional channel, lazy (frame, y, x); ``attrs["fr"]`` is the volume rate.
    align : xarray.DataArray or None
        The channel whose motion is applied to ``movie`` (None: ``movie`` itself).
    position : (float, float) or None
        (y, x) of the top-left corner on the session's canvas, pixels (mesoscope ROIs).
    """

    name: str
    plane: int | None
    roi: int | None
    channel: int
    movie: xr.DataArray
    align: xr.DataArray | None = None
    position: tuple[float, float] | None = None

    @property
    def fr(self) -> float:
        """Frames per second of this field of view (the volume rate)."""
        return float(self.movie.attrs["fr"])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(frames, height, width) of ``movie``."""
        return tuple(int(s) for s in self.movie.shape)  # type: ignore[return-value]

    def record(self) -> dict[str, Any]:
        """What a results store lists about this field of view (JSON-ready)."""
        return {"name": self.name, "plane": self.plane, "roi": self.roi, "channel": self.channel,
                "align_channel": None if self.align is None else int(self.align.attrs.get("channel", 0)) + 1,
                "fr": self.fr, "shape": list(self.shape),
                "position": None if self.position is None else list(self.position)}


@dataclass(frozen=True)
class Recording:
    """The fields of view of one session, and how its frames were laid out."""

    source: str
    format: str
    nplanes: int
    nflyback: int
    nchannels: int
    nrois: int
    frame_rate: float | None
    fields: tuple[FieldOfView, ...]
    channel_names: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[FieldOfView]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __getitem__(self, key: int | str) -> FieldOfView:
        if isinstance(key, str):
            for f in self.fields:
                if f.name == key:
                    return f
            raise KeyError(f"no field of view '{key}' (fields: {', '.join(f.name for f in self.fields)})")
        return self.fields[key]

    @property
    def fr(self) -> float:
        """Frames per second of each field of view (the volume rate)."""
        return self.fields[0].fr

    @property
    def canvas_shape(self) -> tuple[int, int] | None:
        """(height, width) holding every ROI at its position, pixels (None without ROIs)."""
        placed = [(f.position, f.shape[1:]) for f in self.fields if f.position is not None]
        if not placed:
            return None
        return (int(max(p[0] + s[0] for p, s in placed)), int(max(p[1] + s[1] for p, s in placed)))


def fov_name(plane: int | None, roi: int | None, nplanes: int, nrois: int) -> str:
    """The results group of a field of view (``plane0`` when the recording has one plane)."""
    if nrois and nplanes > 1:
        return f"plane{plane}_roi{roi}"
    if nrois:
        return f"roi{roi}"
    return f"plane{plane or 0}"


def _channels(source: str, nchannels: int, functional_chan: int, align_by_chan: int | None) -> tuple[int, int]:
    """0-based functional and alignment channels, checked against the recording."""
    for name, value in (("functional_chan", functional_chan), ("align_by_chan", align_by_chan)):
        if value is not None and not 1 <= int(value) <= nchannels:
            raise MovieError(source, f"{name}={value} out of range: the recording has {nchannels} channel(s) "
                                     "(numbered from 1)")
    align = functional_chan if align_by_chan is None or nchannels == 1 else align_by_chan
    return int(functional_chan) - 1, int(align) - 1


def _field(layout: RecordingLayout, plane: int, roi: int | None, functional: int, align: int,
           fr: float | None, dxy: Any, chunk_frames: int | None) -> FieldOfView:
    kw = dict(plane=plane, roi=roi, fr=fr, dxy=dxy, chunk_frames=chunk_frames)
    movie = field_movie(layout, channel=functional, **kw)
    other = field_movie(layout, channel=align, **kw) if align != functional else None
    position = tuple(layout.rois[roi].position) if roi is not None else None
    return FieldOfView(fov_name(plane, roi, layout.planes, len(layout.rois)), plane, roi, functional + 1, movie,
                       other, position)  # type: ignore[arg-type]


def open_field(url_or_path: str | os.PathLike | list, *, plane: int | None = None, roi: int | None = None,
               nplanes: int | None = None, nchannels: int | None = None, functional_chan: int = 1,
               align_by_chan: int | None = None, fr: float | None = None, dxy: Any = None,
               storage_options: dict | None = None, engine: str | None = None, dataset: str | None = None,
               chunk_frames: int | None = None) -> FieldOfView:
    """One field of view of a session (a plain movie is its only one); see :func:`open_session`."""
    layout = recording_layout(url_or_path, engine=engine, nplanes=nplanes, nchannels=nchannels,
                              force=roi is not None, dataset=dataset, storage_options=storage_options)
    if layout is None:
        movie = open_movie(url_or_path, fr=fr, dxy=dxy, storage_options=storage_options, engine=engine,  # type: ignore[arg-type]
                           dataset=dataset, plane=plane, chunk_frames=chunk_frames)
        src = str(movie.attrs["source"] if isinstance(movie.attrs["source"], str) else movie.attrs["source"][0])
        _channels(src, 1, functional_chan, align_by_chan)
        return FieldOfView("plane0", plane, None, 1, movie)
    functional, align = _channels(layout.source, layout.nchannels, functional_chan, align_by_chan)
    fov = _field(layout, plane if plane is not None else _only(layout, "plane"), roi if roi is not None or
                 not layout.rois else _only(layout, "roi"), functional, align, fr, dxy, chunk_frames)
    layout.warn_partial()
    return fov


def _only(layout: RecordingLayout, what: str) -> int:
    n = layout.planes if what == "plane" else len(layout.rois)
    if n > 1:
        raise MovieError(layout.source, f"{n} {what}s: choose one with {what}= (0-{n - 1}) or open them all "
                                        "with open_session()")
    return 0


def open_session(url_or_path: str | os.PathLike | list, *, nplanes: int | None = None,
                 nchannels: int | None = None, functional_chan: int = 1, align_by_chan: int | None = None,
                 fr: float | None = None, dxy: Any = None, storage_options: dict | None = None,
                 engine: str | None = None, dataset: str | None = None,
                 chunk_frames: int | None = None) -> Recording:
    """Every field of view of a session (each plane, and each mesoscope ROI), lazily.

    Parameters
    ----------
    url_or_path : str, path or list
        Any movie :func:`~calcium_dask.open_movie` reads: ScanImage TIFFs (planes, channels
        and ROIs from its metadata), Scanbox ``.sbx``, a Bruker T-series, a Nikon ``.nd2``,
        or a plain movie whose frames interleave ``nplanes`` and ``nchannels``.
    nplanes, nchannels : int, optional
        suite2p's names: planes per volume (flyback frames included) and channels; checked
        against the metadata when the file has them.
    functional_chan, align_by_chan : int
        1-based: the channel whose activity is extracted, and the one motion is computed on
        (default: the functional one).
    fr, dxy : optional
        Override the volume rate and pixel size the file gives.

    Returns
    -------
    Recording
        Its ``fields`` in plane-major order; a last partial volume is dropped with one
        :class:`~calcium_dask.io.layout.PartialVolumeWarning`.
    """
    layout = recording_layout(url_or_path, engine=engine, nplanes=nplanes, nchannels=nchannels,
                              dataset=dataset, storage_options=storage_options)
    if layout is None:
        fov = open_field(url_or_path, functional_chan=functional_chan, align_by_chan=align_by_chan, fr=fr, dxy=dxy,
                         storage_options=storage_options, engine=engine, dataset=dataset, chunk_frames=chunk_frames)
        m = fov.movie
        return Recording(str(m.attrs["source"] if isinstance(m.attrs["source"], str) else m.attrs["source"][0]),
                         str(m.attrs["engine"]), 1, 0, 1, 0, fov.fr, (fov,))
    functional, align = _channels(layout.source, layout.nchannels, functional_chan, align_by_chan)
    rois: list[int | None] = list(range(len(layout.rois))) or [None]
    fields = tuple(_field(layout, p, r, functional, align, fr, dxy, chunk_frames)
                   for p in range(layout.planes) for r in rois)
    layout.warn_partial()
    return Recording(layout.source, layout.format, layout.planes, layout.nflyback, layout.nchannels,
                     len(layout.rois), layout.frame_rate, fields, layout.channel_names)
