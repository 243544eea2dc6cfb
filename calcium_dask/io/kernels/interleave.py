"""Where the frames of one field of view lie in a recording that interleaves planes,
channels and mesoscope ROIs, and how pixel-interleaved frames (Scanbox, Nikon) unpack.

Conventions (ScanImage's, which suite2p and the other rigs share): frames are acquired
volume by volume; a volume holds ``nplanes`` frame slots (the last ``nflyback`` of them
taken while the z actuator flies back); a slot holds one page per saved channel when
channels are stored as pages (``nchannels`` consecutive pages, channel fastest). So
channel ``c`` of plane ``z`` in volume ``v`` is page ``(v * nplanes + z) * nchannels + c``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["plane_slots", "channel_pages", "read_runs", "mroi_rows", "canvas_positions",
           "unpack_samples"]


def plane_slots(start: int, stop: int, *, nplanes: int, plane: int) -> np.ndarray:
    """Frame slots (acquisition order) of volumes ``start:stop`` of ``plane``.

    >>> plane_slots(0, 3, nplanes=4, plane=1).tolist()
    [1, 5, 9]
    """
    if not 0 <= plane < nplanes:
        raise ValueError(f"plane {plane} out of range for {nplanes} planes")
    return np.arange(start, stop, dtype=np.int64) * nplanes + plane


def channel_pages(slots: np.ndarray, *, nchannels: int, channel: int) -> np.ndarray:
    """Pages of ``channel`` in the frame slots ``slots`` when channels are stored as pages.

    >>> channel_pages(np.array([1, 5]), nchannels=2, channel=1).tolist()
    [3, 11]
    """
    if not 0 <= channel < nchannels:
        raise ValueError(f"channel {channel} out of range for {nchannels} channels")
    return np.asarray(slots, dtype=np.int64) * nchannels + channel


def read_runs(indices: np.ndarray, *, max_waste: float = 2.0) -> list[tuple[int, int]]:
    """Group increasing ``indices`` into ``[first, end)`` runs, each read in one piece.

    A run grows while it spans at most ``max_waste`` times the items it holds, so that
    densely interleaved pages (two channels) are read in one request and sparse ones
    (eight pages per volume) one by one, never reading much more than needed.

    >>> read_runs(np.array([0, 2, 4, 6]))
    [(0, 7)]
    >>> read_runs(np.array([0, 8, 16]))
    [(0, 1), (8, 9), (16, 17)]
    """
    idx = np.asarray(indices, dtype=np.int64).tolist()
    if any(b <= a for a, b in zip(idx, idx[1:])):
        raise ValueError("indices must be strictly increasing")
    runs: list[tuple[int, int]] = []
    i = 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and idx[j + 1] + 1 - idx[i] <= max_waste * (j + 2 - i):
            j += 1
        runs.append((idx[i], idx[j] + 1))
        i = j + 1
    return runs


def mroi_rows(heights: Sequence[int], page_height: int) -> list[tuple[int, int]]:
    """Lines ``[y0, y1)`` of each ROI of a mesoscope page.

    ScanImage stacks the ROIs of a multi-ROI frame top to bottom in the order of its
    ``RoiGroups`` list, separated by the lines scanned while the beam flies from one ROI
    to the next (the same number between every pair).

    >>> mroi_rows([10, 10, 5], 31)
    [(0, 10), (13, 23), (26, 31)]
    """
    heights = [int(h) for h in heights]
    if not heights or min(heights) <= 0:
        raise ValueError(f"ROI heights must be positive, got {heights}")
    spare = page_height - sum(heights)
    n_gaps = len(heights) - 1
    if spare < 0 or (n_gaps == 0 and spare != 0) or (n_gaps and spare % n_gaps):
        raise ValueError(f"ROIs of {heights} lines do not tile a page of {page_height} lines "
                         "with equal fly-to gaps")
    gap = spare // n_gaps if n_gaps else 0
    rows, y = [], 0
    for h in heights:
        rows.append((y, y + h))
        y += h + gap
    return rows


def canvas_positions(centers_xy: np.ndarray, sizes_xy: np.ndarray, pixels_xy: np.ndarray) -> np.ndarray:
    """(y, x) pixel position of each ROI's top-left corner on one canvas.

    ROI geometry comes in scan angles (ScanImage's ``centerXY``, ``sizeXY``) with the
    pixel resolution of each ROI (``pixelResolutionXY``); the canvas scale is the median
    pixels per degree and its origin the top-left-most corner.

    >>> canvas_positions(np.array([[0.5, 0.5], [1.5, 0.5]]), np.ones((2, 2)), np.full((2, 2), 10)).tolist()
    [[0.0, 0.0], [0.0, 10.0]]
    """
    centers, sizes = np.asarray(centers_xy, float), np.asarray(sizes_xy, float)
    pixels = np.asarray(pixels_xy, float)
    if np.any(sizes <= 0):
        raise ValueError("ROI sizes must be positive")
    scale = np.median(pixels / sizes, axis=0)
    corners = (centers - sizes / 2) * scale
    corners -= corners.min(axis=0)
    return np.round(corners[:, ::-1], 6)


def unpack_samples(raw: np.ndarray, *, nchannels: int, channel: int, invert: bool = False) -> np.ndarray:
    """One channel of frames whose channels are interleaved pixel by pixel.

    Parameters
    ----------
    raw : ndarray (n, h, w * nchannels)
        Rows as stored: for each pixel, one value per channel.
    invert : bool
        Values stored as ``max - value`` (Scanbox stores ``65535 - x`` in uint16).

    >>> unpack_samples(np.array([[[1, 2, 3, 4]]], np.uint16), nchannels=2, channel=1, invert=True).tolist()
    [[[65533, 65531]]]
    """
    if not 0 <= channel < nchannels:
        raise ValueError(f"channel {channel} out of range for {nchannels} channels")
    n, h, w = raw.shape
    if w % nchannels:
        raise ValueError(f"rows of {w} values do not hold {nchannels} channels")
    out = raw.reshape(n, h, w // nchannels, nchannels)[..., channel]
    if invert:
        return np.iinfo(raw.dtype).max - out
    return np.ascontiguousarray(out)
