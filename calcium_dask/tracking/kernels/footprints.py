"""Footprints as sparse matrices: warping them into the reference frame, their centroids,
masks and the overlap of candidate pairs.

A session's footprints are a ``(pixels, units)`` sparse matrix with pixels in C order
(``y * W + x``), one column per unit, as :func:`calcium_dask.evaluation.orchestrate.footprints_matrix`
builds it; nothing here makes a dense ``(units, H, W)`` array.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["interpolation_matrix", "warp_footprints", "centroids", "masks", "pair_overlap", "normalise_columns"]


def interpolation_matrix(coords: np.ndarray, shape: Sequence[int]) -> sp.csr_matrix:
    """Bilinear resampling as a sparse matrix: ``(W @ image.ravel())[p] = image(coords[:, p])``.

    Parameters
    ----------
    coords : ndarray (2, H, W)
        For each pixel of the output grid, the ``(y, x)`` position to read in the input.
    shape : (int, int)
        The input image's ``(Hin, Win)``.

    Returns
    -------
    scipy.sparse.csr_matrix (H * W, Hin * Win) float32
        Up to 4 weights per row; rows of positions outside the input are empty.
    """
    Hin, Win = int(shape[0]), int(shape[1])
    y, x = (np.asarray(c, np.float64).ravel() for c in coords)
    y0, x0 = np.floor(y), np.floor(x)
    fy, fx = y - y0, x - x0
    rows, cols, vals = [], [], []
    n = y.size
    for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < Hin) & (xx >= 0) & (xx < Win) & (w > 0)
        rows.append(np.flatnonzero(ok))
        cols.append((yy[ok] * Win + xx[ok]).astype(np.int64))
        vals.append(w[ok].astype(np.float32))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n, Hin * Win))


def warp_footprints(A: sp.spmatrix, coords: np.ndarray, shape: Sequence[int]) -> sp.csc_matrix:
    """Footprints of a session resampled on the reference grid.

    Parameters
    ----------
    A : sparse (Hin * Win, K)
        The session's footprints, pixels in C order.
    coords : ndarray (2, H, W)
        The session's ``(y, x)`` position of each reference pixel (``Alignment.coordinates``).
    shape : (int, int)
        The session's image shape ``(Hin, Win)``.

    Returns
    -------
    scipy.sparse.csc_matrix (H * W, K) float32
        A unit whose footprint leaves the session's field is cut at its edge.
    """
    out = (interpolation_matrix(coords, shape) @ sp.csc_matrix(A, dtype=np.float32)).tocsc()
    out.eliminate_zeros()
    return out


def _column_max(A: sp.csc_matrix) -> np.ndarray:
    return np.asarray(A.max(axis=0).toarray()).ravel() if A.shape[1] else np.zeros(0, np.float32)


def normalise_columns(A: sp.spmatrix) -> sp.csc_matrix:
    """Each footprint divided by its maximum (empty ones left at zero)."""
    A = sp.csc_matrix(A, dtype=np.float32)
    peak = _column_max(A)
    return (A @ sp.diags(np.where(peak > 0, 1.0 / np.where(peak > 0, peak, 1.0), 0.0).astype(np.float32))).tocsc()


def centroids(A: sp.spmatrix, shape: Sequence[int]) -> np.ndarray:
    """Weighted centroid ``(y, x)`` of each footprint (its positive part); NaN for an empty one.

    Returns
    -------
    ndarray (K, 2) float64
    """
    A = sp.csc_matrix(A)
    A = A.multiply(A > 0).tocsc()
    W = int(shape[1])
    pix = np.arange(A.shape[0])
    yx = np.stack([pix // W, pix % W], 1).astype(np.float64)
    total = np.asarray(A.sum(axis=0)).ravel().astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((A.T @ yx)) / total[:, None]


def masks(A: sp.spmatrix, thr: float) -> sp.csc_matrix:
    """Binary masks: each footprint's pixels above ``thr`` times its maximum (float32 0/1)."""
    A = sp.csc_matrix(A, dtype=np.float32)
    peak = np.repeat(_column_max(A), np.diff(A.indptr))
    keep = (A.data > thr * peak) & (A.data > 0)
    M = sp.csc_matrix((keep.astype(np.float32), A.indices.copy(), A.indptr.copy()), shape=A.shape)
    M.eliminate_zeros()
    return M


def pair_overlap(Aa: sp.csc_matrix, Ab: sp.csc_matrix, i: np.ndarray, j: np.ndarray, *,
                 kind: str = "jaccard") -> np.ndarray:
    """Overlap of the footprint pairs ``(Aa[:, i[n]], Ab[:, j[n]])``, only for those pairs.

    Parameters
    ----------
    Aa, Ab : sparse (P, Ka), (P, Kb)
        Masks (``kind='jaccard'``: intersection over union of the 0/1 columns) or
        footprints (``kind='cosine'``: cosine similarity of the columns).
    i, j : ndarray (n,) int
        The candidate pairs.

    Returns
    -------
    ndarray (n,) float64 in [0, 1]
    """
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    if i.size == 0:
        return np.zeros(0)
    a, b = sp.csc_matrix(Aa)[:, i], sp.csc_matrix(Ab)[:, j]
    inter = np.asarray(a.multiply(b).sum(axis=0)).ravel().astype(np.float64)
    if kind == "jaccard":
        size_a = np.asarray(a.sum(axis=0)).ravel()
        size_b = np.asarray(b.sum(axis=0)).ravel()
        union = size_a + size_b - inter
        return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    if kind == "cosine":
        na = np.sqrt(np.asarray(a.multiply(a).sum(axis=0)).ravel())
        nb = np.sqrt(np.asarray(b.multiply(b).sum(axis=0)).ravel())
        den = na * nb
        return np.clip(np.divide(inter, den, out=np.zeros_like(inter), where=den > 0), 0.0, 1.0)
    raise ValueError(f"kind must be 'jaccard' or 'cosine', got {kind!r}")
