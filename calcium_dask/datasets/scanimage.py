"""Write frames as ScanImage writes them: a BigTIFF with ScanImage's header metadata.

The layout follows ScanImage's BigTIFF specification (2016 and later): the 16-byte BigTIFF
header; at byte 16 the ScanImage static section (magic 117637889, version 3, the sizes of
the non-varying frame data and of the ROI group data, then both, NUL-terminated: ``SI.*``
settings in MATLAB syntax and the ROI groups as JSON); then, for every page, its IFD, its
frame-varying ImageDescription (frame number, timestamp...) and its pixels. The Software
and Artist tags of every IFD point at the static section's two blocks, as ScanImage's do,
so ``tifffile`` recognises the file (``TiffFile.is_scanimage``) and reads its metadata
(``TiffFile.scanimage_metadata``) exactly as it reads a rig's file.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ScanImageHeader", "write_scanimage_tiff", "matlab"]

MAGIC = 117637889
_TYPES = {"SHORT": 3, "LONG": 4, "RATIONAL": 5, "ASCII": 2, "LONG8": 16}


def matlab(value: Any) -> str:
    """A value in the MATLAB syntax of ScanImage's header (``true``, ``[1;2]``, ``'fast'``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if arr.dtype.kind in "US":
            return "{" + " ".join(f"'{v}'" for v in arr.ravel()) + "}"
        if arr.ndim == 2:
            return "[" + ";".join(" ".join(_num(v) for v in row) for row in arr) + "]"
        return "[" + ";".join(_num(v) for v in arr.ravel()) + "]"
    return _num(value)


def _num(v: Any) -> str:
    f = float(v)
    if np.isinf(f):
        return "Inf"
    return str(int(f)) if f == int(f) else repr(f)


@dataclass(frozen=True)
class ScanImageHeader:
    """The settings a ScanImage session records about its frames.

    ``nslices`` planes per volume with fast z (1: a plain time series) plus ``nflyback``
    flyback frames; ``channels`` the saved channels (1-based); ``rois`` mesoscope ROIs as
    ``(center_xy, size_xy, pixels_xy)`` in scan degrees, stacked top to bottom in each page
    with ``flyto_lines`` between them; ``modern`` writes the 2020+ names
    (``numFramesPerVolumeWithFlyback``), otherwise the 2016-2019 ones
    (``hFastZ.numDiscardFlybackFrames``).
    """

    shape: tuple[int, int]
    channels: Sequence[int] = (1,)
    nslices: int = 1
    nflyback: int = 0
    frame_rate: float = 30.0
    modern: bool = True
    rois: Sequence[tuple[Sequence[float], Sequence[float], Sequence[int]]] = ()
    flyto_lines: int = 0
    fov_um: float = 500.0
    extra: dict[str, Any] = field(default_factory=dict)

    def frame_data(self) -> dict[str, Any]:
        stack = self.nslices > 1
        planes = self.nslices + self.nflyback
        d: dict[str, Any] = {
            "SI.VERSION_MAJOR": "2020" if self.modern else "2016b",
            "SI.hChannels.channelSave": list(self.channels) if len(self.channels) > 1 else self.channels[0],
            "SI.hChannels.channelName": [f"Channel {i}" for i in range(1, 5)],
            "SI.hFastZ.enable": stack,
            "SI.hFastZ.discardFlybackFrames": self.nflyback > 0,
            "SI.hFastZ.numDiscardFlybackFrames": self.nflyback,
            "SI.hStackManager.enable": stack,
            "SI.hStackManager.numSlices": self.nslices,
            "SI.hStackManager.framesPerSlice": float("inf") if not stack else 1,
            "SI.hRoiManager.linesPerFrame": self.shape[0],
            "SI.hRoiManager.pixelsPerLine": self.shape[1],
            "SI.hRoiManager.mroiEnable": len(self.rois) > 1,
            "SI.hRoiManager.scanFrameRate": self.frame_rate,
            "SI.hRoiManager.scanFramePeriod": 1.0 / self.frame_rate,
            "SI.hRoiManager.scanVolumeRate": self.frame_rate / planes if stack else self.frame_rate,
            "SI.hRoiManager.imagingFovUm": [[-self.fov_um / 2] * 2, [self.fov_um / 2, -self.fov_um / 2],
                                            [self.fov_um / 2] * 2, [-self.fov_um / 2, self.fov_um / 2]],
        }
        if self.modern:
            d.update({"SI.hStackManager.stackMode": "fast" if stack else "slow",
                      "SI.hStackManager.actualNumSlices": self.nslices,
                      "SI.hStackManager.numFramesPerVolume": self.nslices,
                      "SI.hStackManager.numFramesPerVolumeWithFlyback": planes if stack else 1})
        d.update(self.extra)
        return d

    def frame_text(self) -> str:
        return "".join(f"{k} = {matlab(v)}\n" for k, v in self.frame_data().items())

    def roi_data(self) -> dict[str, Any]:
        rois = self.rois or [((0.0, 0.0), (10.0, 10.0), (self.shape[1], self.shape[0]))]
        return {"RoiGroups": {"imagingRoiGroup": {"ver": 1, "classname": "scanimage.mroi.RoiGroup",
                                                  "name": "Default Imaging ROI Group", "rois": [
            {"ver": 1, "classname": "scanimage.mroi.Roi", "name": f"ROI {i + 1}", "zs": 0, "enable": 1,
             "discretePlaneMode": 0, "scanfields": {
                 "ver": 1, "classname": "scanimage.mroi.scanfield.fields.RotatedRectangle",
                 "name": f"ROI {i + 1}", "centerXY": list(map(float, c)), "sizeXY": list(map(float, s)),
                 "rotationDegrees": 0, "pixelResolutionXY": [int(p[0]), int(p[1])]}}
            for i, (c, s, p) in enumerate(rois)]}, "photostimRoiGroups": None,
            "integrationRoiGroup": {"ver": 1, "classname": "scanimage.mroi.RoiGroup", "name": "", "rois": {
                "_ArrayType_": "double", "_ArraySize_": [0, 0], "_ArrayData_": None}}}}


def _description(slot: int, t: float, pad: bool) -> bytes:
    text = (f"frameNumbers = {slot + 1}\nframeNumberAcquisition = {slot + 1}\nframeTimestamps_sec = {t:.6f}\n"
            "acqTriggerTimestamps_sec = \nnextFileMarkerTimestamps_sec = \nendOfAcquisition = 0\n"
            "endOfAcquisitionMode = 0\ndcOverVoltage = 0\nepoch = [2026 1 1 0 0 0]\nauxTrigger0 = []\n"
            "auxTrigger1 = []\nauxTrigger2 = []\nauxTrigger3 = []\nI2CData = {}\n")
    raw = text.encode("ascii")
    return (raw.ljust(400, b" ") if pad else raw) + b"\x00"


def write_scanimage_tiff(path: str | os.PathLike, pages: Iterable[np.ndarray], header: ScanImageHeader, *,
                         dtype: Any = np.int16, pad_descriptions: bool = True) -> int:
    """Write ``pages`` (2-D arrays in acquisition order) as a ScanImage BigTIFF.

    Parameters
    ----------
    pages : iterable of ndarray (lines, pixels)
        Every page: channels fastest, then planes (flyback frames included), then volumes.
    header : ScanImageHeader
    dtype : numpy dtype
        Stored sample type (ScanImage stores int16).
    pad_descriptions : bool
        Pad each page's description to one length, so pages lie at a fixed stride (as
        when ScanImage's frame descriptions keep their length); False varies their length.

    Returns
    -------
    int
        Pages written.
    """
    dt = np.dtype(dtype).newbyteorder("<")
    frame_text = header.frame_text().encode("ascii") + b"\x00"
    roi_text = json.dumps(header.roi_data()).encode("ascii") + b"\x00"
    nch = len(header.channels)
    rate = header.frame_rate
    h, w = header.shape
    n = 0
    with open(path, "wb") as f:
        f.write(b"II" + struct.pack("<HHHQ", 43, 8, 0, 0))  # first IFD offset patched below
        f.write(struct.pack("<IIII", MAGIC, 3, len(frame_text), len(roi_text)))
        frame_at = f.tell()
        f.write(frame_text)
        roi_at = f.tell()
        f.write(roi_text)
        link = 8  # where the offset of the next IFD goes
        for page in pages:
            arr = np.asarray(page)
            if arr.shape != (h, w):
                raise ValueError(f"page {n} has shape {arr.shape}, the header says {(h, w)}")
            link = _write_page(f, link, arr.astype(dt), _description(n // nch, n // nch / rate, pad_descriptions),
                               frame_at, len(frame_text), roi_at, len(roi_text), header.shape)
            n += 1
    return n


def _write_page(f: Any, link: int, arr: np.ndarray, desc: bytes, frame_at: int, frame_len: int,
                roi_at: int, roi_len: int, shape: tuple[int, int]) -> int:
    """Append one IFD, its description and its pixels; point the previous link at it."""
    h, w = shape
    ifd_at = f.tell()
    n_tags = 18
    desc_at = ifd_at + 8 + 20 * n_tags + 8
    data_at = desc_at + len(desc)
    signed = 2 if arr.dtype.kind == "i" else 1
    tags = [(256, "LONG", 1, w), (257, "LONG", 1, h), (258, "SHORT", 1, arr.dtype.itemsize * 8),
            (259, "SHORT", 1, 1), (262, "SHORT", 1, 1), (270, "ASCII", len(desc), desc_at),
            (273, "LONG8", 1, data_at), (274, "SHORT", 1, 1), (277, "SHORT", 1, 1), (278, "LONG", 1, h),
            (279, "LONG8", 1, arr.nbytes), (282, "RATIONAL", 1, (72, 1)), (283, "RATIONAL", 1, (72, 1)),
            (284, "SHORT", 1, 1), (296, "SHORT", 1, 2), (305, "ASCII", frame_len, frame_at),
            (315, "ASCII", roi_len, roi_at), (339, "SHORT", 1, signed)]
    out = [struct.pack("<Q", n_tags)]
    for code, kind, count, value in tags:
        if kind == "RATIONAL":
            field_bytes = struct.pack("<II", *value)
        elif kind in ("SHORT",):
            field_bytes = struct.pack("<H", value).ljust(8, b"\x00")
        elif kind == "LONG":
            field_bytes = struct.pack("<I", value).ljust(8, b"\x00")
        else:  # LONG8 value, or the offset of ASCII data longer than 8 bytes
            field_bytes = struct.pack("<Q", value)
        out.append(struct.pack("<HHQ", code, _TYPES[kind], count) + field_bytes)
    out.append(struct.pack("<Q", 0))  # next IFD: patched when another page follows
    f.write(b"".join(out))
    f.write(desc)
    f.write(arr.tobytes())
    end = f.tell()
    f.seek(link)
    f.write(struct.pack("<Q", ifd_at))
    f.seek(end)
    return ifd_at + 8 + 20 * n_tags
