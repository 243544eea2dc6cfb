"""Scanbox (Neurolabware) recordings: raw ``.sbx`` frames described by the ``.mat`` beside them.

The ``.mat`` holds a MATLAB struct ``info``: ``sz`` (lines, pixels per line), the channels
(``chan.nchan``, or before Scanbox 3 ``channels``: 1 both PMTs, 2 or 3 one of them), the
volume scan (``volscan`` with the optotune waveform ``otwave`` or ``etl_table``, one entry
per plane), ``resfreq``, ``config.lines`` and ``scanmode`` (0 bidirectional) for the frame
rate, and ``dxcal``/``dycal`` (um per pixel). The ``.sbx`` is headerless uint16, frame
after frame (planes interleaved), each frame line by line, each pixel one value per
channel, stored inverted (``65535 - value``). Read here with an own lazy reader (the
``sbxreader`` package is GPL): each task reads the byte ranges of its frames.
"""

from __future__ import annotations

import io
import posixpath
from typing import Any

import fsspec
import numpy as np

from ..errors import MovieError
from .layout import RecordingLayout, check_count
from .pages import SampleChannels, StridedPages
from .urls import filesystem

__all__ = ["scanbox_layout", "sbx_pair"]


def sbx_pair(url: str) -> tuple[str, str]:
    """(``.sbx``, ``.mat``) URLs of a Scanbox recording named by either file."""
    base, ext = posixpath.splitext(url)
    return base + ".sbx", base + ".mat"


def _info(mat_url: str, sbx_url: str, so: dict) -> Any:
    from scipy.io import loadmat

    fs, path = filesystem(mat_url, so)
    if not fs.exists(path):
        raise MovieError(sbx_url, f"no Scanbox header: {mat_url} is missing (an .sbx needs its .mat beside it)")
    with fsspec.open(mat_url, "rb", **so) as f:
        raw = f.read()
    try:
        mat = loadmat(io.BytesIO(raw), squeeze_me=True, struct_as_record=False)
    except (ValueError, TypeError, OSError, NotImplementedError) as e:
        raise MovieError(mat_url, f"not a readable Scanbox .mat header ({e})") from None
    if "info" not in mat:
        raise MovieError(mat_url, "no 'info' struct: not a Scanbox header")
    return mat["info"]


def _nchannels(info: Any) -> int:
    chan = getattr(info, "chan", None)
    if chan is not None and getattr(chan, "nchan", None) is not None:
        return int(chan.nchan)
    return 2 if int(getattr(info, "channels", 2)) == 1 else 1


def _nplanes(info: Any) -> int:
    volscan = np.ravel(getattr(info, "volscan", 0))
    if not (volscan.size and volscan[0]):
        return 1
    for name in ("otwave", "etl_table"):
        value = getattr(info, name, None)
        if value is not None and np.size(value) > 1:
            return int(np.shape(value)[0]) if np.ndim(value) > 1 else int(np.size(value))
    otparam = np.ravel(getattr(info, "otparam", []))
    return int(otparam[2]) if otparam.size >= 3 and otparam[2] > 1 else 1


def _frame_rate(info: Any) -> float | None:
    resfreq = getattr(info, "resfreq", None)
    lines = getattr(getattr(info, "config", None), "lines", None)
    if not resfreq or not lines:
        return None
    bidirectional = int(getattr(info, "scanmode", 1)) == 0
    return float(resfreq) / float(lines) * (2 if bidirectional else 1)


def scanbox_layout(url: str, *, nplanes: int | None = None, nchannels: int | None = None,
                   storage_options: dict | None = None) -> RecordingLayout:
    """The layout of a Scanbox recording named by its ``.sbx`` (or its ``.mat``)."""
    so = dict(storage_options or {})
    sbx_url, mat_url = sbx_pair(url)
    fs, path = filesystem(sbx_url, so)
    if not fs.exists(path):
        raise MovieError(sbx_url, "no such file (the .mat names a Scanbox recording whose .sbx is missing)")
    info = _info(mat_url, sbx_url, so)
    sz = getattr(info, "sz", None)
    if sz is None or np.size(sz) != 2:
        raise MovieError(mat_url, "the Scanbox header has no frame size 'sz' (lines, pixels)")
    lines, pixels = (int(v) for v in np.ravel(sz))
    nch = check_count(sbx_url, "nchannels", nchannels, _nchannels(info), f"the .mat says {_nchannels(info)} channel(s)")
    npl = check_count(sbx_url, "nplanes", nplanes, _nplanes(info), f"the .mat says {_nplanes(info)} plane(s) "
                      "(volscan, otwave/etl_table)")
    frame_bytes = lines * pixels * nch * 2
    size = int(fs.size(path))
    if size < frame_bytes:
        raise MovieError(sbx_url, f"holds {size} bytes, less than one frame of {frame_bytes}")
    pages = StridedPages(sbx_url, size // frame_bytes, (lines, pixels * nch), np.dtype("<u2"), 0, frame_bytes, so)
    dx, dy = getattr(info, "dxcal", None), getattr(info, "dycal", None)
    dxy = (float(dy), float(dx)) if dx and dy else None
    rate = _frame_rate(info)
    return RecordingLayout(sbx_url, "scanbox", SampleChannels(pages, nch, invert=True), nplanes=npl,
                           frame_rate=rate, dxy=dxy, from_metadata=("nplanes", "nchannels"),
                           channel_names=tuple(f"PMT{i}" for i in range(nch)), files=(sbx_url,))
