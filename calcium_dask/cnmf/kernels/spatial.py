"""Spatial update of CNMF footprints from sufficient statistics.

The update reads the movie only through ``YCt = Y [C; f]^T`` (N, K+nb) and
``CCt = [C; f] [C; f]^T``, so the same code serves one patch (``YCt`` dense) and the whole
field of view (``YCt`` sparse, its neuron columns computed only on the search areas returned
by :func:`search_area`, summed over time chunks).

Morphology (search areas, thresholding, connected components) runs on a stack of
equal-sized boxes, one per footprint, so that every step is a single vectorised call.
Pixel index convention: ``i = y * w + x`` for an (h, w) field of view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from .hals import hals_background, hals_footprints

__all__ = [
    "SpatialResult",
    "masked_YCt",
    "search_area",
    "threshold_footprints",
    "update_spatial",
]

_MAX_STACK = 2**25  # elements per stack chunk (128 MB of float32)


def _stacked(
    A: np.ndarray | sp.spmatrix, dims: tuple[int, int], pad: int, fn: Callable
) -> sp.csc_matrix:
    """Apply ``fn`` to every footprint inside its bounding box grown by ``pad`` pixels.

    ``fn`` maps a (k, bh, bw) stack to a stack of the same shape (values or booleans); the
    boxes are clipped to the field of view, so ``fn`` sees the image border where it is.
    """
    A = sp.csc_matrix(A)
    A.sort_indices()
    h, w = dims
    K = A.shape[1]
    y, x = np.divmod(A.indices, w)
    counts = np.diff(A.indptr)
    full = counts > 0
    ymin, ymax, xmin, xmax = (np.zeros(K, int) for _ in range(4))
    starts = A.indptr[:-1][full]
    if full.any():
        ymin[full], ymax[full] = np.minimum.reduceat(y, starts), np.maximum.reduceat(y, starts)
        xmin[full], xmax[full] = np.minimum.reduceat(x, starts), np.maximum.reduceat(x, starts)
    bh = int(min(h, (ymax - ymin).max(initial=0) + 1 + 2 * pad))
    bw = int(min(w, (xmax - xmin).max(initial=0) + 1 + 2 * pad))
    # centre each component's extent in its box, then clip the box into the image
    oy = np.clip((ymin + ymax + 1 - bh) // 2, 0, h - bh)
    ox = np.clip((xmin + xmax + 1 - bw) // 2, 0, w - bw)
    cols = np.repeat(np.arange(K), counts)
    out_r, out_c, out_v = [], [], []
    step = max(1, _MAX_STACK // (bh * bw))
    for k0 in range(0, K, step):
        k1 = min(K, k0 + step)
        sel = slice(A.indptr[k0], A.indptr[k1])
        stack = np.zeros((k1 - k0, bh, bw), np.float32)
        c = cols[sel]
        stack[c - k0, y[sel] - oy[c], x[sel] - ox[c]] = A.data[sel]
        res = fn(stack)
        kk, yy, xx = np.nonzero(res)
        out_r.append((yy + oy[kk + k0]) * w + xx + ox[kk + k0])
        out_c.append(kk + k0)
        out_v.append(res[kk, yy, xx])
    r, c, v = (np.concatenate(z) if z else np.zeros(0) for z in (out_r, out_c, out_v))
    return sp.csc_matrix((v, (r, c)), shape=A.shape)


def _diamond(radius: int) -> np.ndarray:
    """(1, 2r+1, 2r+1) city-block ball, CaImAn's default ``expandCore`` for radius 2."""
    t = np.arange(-radius, radius + 1)
    return (np.abs(t)[:, None] + np.abs(t)[None, :] <= radius)[None]


def search_area(
    A: np.ndarray | sp.spmatrix, dims: tuple[int, int], *, expand: int = 2
) -> sp.csc_matrix:
    """Pixels where each footprint may be non-zero after the next spatial update.

    Parameters
    ----------
    A : (N, K) array or sparse matrix
        Current footprints.
    dims : (h, w)
        Field of view.
    expand : int
        City-block radius of the dilation of each footprint's support.

    Returns
    -------
    (N, K) bool csc matrix

    Notes
    -----
    CaImAn's ``determine_search_location`` with ``method='dilate'`` (its default): the
    support dilated by a diamond of radius 2. Its ``'ellipse'`` method (an ellipse fitted to
    the footprint's second moments, scaled by ``dist``) is not implemented.
    """
    se = _diamond(expand)
    return _stacked(sp.csc_matrix(A) != 0, dims, expand,
                    lambda s: ndimage.binary_dilation(s > 0, structure=se)).astype(bool)


def masked_YCt(Yr: np.ndarray, C: np.ndarray, mask: sp.spmatrix) -> sp.csc_matrix:
    """``Y C^T`` computed only on the entries of ``mask`` (one time chunk of a refit).

    Parameters
    ----------
    Yr : (T, N) array
        A chunk of frames, pixel index ``y * w + x``.
    C : (K, T) array
        The traces over the same frames.
    mask : (N, K) bool sparse matrix
        Search areas (:func:`search_area`).

    Returns
    -------
    (N, K) float32 csc matrix with the pattern of ``mask``; sums of these over time chunks
    give the neuron columns of the ``YCt`` that :func:`update_spatial` needs.
    """
    mask = sp.csc_matrix(mask, dtype=bool)
    mask.sort_indices()
    Yt = np.ascontiguousarray(np.asarray(Yr, dtype=np.float32).T)  # pixel rows gather fast
    C = np.asarray(C, dtype=np.float32)
    vals = np.empty(mask.nnz, np.float32)
    for k in range(mask.shape[1]):
        e = slice(mask.indptr[k], mask.indptr[k + 1])
        vals[e] = Yt[mask.indices[e]] @ C[k]
    return sp.csc_matrix((vals, mask.indices, mask.indptr), shape=mask.shape)


def _nrg_mask(M: np.ndarray, nrgthr: float) -> np.ndarray:
    """Pixels holding the top ``nrgthr`` fraction of each image's energy."""
    K = len(M)
    srt = -np.sort(-M.reshape(K, -1), axis=1)
    cs = np.cumsum(srt.astype(np.float64) ** 2, axis=1)
    n = (cs < nrgthr * cs[:, -1:]).sum(1)
    thr = srt[np.arange(K), np.maximum(n - 1, 0)]
    return (M >= thr[:, None, None]) & (n > 0)[:, None, None] & (M > 0)


def _largest_cc(S: np.ndarray, BW: np.ndarray, ss: np.ndarray) -> np.ndarray:
    """Keep, in each image of the stack, the connected piece of ``BW`` with most energy."""
    lab, n = ndimage.label(BW, structure=ss[None] * np.array([0, 1, 0])[:, None, None])
    if n == 0:
        return BW
    energy = np.bincount(lab.ravel(), weights=(S.astype(np.float64) ** 2).ravel(), minlength=n + 1)
    owner = np.zeros(n + 1, np.int64)
    kk = np.nonzero(lab)[0]
    owner[lab[lab > 0]] = kk
    labels = np.arange(1, n + 1)
    order = np.lexsort((energy[1:], owner[1:]))  # by component, then energy
    last = np.r_[owner[1:][order][1:] != owner[1:][order][:-1], True]
    best = np.zeros(n + 1, bool)
    best[labels[order][last]] = True
    return best[lab]


def _threshold_stack(S, thr_method, maxthr, nrgthr, medw, extract_cc, se, ss):
    M = ndimage.median_filter(S, size=(1, medw, medw), mode="constant") if medw > 1 else S
    if thr_method == "max":
        BW = M > maxthr * M.max(axis=(1, 2), keepdims=True)
    else:
        BW = _nrg_mask(M, nrgthr)
    if se is not None:
        se3 = se[None].astype(bool)
        BW = ndimage.binary_erosion(ndimage.binary_dilation(BW, se3), se3, border_value=1)
    if extract_cc:
        BW = _largest_cc(S, BW, ss)
    return np.where(BW, S, 0)


def threshold_footprints(
    A: np.ndarray | sp.spmatrix,
    dims: tuple[int, int],
    *,
    thr_method: Literal["nrg", "max"] = "nrg",
    maxthr: float = 0.1,
    nrgthr: float = 0.9999,
    medw: int = 3,
    extract_cc: bool = True,
    se: np.ndarray | None = np.ones((3, 3), bool),
    ss: np.ndarray = np.ones((3, 3), bool),
) -> sp.csc_matrix:
    """Clean footprints as CaImAn's ``threshold_components``.

    Each footprint is median filtered (``medw x medw``; used only to choose pixels), its
    support is the set of pixels holding ``nrgthr`` of the filtered footprint's energy
    (``'nrg'``) or above ``maxthr`` times its maximum (``'max'``), closed with ``se``, and
    reduced to the connected piece (connectivity ``ss``) of largest energy; the footprint
    keeps its original values on that support.

    Parameters
    ----------
    A : (N, K) array or sparse matrix
    dims : (h, w)
    thr_method, maxthr, nrgthr, medw, extract_cc, se, ss
        As above; ``se=None`` skips the closing.

    Returns
    -------
    (N, K) float32 csc matrix
    """
    pad = max(medw // 2, 1 if se is None else se.shape[0] // 2) + 1
    def fn(stack: np.ndarray) -> np.ndarray:
        return _threshold_stack(stack, thr_method, maxthr, nrgthr, medw, extract_cc, se, ss)

    out = _stacked(A, dims, pad, fn).astype(np.float32)
    out.eliminate_zeros()
    return out


@dataclass
class SpatialResult:
    """Result of :func:`update_spatial`.

    Attributes
    ----------
    A : (N, K') csc float32
        Updated footprints of the kept components (unit L2 norm if normalised).
    b : (N, nb) float32
        Updated background footprints.
    keep : (K',) int
        Indices, among the input components, of the components that survived.
    norms : (K',) float
        Norms divided out of ``A``: multiply the kept traces by them, ``C[keep] * norms``,
        to keep ``A @ C`` unchanged.
    """

    A: sp.csc_matrix
    b: np.ndarray
    keep: np.ndarray
    norms: np.ndarray

    def scale_traces(self, C: np.ndarray) -> np.ndarray:
        """The traces that go with the returned footprints: ``C[keep] * norms[:, None]``."""
        return (C[self.keep] * self.norms[:, None]).astype(np.float32)


def update_spatial(
    YCt: np.ndarray | sp.spmatrix,
    CCt: np.ndarray,
    A: np.ndarray | sp.spmatrix,
    b: np.ndarray,
    *,
    dims: tuple[int, int],
    sn: np.ndarray | None = None,
    mask: sp.spmatrix | None = None,
    expand: int = 2,
    iters: int = 5,
    l1_weight: float = 0.5,
    thr_method: Literal["nrg", "max"] = "nrg",
    maxthr: float = 0.1,
    nrgthr: float = 0.9999,
    medw: int = 3,
    extract_cc: bool = True,
    update_background: bool = True,
    bg_iters: int = 5,
    normalize: bool = True,
) -> SpatialResult:
    """Update footprints and background given the traces (CaImAn's spatial update).

    Parameters
    ----------
    YCt : (N, K + nb) array or sparse matrix
        ``Y [C; f]^T``. The neuron columns are read only inside ``mask``; background columns
        must be complete.
    CCt : (K + nb, K + nb) array
        ``[C; f] [C; f]^T``.
    A : (N, K) array or sparse matrix
        Current footprints.
    b : (N, nb) array
        Current background footprints.
    dims : (h, w)
        Field of view, ``N = h * w``.
    sn : (N,) array, optional
        Pixel noise; gives the L1 penalty ``l1_weight * sn``. None: no penalty.
    mask : (N, K) bool sparse, optional
        Search areas (default: ``search_area(A, dims, expand=expand)``).
    expand, iters, l1_weight
        Search-area radius, HALS sweeps, penalty factor.
    thr_method, maxthr, nrgthr, medw, extract_cc
        Passed to :func:`threshold_footprints`.
    update_background, bg_iters
        Update ``b`` too: solved per pixel jointly with the footprints (each HALS sweep),
        then once more after thresholding (HALS on ``Y f^T - A C f^T``, ``bg_iters`` sweeps
        when ``nb > 4``, exact otherwise). False holds ``b`` fixed.
    normalize : bool
        Scale footprints to unit L2 norm (see ``SpatialResult.norms``).

    Returns
    -------
    SpatialResult

    Notes
    -----
    Non-negative lasso regression of each pixel on the traces of the components whose search
    area holds it (Pnevmatikakis et al. 2016, doi:10.1016/j.neuron.2015.11.037), solved by
    HALS (Cichocki & Phan 2009, doi:10.1587/transfun.E92.A.708) warm-started at ``A``.
    """
    K = A.shape[1]
    b = np.asarray(b, dtype=np.float32)
    if mask is None:
        mask = search_area(A, dims, expand=expand)
    YCt_n = YCt[:, :K] if K else np.zeros((A.shape[0], 0), np.float32)
    l1 = None if sn is None else l1_weight * np.asarray(sn, dtype=np.float64)
    Ybg = YCt[:, K:]
    Ybg = Ybg.toarray() if sp.issparse(Ybg) else np.asarray(Ybg)
    if update_background and b.shape[1]:
        # each pixel regressed on neurons and background together: an error in the starting
        # background goes into b, not into the footprints
        A1, b = hals_footprints(YCt_n, CCt, A, mask, b=b, l1=l1, iters=iters, Yf=Ybg)
        b = b.astype(np.float32)
    else:
        A1 = hals_footprints(YCt_n, CCt, A, mask, b=b, l1=l1, iters=iters)
    A1 = threshold_footprints(A1, dims, thr_method=thr_method, maxthr=maxthr,
                              nrgthr=nrgthr, medw=medw, extract_cc=extract_cc)
    if update_background and b.shape[1]:
        Yf = Ybg - A1 @ CCt[:K, K:]
        b = hals_background(Yf, CCt[K:, K:], b, iters=bg_iters)
    norms = np.sqrt(np.asarray(A1.multiply(A1).sum(0), dtype=np.float64).ravel())
    keep = np.flatnonzero(norms > 0)
    norms = norms[keep] if normalize else np.ones(keep.size)
    A1 = (A1[:, keep] @ sp.diags(1.0 / norms)).astype(np.float32).tocsc()
    return SpatialResult(A1, b, keep, norms)
