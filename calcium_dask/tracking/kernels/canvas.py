"""The common frame of all sessions: the reference's field grown to hold every session's.

Aligning to one reference's field would leave out a cell that two other sessions see
outside it; the canvas is the bounding box of all the aligned fields (the union), in
reference pixels shifted by ``origin`` (canvas pixel ``c`` is reference point ``c - origin``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .align import Alignment

__all__ = ["union_canvas", "on_canvas"]


def _field_in_reference(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Corners of a session's field ``(4, 2)`` in reference coordinates (rigid part)."""
    H, W = shape
    q = np.array([[0, 0], [0, W - 1], [H - 1, 0], [H - 1, W - 1]], np.float64)
    L, t = affine[:, :2], affine[:, 2]
    return (q - t) @ np.linalg.inv(L).T


def union_canvas(alignments: Sequence[Alignment | None], shapes: Sequence[Sequence[int]],
                 reference_shape: Sequence[int], *, max_margin: float = 0.5
                 ) -> tuple[np.ndarray, tuple[int, int]]:
    """The smallest canvas holding every aligned field.

    Parameters
    ----------
    alignments : sequence of Alignment or None
        Each session's alignment to the reference (None: left out).
    shapes : sequence of (int, int)
        Each session's field shape.
    reference_shape : (int, int)
    max_margin : float
        Largest growth on each side, as a fraction of the reference's size.

    Returns
    -------
    origin : ndarray (2,) int64
        Canvas pixel of the reference's pixel (0, 0).
    shape : (int, int)
    """
    H, W = int(reference_shape[0]), int(reference_shape[1])
    lo, hi = np.zeros(2), np.array([H - 1, W - 1], np.float64)
    for al, shape in zip(alignments, shapes):
        if al is None:
            continue
        corners = _field_in_reference(al.affine, shape)
        extra = float(np.abs(al.flow).max()) if al.flow is not None else 0.0
        lo = np.minimum(lo, corners.min(0) - extra)
        hi = np.maximum(hi, corners.max(0) + extra)
    cap = max_margin * np.array([H, W], np.float64)
    before = np.ceil(np.clip(-lo, 0, cap)).astype(np.int64)
    after = np.ceil(np.clip(hi - np.array([H - 1, W - 1]), 0, cap)).astype(np.int64)
    return before, (int(H + before[0] + after[0]), int(W + before[1] + after[1]))


def on_canvas(alignment: Alignment, origin: np.ndarray, shape: Sequence[int],
              reference_shape: Sequence[int]) -> Alignment:
    """The same alignment with canvas pixels as its domain (the flow continued beyond the
    reference's field by its edge values)."""
    o = np.asarray(origin, np.float64)
    affine = np.column_stack([alignment.affine[:, :2], alignment.affine[:, 2] - alignment.affine[:, :2] @ o])
    flow = alignment.flow
    if flow is not None:
        H, W = int(reference_shape[0]), int(reference_shape[1])
        oy, ox = int(origin[0]), int(origin[1])
        pad = ((0, 0), (oy, int(shape[0]) - H - oy), (ox, int(shape[1]) - W - ox))
        flow = np.pad(flow, pad, mode="edge")
    return Alignment(affine, flow, alignment.corr, alignment.overlap, alignment.rigid_corr)
