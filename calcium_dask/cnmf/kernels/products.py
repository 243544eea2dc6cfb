"""Products of a chunk of frames with sparse footprints, without transposing the frames.

A time chunk of the movie arrives as ``Y`` (Tc, N), frames in rows (C order). The refit
needs ``A^T Y^T`` (traces) and ``Y^T C^T`` on the footprints' search areas (shapes). Both
touch only the non-zero pixels of the footprints: the kernels walk the frames one row at a
time (contiguous, in cache) and the pixel-sorted (CSR) entries, so neither the chunk nor its
transpose is ever copied. Sums over frames are accumulated in float64 and compensated, so a
total summed over time chunks is the same however the movie was chunked.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

__all__ = ["add_compensated", "frames_dot_footprints", "frames_dot_traces", "frames_dot_traces_parts"]

_ROW_BLOCK = 64  # pixel rows whose sums are accumulated together


@numba.njit(cache=True)
def _rows_dot_csr(Y, rows, indptr, indices, data, n_out):  # pragma: no cover - numba
    """``out[t, k] = sum_i Y[t, i] M[i, k]`` over the listed non-empty rows ``i`` of CSR ``M``."""
    T = Y.shape[0]
    out = np.zeros((T, n_out))
    for t in range(T):
        for i in rows:
            y = Y[t, i]
            for p in range(indptr[i], indptr[i + 1]):
                out[t, indices[p]] += y * data[p]
    return out


@numba.njit(cache=True)
def _entries_dot_traces(Y, rows, indptr, indices, Ct):  # pragma: no cover - numba
    """``sum_t Y[t, i] Ct[t, k]`` for every entry ``p = (i, k)`` of a CSR pattern.

    Tiled over blocks of pixel rows so that a block's sums stay in cache while the frames
    stream by. Each sum is compensated (Neumaier): returned as ``hi + lo`` with ``lo`` the
    rounding error of ``hi``, so sums over time chunks do not depend on the chunking.
    """
    T = Y.shape[0]
    hi = np.zeros(indptr[-1])
    lo = np.zeros(indptr[-1])
    for r0 in range(0, rows.size, _ROW_BLOCK):
        block = rows[r0:r0 + _ROW_BLOCK]
        for t in range(T):
            for i in block:
                y = np.float64(Y[t, i])
                for p in range(indptr[i], indptr[i + 1]):
                    x = y * Ct[t, indices[p]]  # exact: a product of two float32
                    s = hi[p] + x
                    if abs(hi[p]) >= abs(x):
                        lo[p] += (hi[p] - s) + x
                    else:
                        lo[p] += (x - s) + hi[p]
                    hi[p] = s
    return hi, lo


def add_compensated(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Sum of two compensated sums ``(hi, lo)`` (Knuth's TwoSum on the high parts)."""
    s = a[0] + b[0]
    bp = s - a[0]
    err = (a[0] - (s - bp)) + (b[0] - bp)
    return s, a[1] + b[1] + err


def _frames(Y: np.ndarray) -> np.ndarray:
    """A chunk as (Tc, N) C-ordered float32 (a view when it already is one)."""
    Y = np.asarray(Y)
    return np.ascontiguousarray(Y.reshape(len(Y), -1), dtype=np.float32)


def _csr(M: sp.spmatrix, dtype=None) -> tuple[sp.csr_matrix, np.ndarray]:
    M = sp.csr_matrix(M, dtype=dtype)
    M.sort_indices()
    return M, np.flatnonzero(np.diff(M.indptr)).astype(np.int64)


def frames_dot_footprints(Y: np.ndarray, A: sp.spmatrix, b: np.ndarray | None = None) -> np.ndarray:
    """``[A b]^T`` applied to every frame of a chunk: the traces' data term ``AtY``.

    Parameters
    ----------
    Y : (Tc, ...) array
        Frames (any trailing shape flattening to N pixels, C order).
    A : (N, K) sparse matrix
        Footprints.
    b : (N, nb) array, optional
        Dense background footprints (a BLAS product).

    Returns
    -------
    (K + nb, Tc) float64 array
    """
    Yr = _frames(Y)
    M, rows = _csr(A, np.float64)
    out = _rows_dot_csr(Yr, rows, M.indptr, M.indices, M.data, M.shape[1]).T
    if b is not None and np.shape(b)[1]:
        out = np.vstack([out, (Yr @ np.asarray(b, np.float32)).T.astype(np.float64)])
    return out


def frames_dot_traces_parts(Y: np.ndarray, C: np.ndarray, mask: sp.spmatrix
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Compensated ``Y^T C^T`` on the entries of ``mask``, in its (sorted) CSC order.

    Returns ``(hi, lo)`` float64 arrays of length ``mask.nnz``: the sums are ``hi + lo``;
    combine chunks with :func:`add_compensated`. See :func:`frames_dot_traces`.
    """
    Yr = _frames(Y)
    mask = sp.csc_matrix(mask, dtype=bool)
    mask.sort_indices()
    # the CSR walk visits the entries by pixel; ``data`` maps them back to CSC order
    order = sp.csc_matrix((np.arange(mask.nnz, dtype=np.float64) + 1, mask.indices, mask.indptr),
                          shape=mask.shape).tocsr()
    order.sort_indices()
    rows = np.flatnonzero(np.diff(order.indptr)).astype(np.int64)
    Ct = np.ascontiguousarray(np.asarray(C, np.float32).T, dtype=np.float64)
    hi_csr, lo_csr = _entries_dot_traces(Yr, rows, order.indptr, order.indices, Ct)
    pos = order.data.astype(np.int64) - 1
    hi, lo = np.empty(mask.nnz), np.empty(mask.nnz)
    hi[pos], lo[pos] = hi_csr, lo_csr
    return hi, lo


def frames_dot_traces(Y: np.ndarray, C: np.ndarray, mask: sp.spmatrix) -> sp.csc_matrix:
    """``Y^T C^T`` of a chunk on the entries of ``mask`` only: the shapes' data term ``YCt``.

    Parameters
    ----------
    Y : (Tc, ...) array
        Frames, N pixels each (C order).
    C : (K, Tc) array
        Traces over the same frames (used in single precision, so that every product is
        exact in double precision).
    mask : (N, K) sparse matrix
        Entries wanted (search areas).

    Returns
    -------
    (N, K) float64 csc matrix with exactly the (sorted) pattern of ``mask``, zeros kept.
    """
    mask = sp.csc_matrix(mask, dtype=bool)
    mask.sort_indices()
    hi, lo = frames_dot_traces_parts(Y, C, mask)
    return sp.csc_matrix((hi + lo, mask.indices, mask.indptr), shape=mask.shape)
