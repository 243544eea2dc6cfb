"""How a recording lays out its planes, channels and mesoscope ROIs, and one field of view's
frames as a lazy frame source.

Every rig reader (ScanImage, Scanbox, Bruker, Nikon, or a plain file with ``nplanes`` and
``nchannels`` given) describes its recording as a :class:`RecordingLayout`: a source of
frame slots in acquisition order plus the numbers that say which slot is which plane,
and where each ROI lies in a frame. :func:`select_field` checks a choice of plane,
channel and ROI and returns the :class:`FieldSource` that reads just those frames.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import MovieError
from .kernels.interleave import plane_slots

__all__ = ["Roi", "RecordingLayout", "FieldSource", "select_field", "check_count", "PartialVolumeWarning"]


class PartialVolumeWarning(UserWarning):
    """The recording ends inside a volume; the frames of that last volume are dropped."""


@dataclass(frozen=True)
class Roi:
    """One mesoscope ROI: its lines in every frame and its place on the session's canvas.

    Attributes
    ----------
    rows : (int, int)
        First and end line of the ROI in a stored frame (fly-to lines excluded).
    position : (float, float)
        (y, x) of the ROI's top-left corner on the canvas, pixels.
    name : str
        The ROI's name in the rig's metadata.
    """

    rows: tuple[int, int]
    position: tuple[float, float] = (0.0, 0.0)
    name: str = ""


@dataclass(frozen=True)
class RecordingLayout:
    """A recording's frames and how they interleave (see :mod:`calcium_dask.io.kernels.interleave`).

    Attributes
    ----------
    source : str
        The file (the first one) that errors name.
    format : str
        ``"scanimage"``, ``"tiff"``, ``"scanbox"``, ``"bruker"``, ``"nd2"``, ``"hdf5"``...
    slots : SlotSource
        Frame slots in acquisition order (see ``calcium_dask.io.pages``).
    nplanes, nflyback : int
        Planes per volume, the last ``nflyback`` of them flyback frames (dropped).
    rois : tuple of Roi
        Mesoscope ROIs (empty: each frame is one field of view).
    frame_rate, volume_rate : float, optional
        Frame slots and volumes per second, as the metadata say.
    dxy : (float, float), optional
        Pixel size (y, x), um.
    channel_names : tuple of str
    from_metadata : tuple of str
        Which of ``nplanes``, ``nchannels``, ``rois`` the file's metadata gave.
    files : tuple of str
    """

    source: str
    format: str
    slots: Any
    nplanes: int = 1
    nflyback: int = 0
    rois: tuple[Roi, ...] = ()
    frame_rate: float | None = None
    volume_rate: float | None = None
    dxy: tuple[float, float] | None = None
    channel_names: tuple[str, ...] = ()
    from_metadata: tuple[str, ...] = ()
    files: tuple[str, ...] = field(default_factory=tuple)

    @property
    def nchannels(self) -> int:
        """Channels per frame slot."""
        return int(self.slots.nchannels)

    @property
    def n_volumes(self) -> int:
        """Whole volumes recorded (frame slots // ``nplanes``)."""
        return int(self.slots.n_slots) // self.nplanes

    @property
    def planes(self) -> int:
        """Planes that image the sample (flyback excluded)."""
        return self.nplanes - self.nflyback

    @property
    def fr(self) -> float | None:
        """Frames per second of one field of view: the volume rate."""
        if self.volume_rate:
            return float(self.volume_rate)
        return float(self.frame_rate) / self.nplanes if self.frame_rate else None

    def frame_shape(self, roi: int | None = None) -> tuple[int, int]:
        """(height, width) of a frame, or of mesoscope ROI ``roi``'s part of it."""
        h, w = self.slots.shape
        if roi is None:
            return int(h), int(w)
        y0, y1 = self.rois[roi].rows
        return y1 - y0, int(w)

    def warn_partial(self) -> None:
        """One line when the last volume is incomplete (its frames are dropped)."""
        per_slot = int(getattr(self.slots, "pages_per_slot", 1))
        pages = int(getattr(self.slots, "pages", self.slots).n_pages) if per_slot > 1 else int(self.slots.n_slots)
        extra = pages - self.n_volumes * self.nplanes * per_slot
        if extra:
            per = f"{self.nplanes} planes" + (f" x {per_slot} channels" if per_slot > 1 else "")
            warnings.warn(f"{self.source}: {pages} frames are not a whole number of volumes of {per}; "
                          f"the last partial volume ({extra} frames) is dropped", PartialVolumeWarning,
                          stacklevel=3)


@dataclass(frozen=True)
class FieldSource:
    """Frames of one plane, channel and ROI (a frame source for ``LazyFrames``)."""

    slots: Any
    nplanes: int
    plane: int
    channel: int
    rows: tuple[int, int] | None
    shape: tuple[int, int, int]
    dtype: np.dtype

    def read(self, start: int, stop: int) -> np.ndarray:
        idx = plane_slots(start, stop, nplanes=self.nplanes, plane=self.plane)
        return self.slots.read(idx, self.channel, self.rows)


def check_count(source: str, name: str, given: int | None, found: int, detail: str) -> int:
    """``found`` (from the metadata), or a MovieError when ``given`` disagrees with it."""
    if given is None or int(given) == int(found):
        return int(found)
    raise MovieError(source, f"{name}={given} does not match the file: {detail}")


def _index(source: str, name: str, value: int | None, n: int, what: str, hint: str) -> int:
    if value is None:
        if n > 1:
            raise MovieError(source, f"{n} {what}: choose one with {name}= (0-{n - 1}){hint}")
        return 0
    if isinstance(value, bool) or not 0 <= int(value) < n:
        raise MovieError(source, f"{name}={value} out of range: the recording has {n} {what} (0-based)")
    return int(value)


def select_field(layout: RecordingLayout, *, plane: int | None = None, channel: int | None = None,
                 roi: int | None = None) -> FieldSource:
    """The frames of one field of view, every ``nplanes``-th slot from ``plane`` on.

    ``plane``, ``channel`` and ``roi`` are 0-based; each may be omitted when the recording
    has only one. Flyback planes are not offered. Raises MovieError naming the file.
    """
    hint = " or open them all with open_session()"
    flyback = f", {layout.nflyback} flyback plane(s) excluded" if layout.nflyback else ""
    p = _index(layout.source, "plane", plane, layout.planes, f"planes{flyback}", hint)
    c = _index(layout.source, "channel", channel, layout.nchannels, "channels", "")
    if roi is not None and not layout.rois:
        raise MovieError(layout.source, f"roi={roi} asked but the recording has no mesoscope ROIs")
    r = _index(layout.source, "roi", roi, len(layout.rois), "mesoscope ROIs", hint) if layout.rois else None
    if layout.n_volumes == 0:
        raise MovieError(layout.source, f"holds {layout.slots.n_slots} frame(s), fewer than one volume of "
                                        f"{layout.nplanes} planes")
    h, w = layout.frame_shape(r)
    rows = layout.rois[r].rows if r is not None else None
    return FieldSource(layout.slots, layout.nplanes, p, c, rows, (layout.n_volumes, h, w),
                       np.dtype(layout.slots.dtype).newbyteorder("="))
