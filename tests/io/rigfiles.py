"""Small files of the rigs' formats, written here with the metadata the rigs write (no downloads).

- Scanbox: ``.sbx`` raw uint16 stored inverted, channels interleaved per pixel, frames
  (planes interleaved) one after another; ``.mat`` with the ``info`` struct Scanbox saves
  (``sz``, ``chan.nchan`` or ``channels``, ``volscan``/``otwave``, ``resfreq``,
  ``config.lines``, ``scanmode``, ``dxcal``/``dycal``), written by ``scipy.io.savemat``.
- Bruker: a PrairieView ``PVScan`` XML (state shard with ``framePeriod`` and
  ``micronsPerPixel``; one ``Sequence`` per cycle; ``Frame``/``File`` entries) and one
  OME-TIFF per frame and channel named as PrairieView names them, written by tifffile.
- Nikon: an ND2 version 3.0 file as NIS-Elements lays it out, written byte by byte: the
  file signature chunk; metadata chunks (``ImageAttributesLV!``, ``ImageMetadataSeqLV|0!``,
  ``ImageMetadataLV!``, ``ImageTextInfoLV!``) encoded in NIS-Elements' binary "lite
  variant" (type byte, UTF-16 name, value; nested levels with their item-offset tables);
  one ``ImageDataSeq|i!`` chunk per frame (timestamp, then pixels, channels interleaved
  per pixel) at 4096-byte alignment; and the chunk map with its signature at the end.
  Only the keys the ``nd2`` package's reader (which mirrors Nikon's SDK) uses are written;
  a real file has many more (devices, optical configuration, events, custom data).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

# -- Scanbox -------------------------------------------------------------------------------


def write_sbx(base: Path, frames: np.ndarray, *, nplanes: int = 1, resfreq: float = 7930.0,
              bidirectional: bool = False, version3: bool = True, with_mat: bool = True) -> Path:
    """``frames`` (records, channels, lines, pixels) uint16 -> ``base.sbx`` (+ ``base.mat``)."""
    from scipy.io import savemat

    n, nch, lines, pixels = frames.shape
    stored = (np.uint16(65535) - frames).transpose(0, 2, 3, 1)  # per pixel: one value per channel
    sbx = base.with_suffix(".sbx")
    sbx.write_bytes(np.ascontiguousarray(stored, dtype="<u2").tobytes())
    info: dict[str, Any] = {
        "sz": np.array([lines, pixels], float), "resfreq": resfreq, "scanmode": 0 if bidirectional else 1,
        "recordsPerBuffer": lines, "config": {"lines": lines * (2 if bidirectional else 1), "magnification": 1,
                                              "frames": n},
        "volscan": int(nplanes > 1), "otwave": np.linspace(0, 100, nplanes) if nplanes > 1 else np.array([]),
        "dxcal": 1.2, "dycal": 1.5, "scanbox_version": 3 if version3 else 2,
    }
    if version3:
        info["chan"] = {"nchan": nch}
    else:
        info["channels"] = 1 if nch == 2 else 2
    if with_mat:
        savemat(base.with_suffix(".mat"), {"info": info})
    return sbx


# -- Bruker PrairieView ---------------------------------------------------------------------


def write_bruker(folder: Path, frames: np.ndarray, *, frame_period: float = 0.0333, um: float = 1.1,
                 name: str = "TSeries-01012026-1200-001", volumes: bool = False) -> Path:
    """``frames`` (cycles or time, planes, channels, lines, pixels) -> a PrairieView folder.

    With ``volumes`` the acquisition is a volume T-series (one cycle per volume, one frame
    per plane), else a T-series (one cycle, planes must be 1).
    """
    folder.mkdir(parents=True, exist_ok=True)
    n, nz, nch, h, w = frames.shape
    seqs = []
    for v in range(n if volumes else 1):
        cycle = v + 1
        items = range(nz) if volumes else range(n)
        lines = [f'  <Sequence type="{"TSeries ZSeries Element" if volumes else "TSeries Timed Element"}" '
                 f'cycle="{cycle}" time="12:00:00.0" bidirectionalZ="False" xYStageGridDefined="False">']
        for i in items:
            t = (v * nz + i if volumes else i) * frame_period
            lines.append(f'    <Frame relativeTime="{t:.6f}" absoluteTime="{t + 1.5:.6f}" index="{i + 1}" '
                         'parameterSet="CurrentSettings">')
            for c in range(nch):
                fname = f"{name}_Cycle{cycle:05d}_Ch{c + 1}_{i + 1:06d}.ome.tif"
                img = frames[v, i, c] if volumes else frames[i, 0, c]
                tifffile.imwrite(folder / fname, img, ome=True, metadata={"axes": "YX"})
                lines.append(f'      <File channel="{c + 1}" channelName="Ch{c + 1}" page="1" filename="{fname}" />')
            lines.append('      <ExtraParameters validData="True" />')
            lines.append("    </Frame>")
        lines.append("  </Sequence>")
        seqs.append("\n".join(lines))
    xml = (f'<?xml version="1.0" encoding="utf-8"?>\n<PVScan version="5.7.64.100" date="1/1/2026 12:00:00 PM" '
           f'notes="">\n  <SystemIDs SystemID="0" />\n  <PVStateShard>\n'
           '    <PVStateValue key="activeMode" value="ResonantGalvo" />\n'
           f'    <PVStateValue key="framePeriod" value="{frame_period}" />\n'
           f'    <PVStateValue key="linesPerFrame" value="{h}" />\n'
           f'    <PVStateValue key="pixelsPerLine" value="{w}" />\n'
           '    <PVStateValue key="micronsPerPixel">\n'
           f'      <IndexedValue index="XAxis" value="{um}" />\n'
           f'      <IndexedValue index="YAxis" value="{um}" />\n'
           '      <IndexedValue index="ZAxis" value="2" />\n    </PVStateValue>\n'
           '  </PVStateShard>\n' + "\n".join(seqs) + "\n</PVScan>\n")
    path = folder / f"{name}.xml"
    path.write_text(xml, encoding="utf-8")
    return path


# -- Nikon ND2 ------------------------------------------------------------------------------

_MAGIC = 0x0ABECEDA
_ALIGN = 4096


def _lv_item(name: str, value: Any) -> bytes:
    """One item of the "lite variant" encoding NIS-Elements uses for ND2 v3 metadata."""
    label = (name + "\x00").encode("utf-16-le")
    head = lambda kind: struct.pack("BB", kind, len(name) + 1) + label  # noqa: E731
    if isinstance(value, bool):
        return head(1) + struct.pack("B", value)
    if isinstance(value, int):
        return head(3) + struct.pack("<I", value) if value >= 0 else head(2) + struct.pack("<i", value)
    if isinstance(value, float):
        return head(6) + struct.pack("<d", value)
    if isinstance(value, str):
        return head(8) + (value + "\x00").encode("utf-16-le")
    if isinstance(value, (dict, list)):
        items = [_lv_item(k, v) for k, v in value.items()] if isinstance(value, dict) else \
            [_lv_item("", v) for v in value]
        body = b"".join(items)
        start = head(11)
        length = len(start) + 12 + len(body)
        offsets, at = [], len(start) + 12
        for it in items:
            offsets.append(at)
            at += len(it)
        return start + struct.pack("<IQ", len(items), length) + body + struct.pack(f"<{len(items)}Q", *offsets)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _lv(doc: dict[str, Any]) -> bytes:
    return b"".join(_lv_item(k, v) for k, v in doc.items())


def _chunk(name: bytes, data: bytes, name_len: int | None = None) -> bytes:
    name_len = name_len or len(name)
    return struct.pack("<IIQ", _MAGIC, name_len, len(data)) + name.ljust(name_len, b"\x00") + data


def _experiment(loops: list[tuple[str, int, dict]]) -> dict[str, Any]:
    kind, count, pars = loops[0]
    exp = {"eType": {"time": 1, "z": 4, "xy": 2}[kind], "uLoopPars": {"uiCount": count, **pars},
           "pItemValid": [1] * count if kind == "xy" else [], "wsApplicationDesc": "", "wsUserDesc": ""}
    if len(loops) > 1:
        exp["ppNextLevelEx"] = [_experiment(loops[1:])]
    return exp


def _spectrum(nm: float) -> dict[str, Any]:
    return {"uiCount": 1, "pPoint": {"Point0": {"eType": 1, "dWavelength": nm, "dTValue": 1.0}}}


def write_nd2(path: Path, frames: np.ndarray, *, period_ms: float = 33.3, z_step: float = 2.0,
              um: float = 0.8, loops: tuple[str, ...] = ("time", "z")) -> Path:
    """``frames`` (outer loop, inner loop, channels, lines, pixels) uint16 -> an ND2 v3.0 file.

    ``loops`` names the two acquisition loops, outermost first ("time", "z" or "xy"); with
    one loop, ``frames`` is (n, channels, lines, pixels).
    """
    if len(loops) == 1:
        frames = frames[:, None]
    n0, n1, nch, h, w = frames.shape
    counts = (n0, n1)
    pars = {"time": {"dStart": 0.0, "dPeriod": period_ms, "dDuration": 0.0, "dMinPeriodDiff": period_ms,
                     "dMaxPeriodDiff": period_ms, "dAvgPeriodDiff": period_ms},
            "z": {"dZLow": 0.0, "dZHigh": z_step * (n1 - 1), "dZStep": z_step, "dZHome": 0.0, "bZInverted": False,
                  "iType": 0, "wsZDevice": "Piezo"},
            "xy": {"bUseZ": False, "bRelativeXY": False,
                   "Points": {f"i{i:010d}": {"dPosX": 10.0 * i, "dPosY": 0.0, "dPosZ": 0.0, "dPosName": f"p{i}"}
                              for i in range(n0)}}}
    exp = _experiment([(k, counts[i], pars[k]) for i, k in enumerate(loops)])
    attrs = {"SLxImageAttributes": {
        "uiWidth": w, "uiWidthBytes": w * nch * 2, "uiHeight": h, "uiComp": nch, "uiBpcInMemory": 16,
        "uiBpcSignificant": 16, "uiSequenceCount": n0 * n1, "uiTileWidth": w, "uiTileHeight": h,
        "eCompression": 2, "dCompressionParam": 0.0, "ePixelType": 1, "uiVirtualComponents": nch}}
    planes = {f"a{c}": {"uiCompCount": 1, "uiSampleIndex": c, "uiModalityMask": 0x10001 | 0x100000,
                        "sDescription": ["GCaMP", "tdTomato", "Ch3"][c], "uiColor": 0xFF00 >> (8 * c),
                        "pFluorescentProbe": {"m_sName": ["GCaMP6s", "tdTomato", "dye"][c],
                                              "m_ExcitationSpectrum": _spectrum(920.0),
                                              "m_EmissionSpectrum": _spectrum([510.0, 580.0, 650.0][c])}}
              for c in range(nch)}
    meta = {"SLxPictureMetadata": {
        "dTimeMSec": 0.0, "dCalibration": um, "bCalibrated": True, "dObjectiveMag": 16.0, "dObjectiveNA": 0.8,
        "wsObjectiveName": "CFI75 LWD 16X W", "dZoom": 1.0, "dXPos": 0.0, "dYPos": 0.0, "dZPos": 0.0,
        "sPicturePlanes": {"uiCount": nch, "uiCompCount": nch, "sPlaneNew": planes,
                           "sSampleSetting": {f"a{c}": {"pDeviceSetting": {"m_iXYUse0": 0}} for c in range(nch)}}}}
    text = {"SLxImageTextInfo": {"TextInfoItem_5": "calcium-dask test file", "TextInfoItem_13": "16x"}}
    chunks: list[tuple[bytes, bytes, int | None]] = [
        (b"ImageAttributesLV!", _lv(attrs), None), (b"ImageMetadataSeqLV|0!", _lv(meta), None),
        (b"ImageMetadataLV!", _lv({"SLxExperiment": exp}), None), (b"ImageTextInfoLV!", _lv(text), None)]
    flat = frames.reshape(n0 * n1, nch, h, w).transpose(0, 2, 3, 1)  # per pixel: its channels
    for i, frame in enumerate(flat):
        data = struct.pack("<d", i * period_ms / n1) + np.ascontiguousarray(frame, "<u2").tobytes()
        chunks.append((f"ImageDataSeq|{i}!".encode(), data, 4072))
    out = bytearray(_chunk(b"ND2 FILE SIGNATURE CHUNK NAME01!", b"Ver3.0".ljust(64, b"\x00")))
    table = []
    for name, data, name_len in chunks:
        out += b"\x00" * (-len(out) % _ALIGN)
        table.append((name, len(out), len(data)))
        out += _chunk(name, data, name_len)
    out += b"\x00" * (-len(out) % _ALIGN)
    where = len(out)
    entries = b"".join(name + struct.pack("<QQ", off, size) for name, off, size in table)
    body = entries + b"ND2 CHUNK MAP SIGNATURE 0000001!" + struct.pack("<Q", where)
    out += _chunk(b"ND2 FILEMAP SIGNATURE NAME 0001!", body)
    path.write_bytes(bytes(out))
    return path
