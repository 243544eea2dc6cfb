"""Nikon NIS-Elements ``.nd2`` time series, read with the ``nd2`` package (BSD).

An ND2 names its acquisition loops (``experiment``: time, z-stack, XY positions...) from
outermost to innermost; every frame (a "sequence index") holds all channels, pixel by
pixel. A time series here is a time loop, optionally with a z-stack loop (planes); each
task opens the file through fsspec and reads only the frames it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import fsspec
import numpy as np

from ..errors import MovieError
from .layout import RecordingLayout, check_count

__all__ = ["nd2_layout", "Nd2Frames"]


@dataclass(frozen=True)
class Nd2Frames:
    """Frame slots (volume-major, plane-minor) of an ND2 file: each maps to a sequence index."""

    url: str
    n_slots: int
    nchannels: int
    nplanes: int
    shape: tuple[int, int]
    dtype: np.dtype
    z_outer: bool = False  # the z loop encloses the time loop
    n_times: int = 0
    storage_options: dict = field(default_factory=dict)

    def sequence(self, slots: np.ndarray) -> np.ndarray:
        slots = np.asarray(slots, dtype=np.int64)
        if not self.z_outer:
            return slots
        return (slots % self.nplanes) * self.n_times + slots // self.nplanes

    def read(self, slots: np.ndarray, channel: int, rows: tuple[int, int] | None = None) -> np.ndarray:
        import nd2

        y0, y1 = rows if rows is not None else (0, self.shape[0])
        out = np.empty((len(slots), y1 - y0, self.shape[1]), np.dtype(self.dtype).newbyteorder("="))
        with fsspec.open(self.url, "rb", **self.storage_options) as fh, nd2.ND2File(fh) as f:
            for i, seq in enumerate(self.sequence(slots).tolist()):
                frame = np.asarray(f.read_frame(seq))
                frame = frame[channel] if self.nchannels > 1 else frame
                out[i] = frame[y0:y1]
        return out


def _loops(f: object) -> list[tuple[str, int, object]]:
    return [(loop.type, int(loop.count), loop.parameters) for loop in f.experiment]  # type: ignore[attr-defined]


def _period_ms(params: object) -> float | None:
    diff = getattr(getattr(params, "periodDiff", None), "avg", 0) or 0
    period = diff if diff > 0 else getattr(params, "periodMs", 0) or 0
    if not period and getattr(params, "periods", None):
        period = params.periods[0].periodMs  # type: ignore[attr-defined]
    return float(period) if period and period > 0 else None


def nd2_layout(url: str, *, nplanes: int | None = None, nchannels: int | None = None,
               storage_options: dict | None = None) -> RecordingLayout:
    """The layout of a Nikon ``.nd2`` time series (time loop, optional z-stack loop)."""
    try:
        import nd2
    except ImportError:
        raise MovieError(url, "reading .nd2 files needs the nd2 package: pip install 'calcium-dask[rigs]'") from None

    so = dict(storage_options or {})
    try:
        with fsspec.open(url, "rb", **so) as fh, nd2.ND2File(fh) as f:
            loops = _loops(f)
            attrs = f.attributes
            sizes = dict(f.sizes)
            names = tuple(c.channel.name for c in (f.metadata.channels or [])) if f.metadata else ()
            voxel = f.voxel_size()
    except (ValueError, OSError, KeyError) as e:
        raise MovieError(url, f"not a readable ND2 file ({e})") from None
    kinds = [k for k, _, _ in loops]
    times = [(k, n, p) for k, n, p in loops if k in ("TimeLoop", "NETimeLoop")]
    if not times:
        raise MovieError(url, f"an ND2 of {dict(sizes)} without a time loop: not a time series")
    if any(k not in ("TimeLoop", "NETimeLoop", "ZStackLoop") for k in kinds):
        raise MovieError(url, f"an ND2 with loops {kinds}: only time series (time, z-stack) are read")
    n_times = times[0][1]
    zs = [n for k, n, _ in loops if k == "ZStackLoop"]
    planes = zs[0] if zs else 1
    z_outer = bool(zs) and kinds.index("ZStackLoop") < kinds.index(times[0][0])
    npl = check_count(url, "nplanes", nplanes, planes, f"its z-stack loop has {planes} plane(s)")
    channels = int(attrs.channelCount or 1)
    if attrs.componentCount != channels:
        raise MovieError(url, f"RGB frames ({attrs.componentCount} components per pixel) are not read")
    nch = check_count(url, "nchannels", nchannels, channels, f"it has {channels} channel(s)")
    dtype = np.dtype(f"{'f' if attrs.pixelDataType == 'float' else 'u'}{attrs.bitsPerComponentInMemory // 8}")
    frames = Nd2Frames(url, n_times * npl, nch, npl, (int(attrs.heightPx), int(attrs.widthPx)), dtype,
                       z_outer, n_times, so)
    period = _period_ms(times[0][2])
    volume_rate = 1000.0 / period if period else None
    dxy = (float(voxel[1]), float(voxel[0])) if voxel and voxel[0] > 0 and voxel[0] != 1 else None
    return RecordingLayout(url, "nd2", frames, nplanes=npl, volume_rate=volume_rate,
                           frame_rate=volume_rate * npl if volume_rate else None, dxy=dxy,
                           channel_names=names, from_metadata=("nplanes", "nchannels"), files=(url,))
