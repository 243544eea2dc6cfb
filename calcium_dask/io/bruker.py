"""Bruker PrairieView T-series: an XML that lists OME-TIFF pages, one per frame and channel.

The XML (``PVScan``) holds the settings (``PVStateShard``: ``framePeriod``,
``micronsPerPixel``...) and one ``Sequence`` per cycle: a T-series ("TSeries Timed
Element") is one sequence of frames, a volume T-series ("TSeries ZSeries Element") one
sequence (cycle) per volume with one frame per plane. Each ``Frame`` names a ``File`` per
channel (``filename``, and ``page`` when files hold several pages). PrairieView names
files ``<prefix>_Cycle<ccccc>_Ch<k>_<iiiiii>.ome.tif``; when every file follows that
pattern, sources keep only the pattern (not a list whose size grows with the session);
otherwise a table of file and page per frame.
"""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np

from ..errors import MovieError
from .layout import RecordingLayout, check_count
from .urls import filesystem

__all__ = ["bruker_layout", "find_bruker_xml", "BrukerFrames"]

_NAME = re.compile(r"^(?P<prefix>.+)_Cycle(?P<cycle>\d{5})_Ch(?P<ch>\d+)_(?P<idx>\d{6})\.ome\.tif$")


def find_bruker_xml(url: str, storage_options: dict | None = None) -> str | None:
    """The PrairieView XML of a folder (or ``url`` itself when it is one), else None."""
    fs, path = filesystem(url, storage_options)
    candidates = [path] if path.lower().endswith(".xml") else \
        sorted(p for p in fs.ls(path, detail=False) if p.lower().endswith(".xml")) if fs.isdir(path) else []
    for p in candidates:
        with fs.open(p, "rb") as f:
            if b"<PVScan" in f.read(1024):
                return fs.unstrip_protocol(p) if "://" in url else p
    return None


@dataclass
class _Scan:
    """What one pass over the XML finds (kept small: counts, a pattern, first values)."""

    kind: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    channels: list[int] = field(default_factory=list)
    channel_names: list[str] = field(default_factory=list)
    frames_per_cycle: list[int] = field(default_factory=list)
    cycles: list[int] = field(default_factory=list)
    cycle_times: list[float] = field(default_factory=list)
    prefix: str | None = None
    pattern: bool = True
    table: list[tuple[str, int]] = field(default_factory=list)  # (file, page) per frame and channel


def _state(elem: ET.Element, settings: dict[str, Any]) -> None:
    for v in elem.iter("PVStateValue"):
        key = v.get("key")
        if v.get("value") is not None:
            settings.setdefault(key, v.get("value"))
        else:
            settings.setdefault(key, {i.get("index"): i.get("value") for i in v.iter("IndexedValue")})


def _frame(elem: ET.Element, cycle: int, scan: _Scan) -> None:
    files = elem.findall("File")
    if not scan.channels:
        scan.channels = [int(f.get("channel", 0)) for f in files]
        scan.channel_names = [f.get("channelName", f"Ch{f.get('channel')}") for f in files]
    for f in files:
        name, page = f.get("filename", ""), int(f.get("page", 1))
        scan.table.append((name, page))
        m = _NAME.match(name)
        ok = m is not None and page == 1 and int(m["cycle"]) == cycle and int(m["ch"]) == int(f.get("channel", -1)) \
            and int(m["idx"]) == int(elem.get("index", -1))
        if ok and scan.prefix is None:
            scan.prefix = m["prefix"]
        scan.pattern = scan.pattern and ok and m["prefix"] == scan.prefix


def _scan(xml_url: str, so: dict) -> _Scan:
    scan = _Scan()
    cycle = 0
    try:
        with fsspec.open(xml_url, "rb", **so) as f:
            for event, elem in ET.iterparse(f, events=("start", "end")):
                if event == "start" and elem.tag == "Sequence":
                    cycle = int(elem.get("cycle", len(scan.cycles) + 1))
                    scan.kind = scan.kind or elem.get("type", "")
                    scan.cycles.append(cycle)
                    scan.frames_per_cycle.append(0)
                elif event == "end" and elem.tag == "Frame":
                    if scan.frames_per_cycle[-1] == 0:
                        scan.cycle_times.append(float(elem.get("relativeTime", "nan")))
                    scan.frames_per_cycle[-1] += 1
                    _frame(elem, cycle, scan)
                    elem.clear()
                elif event == "end" and elem.tag == "PVStateShard" and not scan.cycles:
                    _state(elem, scan.settings)
    except ET.ParseError as e:
        raise MovieError(xml_url, f"not a readable PrairieView XML ({e})") from None
    return scan


def _check_files(xml_url: str, scan: _Scan, so: dict) -> None:
    """Every file the XML names must be in its folder (listed once)."""
    fs, path = filesystem(xml_url, so)
    folder = posixpath.dirname(path)
    present = {posixpath.basename(p) for p in fs.ls(folder, detail=False)}
    missing = sorted({name for name, _ in scan.table} - present)
    if missing:
        raise MovieError(xml_url, f"names {len(missing)} file(s) missing from {folder} (first: {missing[0]})")


@dataclass(frozen=True)
class BrukerFrames:
    """Frame slots of a PrairieView T-series: the files named by pattern or by table."""

    folder: str
    n_slots: int
    nchannels: int
    channels: tuple[int, ...]
    nplanes: int
    first_cycle: int
    shape: tuple[int, int]
    dtype: np.dtype
    prefix: str | None = None
    table: tuple[tuple[str, int], ...] = ()  # when files do not follow the pattern
    storage_options: dict = field(default_factory=dict)

    def _file(self, slot: int, channel: int) -> tuple[str, int]:
        if self.prefix is None:
            return self.table[slot * self.nchannels + channel]
        cycle, index = (self.first_cycle + slot // self.nplanes, slot % self.nplanes + 1) if self.nplanes > 1 \
            else (self.first_cycle, slot + 1)
        return f"{self.prefix}_Cycle{cycle:05d}_Ch{self.channels[channel]}_{index:06d}.ome.tif", 1

    def read(self, slots: np.ndarray, channel: int, rows: tuple[int, int] | None = None) -> np.ndarray:
        import tifffile

        from .tiff import quiet_tifffile

        y0, y1 = rows if rows is not None else (0, self.shape[0])
        out = np.empty((len(slots), y1 - y0, self.shape[1]), np.dtype(self.dtype).newbyteorder("="))
        for i, s in enumerate(np.asarray(slots).tolist()):
            name, page = self._file(int(s), channel)
            with quiet_tifffile(), fsspec.open(f"{self.folder}/{name}", "rb", **self.storage_options) as f, \
                    tifffile.TiffFile(f) as tf:
                out[i] = tf.pages[page - 1].asarray().reshape(self.shape)[y0:y1]
        return out


def _first_page(url: str, so: dict) -> tuple[tuple[int, int], np.dtype]:
    import tifffile

    from .tiff import quiet_tifffile

    try:
        with quiet_tifffile(), fsspec.open(url, "rb", **so) as f, tifffile.TiffFile(f) as tf:
            page = tf.pages.first
            return tuple(page.shape), np.dtype(page.dtype)  # type: ignore[return-value]
    except (tifffile.TiffFileError, ValueError, OSError) as e:
        raise MovieError(url, f"not a readable OME-TIFF ({e})") from None


def _rates(scan: _Scan, nplanes: int) -> tuple[float | None, float | None]:
    period = scan.settings.get("framePeriod")
    frame_rate = 1.0 / float(period) if period and float(period) > 0 else None
    times = np.asarray(scan.cycle_times[:200], float)
    if nplanes > 1 and times.size > 2 and np.all(np.isfinite(times)):
        step = float(np.median(np.diff(times)))
        return frame_rate, (1.0 / step if step > 0 else None)
    return frame_rate, (frame_rate / nplanes if frame_rate else None)


def bruker_layout(url: str, *, nplanes: int | None = None, nchannels: int | None = None,
                  storage_options: dict | None = None) -> RecordingLayout:
    """The layout of a PrairieView T-series (``url``: its XML or its folder)."""
    so = dict(storage_options or {})
    xml_url = find_bruker_xml(url, so)
    if xml_url is None:
        raise MovieError(url, "no PrairieView XML (a <PVScan> document) here")
    scan = _scan(xml_url, so)
    if "TSeries" not in scan.kind or not scan.table:
        raise MovieError(xml_url, f"a PrairieView '{scan.kind or 'unknown'}' acquisition, not a T-series")
    _check_files(xml_url, scan, so)
    volumes = scan.kind.find("ZSeries") >= 0
    planes = scan.frames_per_cycle[0] if volumes else 1
    npl = check_count(xml_url, "nplanes", nplanes, planes, f"the XML has {planes} frame(s) per cycle")
    nch = check_count(xml_url, "nchannels", nchannels, len(scan.channels),
                      f"the XML names {len(scan.channels)} channel(s) per frame")
    n_slots = len(scan.table) // nch
    folder = posixpath.dirname(xml_url)
    shape, dtype = _first_page(f"{folder}/{scan.table[0][0]}", so)
    frames = BrukerFrames(folder, n_slots, nch, tuple(scan.channels), npl, scan.cycles[0], shape, dtype,
                          prefix=scan.prefix if scan.pattern else None,
                          table=() if scan.pattern else tuple(scan.table), storage_options=so)
    um = scan.settings.get("micronsPerPixel") or {}
    dxy = (float(um["YAxis"]), float(um["XAxis"])) if isinstance(um, dict) and "XAxis" in um and "YAxis" in um \
        else None
    frame_rate, volume_rate = _rates(scan, npl)
    return RecordingLayout(xml_url, "bruker", frames, nplanes=npl, frame_rate=frame_rate, volume_rate=volume_rate,
                           dxy=dxy, channel_names=tuple(scan.channel_names),
                           from_metadata=("nplanes", "nchannels"), files=(xml_url,))
