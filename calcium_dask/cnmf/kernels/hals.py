"""Hierarchical alternating least squares (HALS) on sufficient statistics.

The CNMF model is ``Y ~ A C + b f`` with ``Y`` of shape (N pixels, T frames). Every update in
this module reads the movie only through products that can be summed over time chunks:

* traces: ``AtY = [A b]^T Y`` (K+nb, T) and ``AtA = [A b]^T [A b]``;
* footprints: ``YCt = Y [C; f]^T`` (N, K+nb), needed only on each footprint's search area,
  and ``CCt = [C; f] [C; f]^T``.

Components that do not interact (disjoint footprints for traces, disjoint search areas for
footprints) are updated together: their exact coordinate-descent updates are independent, so
a group update equals the sequential (Gauss-Seidel) sweep while being one vectorised step.

Pixel index convention: ``i = y * w + x`` (C order), so ``Y`` (T, h, w) reshapes to (T, N)
without a copy.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from .nnls import nnls_small

__all__ = [
    "dilate_support",
    "greedy_groups",
    "hals",
    "hals_background",
    "background_traces",
    "hals_footprints",
    "hals_traces",
]


def greedy_groups(overlap: np.ndarray | sp.spmatrix) -> list[np.ndarray]:
    """Split components into groups of mutually non-overlapping components.

    Parameters
    ----------
    overlap : (K, K) array or sparse matrix
        Non-zero where two components interact; the diagonal is ignored.

    Returns
    -------
    list of int arrays
        Disjoint groups covering ``range(K)``; no two members of a group overlap.

    Notes
    -----
    Greedy graph colouring in index order, as CaImAn's ``update_order_greedy``: each
    component takes the first group that holds none of its neighbours.
    """
    ov = sp.csr_matrix(overlap, dtype=bool)
    K = ov.shape[0]
    colors = np.full(K, -1, dtype=np.int64)
    for k in range(K):
        nbrs = ov.indices[ov.indptr[k] : ov.indptr[k + 1]]
        used = set(colors[nbrs].tolist())
        c = 0
        while c in used:
            c += 1
        colors[k] = c
    return [np.flatnonzero(colors == c) for c in range(colors.max() + 1)] if K else []


def hals_traces(
    AtY: np.ndarray,
    AtA: np.ndarray | sp.spmatrix,
    C: np.ndarray,
    *,
    iters: int = 2,
    groups: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Non-negative block coordinate descent on the traces.

    Parameters
    ----------
    AtY : (K, T) array
        ``A^T Y`` for all components (neurons and background).
    AtA : (K, K) array or sparse matrix
        ``A^T A``.
    C : (K, T) array
        Current traces (not modified).
    iters : int
        Sweeps over all components.
    groups : list of int arrays, optional
        Groups of non-overlapping components (default: from ``AtA``).

    Returns
    -------
    (K, T) float32 array
        Updated non-negative traces.
    """
    C = np.array(C, dtype=np.float32)
    dense = not sp.issparse(AtA)
    AtA = np.asarray(AtA, dtype=np.float32) if dense else sp.csr_matrix(AtA, dtype=np.float32)
    d = np.asarray(AtA.diagonal(), dtype=np.float32)
    d = np.where(d > 0, d, np.inf)  # a zero footprint gets a zero trace
    if groups is None:
        groups = greedy_groups(AtA)
    for _ in range(iters):
        for G in groups:
            grad = AtY[G] - (AtA[G] @ C)
            C[G] = np.maximum(C[G] + grad / d[G, None], 0)
    return C


def _entries(mask: sp.csc_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Row (pixel) and column (component) of each stored entry of ``mask``, CSC order."""
    cols = np.repeat(np.arange(mask.shape[1]), np.diff(mask.indptr))
    return mask.indices.astype(np.int64), cols


def _row_pairs(rows: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (e, e') of entries that share a row (pixel), diagonal included."""
    order = np.argsort(rows, kind="stable")
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.cumsum(counts) - counts
    m = counts[rows]
    first = np.repeat(np.arange(rows.size), m)
    offs = np.arange(first.size) - np.repeat(np.cumsum(m) - m, m)
    second = order[starts[rows[first]] + offs]
    return first, second


def _gather(M: np.ndarray | sp.spmatrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``M[rows, cols]`` for a dense or sparse matrix, as float64."""
    if rows.size == 0:
        return np.zeros(0)
    if sp.issparse(M):
        return np.asarray(sp.csr_matrix(M)[rows, cols], dtype=np.float64).ravel()
    return np.asarray(M, dtype=np.float64)[rows, cols]


def _group_sweeps(
    mask: sp.csc_matrix, rows: np.ndarray, cols: np.ndarray, CCt: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per group of disjoint search areas: its entries, and the pixel-sharing entry pairs.

    For an entry e = (i, k) of the group, the model's value at pixel i seen by component k
    is ``sum_e' A[e'] CCt[k', k]`` over the entries e' = (i, k') of the same pixel.
    """
    first, second = _row_pairs(rows, mask.shape[0])
    groups = greedy_groups(mask.T @ mask)
    color = np.empty(mask.shape[1], dtype=np.int64)
    for g, G in enumerate(groups):
        color[G] = g
    entry_color = color[cols]
    order = np.argsort(entry_color[first], kind="stable")
    first, second = first[order], second[order]
    bounds = np.searchsorted(entry_color[first], np.arange(len(groups) + 1))
    sweeps = []
    for g in range(len(groups)):
        own = np.flatnonzero(entry_color == g)
        f_, s_ = first[bounds[g] : bounds[g + 1]], second[bounds[g] : bounds[g + 1]]
        local = np.searchsorted(own, f_)
        sweeps.append((own, local, s_, CCt[cols[s_], cols[f_]]))
    return sweeps


def hals_footprints(
    YCt: np.ndarray | sp.spmatrix,
    CCt: np.ndarray,
    A: np.ndarray | sp.spmatrix,
    mask: np.ndarray | sp.spmatrix,
    *,
    b: np.ndarray | None = None,
    l1: np.ndarray | None = None,
    iters: int = 2,
    Yf: np.ndarray | None = None,
) -> sp.csc_matrix | tuple[sp.csc_matrix, np.ndarray]:
    """Non-negative HALS on footprints restricted to their search areas.

    Parameters
    ----------
    YCt : (N, K) array or sparse matrix
        ``Y C^T`` for the K neurons; only the entries inside ``mask`` are read.
    CCt : (K + nb, K + nb) array
        ``[C; f] [C; f]^T`` (neurons first, then background).
    A : (N, K) array or sparse matrix
        Current footprints; values outside ``mask`` are ignored.
    mask : (N, K) bool array or sparse matrix
        Search area of each footprint.
    b : (N, nb) array, optional
        Background footprints (their overlap with neurons enters via ``CCt``); held fixed
        unless ``Yf`` is given.
    l1 : (N,) array, optional
        Per-pixel L1 weight; the penalty on ``A[i, k]`` is ``l1[i] * sqrt(CCt[k, k])``.
    iters : int
        Sweeps over all footprints.
    Yf : (N, nb) array, optional
        ``Y f^T``: when given, the background footprints are free too, each pixel's ``b``
        re-solved exactly after every sweep over the footprints (a joint regression of each
        pixel on neurons and background, as CaImAn's), and ``(A, b)`` is returned.

    Returns
    -------
    (N, K) scipy.sparse.csc_matrix, float32
        Updated footprints, zero outside ``mask``; with ``Yf``, also the (N, nb) background.

    Notes
    -----
    With ``l1 = 0.5 * sn`` this is the coordinate-descent solution of CaImAn's per-pixel
    non-negative lasso (regression of each pixel on the unit-norm traces with penalty
    ``0.5 * sn``), Pnevmatikakis et al. 2016, doi:10.1016/j.neuron.2015.11.037.
    """
    mask = sp.csc_matrix(mask, dtype=bool)
    mask.eliminate_zeros()
    mask.sort_indices()
    N, K = mask.shape
    rows, cols = _entries(mask)
    CCt = np.asarray(CCt, dtype=np.float64)
    vals = _gather(A, rows, cols)
    target = _gather(YCt, rows, cols)
    dk = np.diag(CCt)[:K]
    if l1 is not None:
        target -= np.asarray(l1, dtype=np.float64)[rows] * np.sqrt(np.maximum(dk, 0))[cols]
    d = np.where(dk > 0, dk, np.inf)[cols]
    vals[np.isinf(d)] = 0.0  # a zero trace supports no footprint
    sweeps = _group_sweeps(mask, rows, cols, CCt)
    has_b = b is not None and b.shape[1] > 0
    free_b = has_b and Yf is not None
    for _ in range(iters):
        # the background's share of the gradient: sum_m b[i, m] CCt[K + m, k]
        tgt = target - _background_share(b, rows, cols, CCt, K) if has_b else target
        for own, local, second, weight in sweeps:
            contrib = np.bincount(local, weights=vals[second] * weight, minlength=own.size)
            vals[own] = np.maximum(vals[own] + (tgt[own] - contrib) / d[own], 0)
        if free_b:
            b = _pixel_background(Yf, CCt, K, vals, rows, cols, b)
    out = sp.csc_matrix((vals.astype(np.float32), mask.indices, mask.indptr), shape=(N, K))
    out.eliminate_zeros()
    return (out, b) if free_b else out


def _background_share(b, rows, cols, CCt, K) -> np.ndarray:
    return np.einsum("em,me->e", b[rows].astype(np.float64), CCt[K:, cols])


def _pixel_background(Yf, CCt, K, vals, rows, cols, b) -> np.ndarray:
    """Non-negative background of every pixel given the footprint entries (exact if nb <= 4)."""
    # (A CCt[:K, K:])[i, m] = sum over entries e = (i, k) of vals[e] CCt[k, K + m]
    AC = np.zeros(b.shape)
    np.add.at(AC, rows, vals[:, None] * CCt[cols, K:])
    return hals_background(np.asarray(Yf, np.float64) - AC, CCt[K:, K:], b)


def hals_background(
    Yf: np.ndarray, FFt: np.ndarray, b: np.ndarray, *, iters: int = 5
) -> np.ndarray:
    """Non-negative least-squares update of the background footprints.

    Parameters
    ----------
    Yf : (N, nb) array
        ``(Y - A C) f^T``, the data with neurons removed, times the background traces.
    FFt : (nb, nb) array
        ``f f^T``.
    b : (N, nb) array
        Current background footprints.
    iters : int
        HALS sweeps, used only when ``nb > 4``; for fewer components each pixel's
        problem is solved exactly (:func:`nnls_small`), which matters because background
        traces share a large constant and make ``f f^T`` ill-conditioned.

    Returns
    -------
    (N, nb) float32 array
    """
    if b.shape[1] <= 4:
        return nnls_small(FFt, np.asarray(Yf).T).T.astype(np.float32)
    b = np.array(b, dtype=np.float32)
    for _ in range(iters):
        for m in range(b.shape[1]):
            if FFt[m, m] <= 0:
                continue
            grad = Yf[:, m] - b @ FFt[:, m]
            b[:, m] = np.maximum(b[:, m] + grad / FFt[m, m], 0)
    return b


def background_traces(AtY_b: np.ndarray, AtA_bb: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Non-negative least-squares background traces given the neurons.

    Parameters
    ----------
    AtY_b : (nb, T) array
        ``b^T (Y - A C)``.
    AtA_bb : (nb, nb) array
        ``b^T b``.
    f : (nb, T) array
        Current traces (the start of the HALS sweeps when ``nb > 4``).

    Returns
    -------
    (nb, T) float32 array
    """
    if f.shape[0] <= 4:
        return nnls_small(AtA_bb, AtY_b).astype(np.float32)
    return hals_traces(AtY_b, AtA_bb, f, iters=10)


def dilate_support(
    A: np.ndarray | sp.spmatrix, dims: tuple[int, int], size: int = 3
) -> sp.csc_matrix:
    """Support of each footprint dilated by a ``size x size`` box (CaImAn's ``bSiz``).

    Parameters
    ----------
    A : (N, K) array or sparse matrix
    dims : (h, w)
    size : int

    Returns
    -------
    (N, K) bool csc matrix
    """
    K = A.shape[1]
    dense = A.toarray() if sp.issparse(A) else np.asarray(A)
    sup = (dense > 0).T.reshape(K, *dims)
    sup = ndimage.binary_dilation(sup, structure=np.ones((1, size, size), bool))
    return sp.csc_matrix(sup.reshape(K, dims[0] * dims[1]).T)


def hals(
    Y: np.ndarray,
    A: np.ndarray | sp.spmatrix,
    C: np.ndarray,
    b: np.ndarray,
    f: np.ndarray,
    *,
    maxIter: int = 5,
    bSiz: int = 3,
    inner: int = 2,
) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray, np.ndarray]:
    """HALS refinement of an initialisation, as CaImAn's ``initialization.hals``.

    Parameters
    ----------
    Y : (T, h, w) array
        Movie.
    A : (N, K) array or sparse matrix
        Footprints; each may grow only inside its support dilated by ``bSiz``.
    C : (K, T) array
    b : (N, nb) array
    f : (nb, T) array
    maxIter : int
        Outer iterations (traces, then footprints).
    bSiz : int
        Box size of the support dilation.
    inner : int
        Sweeps per inner update.

    Returns
    -------
    A : (N, K) csc float32, C : (K, T) float32, b : (N, nb) float32, f : (nb, T) float32

    Notes
    -----
    Cichocki & Phan 2009, doi:10.1587/transfun.E92.A.708.
    """
    T = Y.shape[0]
    dims = Y.shape[1:]
    Yr = Y.reshape(T, -1)
    K, nb = A.shape[1], b.shape[1]
    mask = dilate_support(A, dims, bSiz)
    A = sp.csc_matrix(A, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    Cf = np.vstack([C, f]).astype(np.float32)
    for _ in range(maxIter):
        Ab = np.hstack([A.toarray(), b])  # dense: one BLAS product, no copy of the movie
        AtY = (Yr @ Ab).T
        AtA = Ab.T @ Ab
        Cf = hals_traces(AtY, AtA, Cf, iters=inner)
        if nb:
            Cf[K:] = background_traces(AtY[K:] - AtA[K:, :K] @ Cf[:K], AtA[K:, K:], Cf[K:])
        YCt = Yr.T @ Cf.T
        CCt = Cf.astype(np.float64) @ Cf.T.astype(np.float64)
        A = hals_footprints(YCt[:, :K], CCt, A, mask, b=b, iters=inner)
        if nb:
            Yf = YCt[:, K:] - A @ CCt[:K, K:]
            b = hals_background(Yf, CCt[K:, K:], b, iters=inner)
    return A, Cf[:K], b, Cf[K:]
