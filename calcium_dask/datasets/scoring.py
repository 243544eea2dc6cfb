"""How good a result is against a simulation's ground truth (for the demo and benchmarks).

Footprints are compared as masks (pixels above 20% of each footprint's max), matched
one-to-one by the Hungarian algorithm on their intersection over union; traces by Pearson
correlation of matched pairs; shifts by RMSE after removing the template's constant offset;
a corrected mean image by its correlation with, and sharpness relative to, the motion-free mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment, minimize

__all__ = ["match_footprints", "score_sources", "score_shifts", "shift_images", "frame_offset",
           "score_mean_image", "crispness"]


def _masks(footprints: np.ndarray, frac: float = 0.2) -> np.ndarray:
    flat = footprints.reshape(len(footprints), int(np.prod(footprints.shape[1:]))).astype(np.float32)
    peak = flat.max(1, keepdims=True)
    return (flat > frac * peak) & (peak > 0)


def match_footprints(truth: np.ndarray, found: np.ndarray, *, iou_min: float = 0.3) -> np.ndarray:
    """Pairs ``(i_truth, j_found)`` matched one-to-one with IoU >= ``iou_min``.

    Parameters
    ----------
    truth, found : ndarray, shape (K, H, W)
    """
    if len(truth) == 0 or len(found) == 0:
        return np.zeros((0, 2), int)
    mt, mf = _masks(truth).astype(np.float32), _masks(found).astype(np.float32)
    inter = mt @ mf.T
    union = mt.sum(1)[:, None] + mf.sum(1)[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    rows, cols = linear_sum_assignment(-np.where(iou >= iou_min, iou, 0.0))
    keep = iou[rows, cols] >= iou_min
    return np.stack([rows[keep], cols[keep]], 1)


def _corr_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.divide((a * b).sum(1), den, out=np.zeros(len(a)), where=den > 0)


def score_sources(truth_fp: np.ndarray, truth_c: np.ndarray, found_fp: np.ndarray,
                  found_c: np.ndarray | None = None, *, snr: np.ndarray | None = None,
                  iou_min: float = 0.3) -> dict[str, Any]:
    """Precision, recall, F1, median trace correlation and recall per SNR tertile."""
    pairs = match_footprints(truth_fp, found_fp, iou_min=iou_min)
    tp, nt, nf = len(pairs), len(truth_fp), len(found_fp)
    precision, recall = (tp / nf if nf else 0.0), (tp / nt if nt else 0.0)
    out: dict[str, Any] = {"n_found": nf, "n_true": nt, "matched": tp, "precision": precision,
                           "recall": recall,
                           "f1": 2 * precision * recall / (precision + recall) if tp else 0.0}
    if found_c is not None and tp:
        out["trace_corr_median"] = float(np.median(_corr_rows(truth_c[pairs[:, 0]], found_c[pairs[:, 1]])))
    if snr is not None and nt:
        edges = np.quantile(snr, [1 / 3, 2 / 3])
        tertile = np.searchsorted(edges, snr)
        hit = np.zeros(nt, bool)
        hit[pairs[:, 0]] = True
        out["recall_by_snr_tertile"] = [float(hit[tertile == i].mean()) if np.any(tertile == i) else None
                                        for i in range(3)]
    return out


def shift_images(images: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Translate (K, H, W) images by a (dy, dx) offset (linear interpolation, zero fill)."""
    if not np.any(np.abs(offset) > 1e-3):
        return images
    return np.stack([ndimage.shift(im, offset, order=1, mode="constant") for im in images])


def frame_offset(found_shifts: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """Where the truth's motion-free frame sits in the corrected movie: mean(shift + displacement)."""
    return (np.asarray(found_shifts, np.float64) + np.asarray(displacement, np.float64)).mean(0)


def score_shifts(found: np.ndarray, displacement: np.ndarray) -> float:
    """RMSE (pixels) of applied shifts against minus the planted displacement, offset removed."""
    err = np.asarray(found, np.float64) + np.asarray(displacement, np.float64)
    err -= err.mean(0)
    return float(np.sqrt((err ** 2).sum(1).mean()))


def crispness(image: np.ndarray) -> float:
    """Frobenius norm of the gradient of the z-scored ``image`` (sharper images score higher)."""
    img = np.asarray(image, np.float64)
    gy, gx = np.gradient((img - img.mean()) / max(float(img.std()), 1e-12))
    return float(np.sqrt((gy ** 2 + gx ** 2).sum()))


def score_mean_image(mean: np.ndarray, clean_mean: np.ndarray, *, offset: Sequence[float] = (0.0, 0.0),
                     border: int = 10) -> dict[str, Any]:
    """A corrected movie's mean image against the motion-free mean.

    Correction registers the movie to a template, which sits at some global offset from
    the motion-free frame; the clean mean is first translated by the offset (cubic,
    started at ``offset``, refined to the best correlation) that registers it with
    ``mean``. Both images are compared on their interior (``border`` pixels off each side).

    Returns
    -------
    dict
        ``offset_yx``; ``corr`` (Pearson correlation); ``crispness_norm`` (:func:`crispness`
        of ``mean`` over that of the translated clean mean: below 1 is blurrier).
    """
    inner = (slice(border, -border or None),) * 2
    m = np.asarray(mean, np.float64)[inner].ravel()
    cm = np.asarray(clean_mean, np.float64)

    def moved(o: np.ndarray) -> np.ndarray:
        return ndimage.shift(cm, o, order=3, mode="nearest")[inner]

    def neg_corr(o: np.ndarray) -> float:
        return -float(np.corrcoef(m, moved(o).ravel())[0, 1])

    o0 = np.asarray(offset, np.float64)
    fit = minimize(neg_corr, o0, method="Nelder-Mead",
                   options=dict(xatol=0.005, fatol=1e-8, initial_simplex=[o0, o0 + [0.3, 0], o0 + [0, 0.3]]))
    best = np.asarray(fit.x if fit.fun <= neg_corr(o0) else o0, np.float64)
    ref = moved(best)
    return {"offset_yx": best.tolist(), "corr": -neg_corr(best),
            "crispness_norm": crispness(m.reshape(ref.shape)) / crispness(ref)}
