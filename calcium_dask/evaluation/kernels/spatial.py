"""Spatial consistency ``r_value`` of components (CaImAn's ``classify_components_ep``),
as a reduction over time chunks of the movie.

The r_value of a component is the Pearson correlation, over the pixels of its
footprint's support, between the footprint and the mean movie frame at the frames where
the component (and no overlapping component) is active. The mean frame is a weighted sum
of frames, so it is computed chunk by chunk and summed; the movie is never in memory:

>>> weights = active_frames(C, A=A, tB=tB, tA=tA)        # doctest: +SKIP
>>> win = footprint_window(A, dims)                       # doctest: +SKIP
>>> vals = sum(window_sums(Y[t0:t1], weights[:, t0:t1], win)
...            for t0, t1 in chunks)                      # doctest: +SKIP
>>> r = r_values(A, vals, win)                            # doctest: +SKIP

Background: CaImAn's ``classify_components_ep`` receives ``b`` and ``f`` but does not use
them, so its mean frame keeps the background; :func:`r_values` does the same by default.
Passing ``background=background_window_means(b, f, weights, win)`` subtracts the
background model averaged over the same frames, which keeps background-only footprints
near r = 0 (a textured background can otherwise correlate with a blob by chance).

References: Giovannucci et al. 2019, eLife 8:e38173, doi:10.7554/eLife.38173.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from .activity import active_frames, peak_window

__all__ = ["FootprintWindows", "active_frames", "background_window_means",
           "footprint_window", "peak_window", "r_values", "r_values_in_memory",
           "window_sums"]


@dataclass(frozen=True)
class FootprintWindows:
    """The pixels on which each component's r_value is computed.

    Attributes
    ----------
    indptr : ndarray (K + 1,) int64
        Component ``k`` owns entries ``indptr[k]:indptr[k + 1]``.
    pixels : ndarray (nnz,) int64
        Flat pixel index ``y * W + x``, increasing within each component.
    values : ndarray (nnz,) float64
        The footprint at those pixels (0 on pixels added by dilation).
    bbox : ndarray (K, 4) int64
        ``(y0, y1, x0, x1)``, half-open bounding box of each support (all 0 if empty).
    dims : (int, int)
        ``(H, W)``.
    """

    indptr: np.ndarray
    pixels: np.ndarray
    values: np.ndarray
    bbox: np.ndarray
    dims: tuple[int, int]

    @property
    def K(self) -> int:
        """Number of footprints."""
        return len(self.indptr) - 1

    @property
    def sizes(self) -> np.ndarray:
        """Number of pixels of each component, (K,)."""
        return np.diff(self.indptr)

    @property
    def component(self) -> np.ndarray:
        """Component of each entry, (nnz,)."""
        return np.repeat(np.arange(self.K), self.sizes)


def footprint_window(A: sp.spmatrix, dims: tuple[int, int], *,
                     dilate: int = 0) -> FootprintWindows:
    """Pixels of each footprint's support (``A[:, k] > 0``), optionally dilated.

    Parameters
    ----------
    A : sparse (N, K)
        Footprints, pixel index ``y * W + x``.
    dims : (int, int)
        ``(H, W)``.
    dilate : int
        Grow each support by this many pixels (3x3 steps); CaImAn uses 0.

    Returns
    -------
    FootprintWindows
    """
    H, W = (int(d) for d in dims)
    A = sp.csc_matrix(A, dtype=np.float64)
    if A.shape[0] != H * W:
        raise ValueError(f"A has {A.shape[0]} pixels but dims {dims} hold {H * W}")
    A.sort_indices()
    pix_list, val_list = [], []
    for k in range(A.shape[1]):
        sl = slice(A.indptr[k], A.indptr[k + 1])
        idx, val = A.indices[sl].astype(np.int64), A.data[sl]
        ok = np.isfinite(val) & (val > 0)
        idx, val = idx[ok], val[ok]
        if dilate > 0 and idx.size:
            idx, val = _dilate_support(idx, val, (H, W), int(dilate))
        pix_list.append(idx)
        val_list.append(val)
    sizes = np.array([p.size for p in pix_list], np.int64)
    indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    pixels = np.concatenate(pix_list) if pix_list else np.zeros(0, np.int64)
    values = np.concatenate(val_list) if val_list else np.zeros(0)
    return FootprintWindows(indptr=indptr, pixels=pixels, values=values,
                            bbox=_bboxes(pixels, indptr, W), dims=(H, W))


def _dilate_support(idx: np.ndarray, val: np.ndarray, dims: tuple[int, int],
                    n: int) -> tuple[np.ndarray, np.ndarray]:
    H, W = dims
    y, x = np.divmod(idx, W)
    y0, x0 = max(0, y.min() - n), max(0, x.min() - n)
    y1, x1 = min(H, y.max() + n + 1), min(W, x.max() + n + 1)
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    mask[y - y0, x - x0] = True
    mask = ndimage.binary_dilation(mask, np.ones((3, 3), bool), iterations=n)
    yy, xx = np.nonzero(mask)
    new = (yy + y0) * W + (xx + x0)
    out = np.zeros(new.size)
    out[np.searchsorted(new, idx)] = val
    return new, out


def _bboxes(pixels: np.ndarray, indptr: np.ndarray, W: int) -> np.ndarray:
    K = len(indptr) - 1
    box = np.zeros((K, 4), np.int64)
    y, x = np.divmod(pixels, W)
    for k in range(K):
        s, e = indptr[k], indptr[k + 1]
        if e > s:
            box[k] = y[s:e].min(), y[s:e].max() + 1, x[s:e].min(), x[s:e].max() + 1
    return box


def window_sums(Y_chunk: np.ndarray, weights_chunk: sp.spmatrix | np.ndarray,
                windows: FootprintWindows) -> np.ndarray:
    """Weighted sum of a chunk's frames on each component's pixels.

    ``vals[e] = sum_t weights_chunk[k, t] * Y_chunk[t, pixels[e]]`` for each entry ``e``
    of component ``k``. Summed over all time chunks this is the mean active frame of
    each component on its support (the weights of :func:`active_frames`). NaN pixels
    (e.g. motion-correction borders) count as 0.

    Parameters
    ----------
    Y_chunk : ndarray (Tc, H, W)
        Frames ``t0:t1`` of the movie.
    weights_chunk : sparse or ndarray (K, Tc)
        Columns ``t0:t1`` of the weights.
    windows : FootprintWindows

    Returns
    -------
    vals : ndarray (nnz,) float64
    """
    Tc = Y_chunk.shape[0]
    Yf = np.asarray(Y_chunk).reshape(Tc, -1)
    if Yf.shape[1] != windows.dims[0] * windows.dims[1]:
        raise ValueError(f"frames of shape {Y_chunk.shape[1:]} do not match dims {windows.dims}")
    Wc = sp.csr_matrix(weights_chunk, dtype=np.float64)
    if Wc.shape != (windows.K, Tc):
        raise ValueError(f"weights_chunk must be (K, Tc) = {(windows.K, Tc)}, got {Wc.shape}")
    Wc.eliminate_zeros()
    vals = np.zeros(windows.pixels.size)
    for k in np.flatnonzero(np.diff(Wc.indptr)):
        s, e = windows.indptr[k], windows.indptr[k + 1]
        if e == s:
            continue
        frames = Wc.indices[Wc.indptr[k] : Wc.indptr[k + 1]]
        w = Wc.data[Wc.indptr[k] : Wc.indptr[k + 1]]
        block = Yf[frames[:, None], windows.pixels[s:e][None, :]].astype(np.float64)
        vals[s:e] = w @ np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
    return vals


def background_window_means(b: np.ndarray, f: np.ndarray, weights: sp.spmatrix,
                            windows: FootprintWindows) -> np.ndarray:
    """The background model ``b f`` averaged like the movie: ``sum_t w[k, t] (b f)[p, t]``
    on each component's pixels, without forming ``b f``.

    Parameters
    ----------
    b : ndarray (N, nb)
    f : ndarray (nb, T)
    weights : sparse (K, T)
        From :func:`active_frames`.
    windows : FootprintWindows

    Returns
    -------
    ndarray (nnz,) float64
    """
    return window_background(b, np.asarray(sp.csr_matrix(weights) @ np.asarray(f, np.float64).T), windows)


def window_background(b: np.ndarray, fw: np.ndarray, windows: FootprintWindows) -> np.ndarray:
    """:func:`background_window_means` from ``fw = weights @ f.T`` (K, nb), which sums over
    time chunks like :func:`window_sums` (so the background traces need not be whole)."""
    bp = np.asarray(b, np.float64)[windows.pixels]  # (nnz, nb)
    return np.einsum("ij,ij->i", bp, np.asarray(fw, np.float64)[windows.component])


def r_values(A: sp.spmatrix | None, mean_active_vals: np.ndarray, windows: FootprintWindows,
             *, background: np.ndarray | None = None, min_pixels: int = 3) -> np.ndarray:
    """Pearson correlation of each footprint with its mean active frame, on its support.

    Parameters
    ----------
    A : sparse (N, K) or None
        Footprints; None uses the values stored in ``windows``.
    mean_active_vals : ndarray (nnz,)
        Sum over time chunks of :func:`window_sums`.
    windows : FootprintWindows
    background : ndarray (nnz,), optional
        Subtracted from the mean frame first, e.g. :func:`background_window_means`.
        CaImAn does not subtract the background (its ``b`` and ``f`` arguments are
        unused), so the default leaves it in.
    min_pixels : int
        Components with fewer support pixels get 0 (CaImAn: 3).

    Returns
    -------
    r : ndarray (K,)
        In [-1, 1]; 0 for components without activity, with too few pixels, or with a
        constant footprint or mean frame.
    """
    y = np.asarray(mean_active_vals, np.float64)
    if background is not None:
        y = y - np.asarray(background, np.float64)
    a = windows.values if A is None else _values_at(A, windows)
    comp, sizes = windows.component, windows.sizes
    n = np.maximum(sizes, 1).astype(np.float64)
    da = a - (np.bincount(comp, a, windows.K) / n)[comp]
    dy = y - (np.bincount(comp, y, windows.K) / n)[comp]
    cov = np.bincount(comp, da * dy, windows.K)
    var = np.bincount(comp, da * da, windows.K) * np.bincount(comp, dy * dy, windows.K)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(var > 0, cov / np.sqrt(var), 0.0)
    r[sizes < min_pixels] = 0.0
    return np.clip(r, -1.0, 1.0)


def _values_at(A: sp.spmatrix, windows: FootprintWindows) -> np.ndarray:
    A = sp.csc_matrix(A, dtype=np.float64)
    out = np.asarray(A[windows.pixels, windows.component]).ravel()
    return np.nan_to_num(out, nan=0.0)


def r_values_in_memory(Y: np.ndarray, A: sp.spmatrix, C: np.ndarray,
                       YrA: np.ndarray | None = None, *, b: np.ndarray | None = None,
                       f: np.ndarray | None = None, n_max: int = 5, tB: int = -3,
                       tA: int = 10, thresh: float = 0.3, Athresh: float = 0.1) -> np.ndarray:
    """All of the r_value computation on a movie held in memory (one chunk).

    Parameters
    ----------
    Y : ndarray (T, H, W)
    A, C, YrA
        See :func:`active_frames`.
    b, f : ndarray (N, nb), (nb, T), optional
        Given, the background model is subtracted from the mean active frames.
    n_max, tB, tA, thresh, Athresh
        See :func:`active_frames`.

    Returns
    -------
    r : ndarray (K,)
    """
    weights = active_frames(C, YrA, A=A, n_max=n_max, tB=tB, tA=tA, thresh=thresh,
                            Athresh=Athresh)
    win = footprint_window(A, Y.shape[1:])
    vals = window_sums(Y, weights, win)
    bg = None if b is None or f is None else background_window_means(b, f, weights, win)
    return r_values(A, vals, win, background=bg)
