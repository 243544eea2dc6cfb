"""ScanImage TIFFs (and plain TIFFs of interleaved planes and channels) as a recording layout.

ScanImage (2016 and later) writes a BigTIFF whose header is followed by its non-varying
frame data (``SI.*`` settings, MATLAB syntax) and its ROI groups (JSON); ``tifffile``
reads both (``TiffFile.scanimage_metadata``). Older versions keep the settings in each
page's ImageDescription. Pages come channel fastest, then plane (fast z), then volume;
each volume ends with its flyback frames. Volumetric settings count only when the stack
is enabled (``numSlices`` is often left over from an earlier configuration).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np

from ..errors import MovieError
from .kernels.interleave import canvas_positions, mroi_rows
from .layout import RecordingLayout, Roi, check_count
from .pages import PagedChannels
from .tiff import quiet_tifffile, tiff_pages

__all__ = ["scanimage_metadata", "ScanImageSettings", "settings_from_metadata", "tiff_layout"]


@dataclass(frozen=True)
class ScanImageSettings:
    """What a ScanImage file's metadata say about its layout."""

    nchannels: int = 1
    nplanes: int = 1  # slots per volume, flyback included
    nflyback: int = 0
    frame_rate: float | None = None
    volume_rate: float | None = None
    channel_names: tuple[str, ...] = ()
    rois: tuple[dict, ...] = ()  # enabled imaging ROIs' scanfields (mesoscope)
    dxy: tuple[float, float] | None = None
    detail: str = ""


def scanimage_metadata(url: str, storage_options: dict | None = None) -> dict[str, Any] | None:
    """``{"FrameData": {"SI.x.y": value}, "RoiGroups": {...}}`` or None (not ScanImage)."""
    import tifffile

    with quiet_tifffile(), fsspec.open(url, "rb", **(storage_options or {})) as f:
        try:
            with tifffile.TiffFile(f) as tf:
                meta = tf.scanimage_metadata
                if meta and meta.get("FrameData"):
                    return meta
                page = tf.pages.first
                if not page.is_scanimage:
                    return None
                described = tifffile.scanimage_description_metadata(page.description) or {}
        except (tifffile.TiffFileError, ValueError, OSError, IndexError):
            return None  # the TIFF reader says what is wrong with the file
    frame = {k.removeprefix("scanimage."): v for k, v in described.items() if "SI." in k}
    return {"FrameData": frame} if frame else None


def _get(fd: dict, key: str, default: Any = None) -> Any:
    return fd.get(f"SI.{key}", default)


def _count(value: Any) -> int:
    """ScanImage writes one saved channel as a number, several as a list."""
    return 1 if value is None else int(np.size(value))


def _as_int(value: Any, default: int) -> int:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return int(v) if np.isfinite(v) else default


def _planes(fd: dict, source: str) -> tuple[int, int, str]:
    """(slots per volume with flyback, flyback slots, description) from the stack settings."""
    stack = bool(_get(fd, "hStackManager.enable")) or bool(_get(fd, "hFastZ.enable"))
    if not stack:
        return 1, 0, "no volume scan"
    mode = _get(fd, "hStackManager.stackMode")
    fast = str(mode).strip("'") == "fast" if mode is not None else bool(_get(fd, "hFastZ.enable"))
    slices = _as_int(_get(fd, "hStackManager.actualNumSlices", _get(fd, "hStackManager.numSlices")), 1)
    if not fast:
        if slices > 1:
            raise MovieError(source, f"a slow z-stack ({slices} slices), not a time series")
        return 1, 0, "no volume scan"
    repeats = _as_int(_get(fd, "hStackManager.framesPerSlice"), 1)
    with_fb = _get(fd, "hStackManager.numFramesPerVolumeWithFlyback")
    per_vol = _get(fd, "hStackManager.numFramesPerVolume")
    if with_fb is not None and per_vol is not None:
        total, flyback = _as_int(with_fb, slices), _as_int(with_fb, slices) - _as_int(per_vol, slices)
    else:
        discard = bool(_get(fd, "hFastZ.discardFlybackFrames", False))
        flyback = _as_int(_get(fd, "hFastZ.numDiscardFlybackFrames"), 0) if discard else 0
        total = slices + flyback
    if repeats > 1 and total - flyback > 1:
        raise MovieError(source, f"{repeats} frames per slice in a fast-z volume are not supported")
    return total, flyback, f"{total - flyback} slices + {flyback} flyback frames per volume"


def _rois(meta: dict, fd: dict) -> tuple[dict, ...]:
    if not _get(fd, "hRoiManager.mroiEnable"):
        return ()
    group = ((meta.get("RoiGroups") or {}).get("imagingRoiGroup") or {})
    rois = group.get("rois") or []
    rois = [rois] if isinstance(rois, dict) else list(rois)
    out = []
    for r in rois:
        if not r.get("enable", 1):
            continue
        sf = r.get("scanfields")
        sf = sf[0] if isinstance(sf, list) and sf else sf
        if isinstance(sf, dict):
            out.append({"name": str(r.get("name", "")), **sf})
    return tuple(out) if len(out) > 1 else ()


def _dxy(fd: dict) -> tuple[float, float] | None:
    fov = _get(fd, "hRoiManager.imagingFovUm")
    try:
        corners = np.asarray(fov, float).reshape(-1, 2)
        w, h = float(_get(fd, "hRoiManager.pixelsPerLine")), float(_get(fd, "hRoiManager.linesPerFrame"))
    except (TypeError, ValueError):
        return None
    span = corners.max(axis=0) - corners.min(axis=0)
    return (float(span[1] / h), float(span[0] / w)) if np.all(span > 0) and w > 0 and h > 0 else None


def settings_from_metadata(meta: dict, source: str) -> ScanImageSettings:
    """Channels, planes (with flyback), rates, ROIs and pixel size from ScanImage metadata."""
    fd = meta.get("FrameData") or {}
    saved = _get(fd, "hChannels.channelSave", 1)
    nchannels = _count(saved)
    names = _get(fd, "hChannels.channelName") or []
    ids = np.ravel(saved).astype(int).tolist()
    channel_names = tuple(str(names[i - 1]) if isinstance(names, list) and 0 < i <= len(names)
                          else f"Channel {i}" for i in ids)
    nplanes, nflyback, detail = _planes(fd, source)
    rate = _get(fd, "hRoiManager.scanFrameRate")
    vol = _get(fd, "hRoiManager.scanVolumeRate") if nplanes > 1 else rate
    return ScanImageSettings(nchannels, nplanes, nflyback, float(rate) if rate else None,
                             float(vol) if vol else None, channel_names, _rois(meta, fd), _dxy(fd), detail)


def _roi_geometry(rois: tuple[dict, ...], height: int, source: str) -> tuple[Roi, ...]:
    if not rois:
        return ()
    try:
        pixels = np.array([r["pixelResolutionXY"] for r in rois], float)
        rows = mroi_rows([int(p[1]) for p in pixels], height)
        pos = canvas_positions(np.array([r["centerXY"] for r in rois], float),
                               np.array([r["sizeXY"] for r in rois], float), pixels)
    except (KeyError, TypeError, ValueError) as e:
        raise MovieError(source, f"mesoscope ROIs do not fit the frames of {height} lines ({e})") from None
    widths = {int(p[0]) for p in pixels}
    if len(widths) != 1:
        raise MovieError(source, f"mesoscope ROIs of different widths {sorted(widths)} are not supported")
    return tuple(Roi(rw, (float(y), float(x)), r.get("name", "")) for rw, (y, x), r in zip(rows, pos, rois))


def tiff_layout(urls: list[str], *, nplanes: int | None = None, nchannels: int | None = None,
                storage_options: dict | None = None) -> RecordingLayout:
    """The layout of a TIFF recording: from ScanImage's metadata when the file has them,
    else from ``nplanes`` and ``nchannels`` (default 1); given values must match the metadata.
    """
    so = dict(storage_options or {})
    source = urls[0]
    meta = scanimage_metadata(source, so)
    pages = tiff_pages(urls, so)
    if meta is None:
        slots = PagedChannels(pages, int(nchannels or 1))
        return RecordingLayout(source, "tiff", slots, nplanes=int(nplanes or 1), files=tuple(urls))
    si = settings_from_metadata(meta, source)
    nch = check_count(source, "nchannels", nchannels, si.nchannels,
                      f"ScanImage saved {si.nchannels} channel(s) (SI.hChannels.channelSave)")
    npl = check_count(source, "nplanes", nplanes, si.nplanes,
                      f"ScanImage metadata say {si.detail}; nplanes counts the flyback frames")
    rois = _roi_geometry(si.rois, pages.shape[0], source)
    return RecordingLayout(source, "scanimage", PagedChannels(pages, nch), nplanes=npl, nflyback=si.nflyback,
                           rois=rois, frame_rate=si.frame_rate, volume_rate=si.volume_rate, dxy=si.dxy,
                           channel_names=si.channel_names, from_metadata=("nplanes", "nchannels", "rois"),
                           files=tuple(urls))
