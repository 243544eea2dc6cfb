"""Crops for the shape classifier: a cell looks the same wherever it lies in the field."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from calcium_dask.evaluation.kernels._shape_features import crop_image

H = W = 64
GSIG = 4.0


def _cell(cy: float, cx: float, ring: bool = False) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    d = np.hypot(yy - cy, xx - cx)
    img = np.exp(-((d - 3.0) ** 2) / 2.0) if ring else np.exp(-(d**2) / (2 * 2.5**2))
    return np.where(d <= 6.0, img, 0.0)


def _crop(img: np.ndarray) -> np.ndarray:
    idx = np.flatnonzero(img > 0)
    return crop_image(idx, img.ravel()[idx], (H, W), gSig=GSIG, size=24)


def _lobes(crop: np.ndarray) -> int:
    return ndimage.label(crop > 0.2)[1]


def test_a_cell_near_the_edge_is_cropped_as_inside_the_field():
    """The crop window crosses the edge but the cell does not: nothing is mirrored in (a
    mirror at the edge made a second cell of it)."""
    inside = _crop(_cell(32, 32))
    for cy, cx in ((7, 32), (32, 7), (7, 56), (56, 56)):
        np.testing.assert_allclose(_crop(_cell(cy, cx)), inside, atol=1e-6)


@pytest.mark.parametrize("ring, cy, cx, least", [
    (False, 0, 32, 0.97), (False, 1, 32, 0.97), (False, 2, 32, 0.99), (False, 32, 0, 0.97),
    (False, 61, 61, 0.99), (True, 3, 32, 0.98), (True, 4, 32, 0.99),
    # a ring cut near its centre leaves an arc whose smoothed peak lies inward of the centre:
    # completed about that point it is a smaller ring (mirroring at the edge gave 0.41-0.74)
    (True, 0, 32, 0.7), (True, 2, 32, 0.9), (True, 61, 61, 0.85)])
def test_a_cell_cut_by_the_edge_is_completed_about_its_peak(ring, cy, cx, least):
    whole = _crop(_cell(32, 32, ring))
    cut = _crop(_cell(cy, cx, ring))
    assert _lobes(cut) == _lobes(whole) == 1
    assert np.corrcoef(cut.ravel(), whole.ravel())[0, 1] > least


def test_a_cell_grazing_the_edge_keeps_one_lobe():
    whole = _crop(_cell(32, 32))
    grazing = _crop(_cell(5, 32))  # its support reaches row 0, its peak is 5 rows in
    assert _lobes(grazing) == 1
    assert np.corrcoef(grazing.ravel(), whole.ravel())[0, 1] > 0.99
