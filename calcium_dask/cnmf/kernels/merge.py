"""Merging of overlapping, correlated components (CaImAn's ``merge_components``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

__all__ = ["MergeResult", "merge_components", "merge_groups", "merged_component", "merge_until_stable",
           "overlap_pairs", "remove_empty"]

_PAIR_BLOCK = 4096  # trace pairs correlated per vectorised block


@dataclass
class MergeResult:
    """Result of :func:`merge_components`.

    Attributes
    ----------
    A : (N, K') csc float32
        Footprints: the unmerged components in their original order, then one per group.
    C : (K', T) float32
        Traces in the same order.
    kept : (K_kept,) int
        Original indices of the unmerged components (the first ``K_kept`` columns of A).
    groups : list of int arrays
        Original indices merged into each of the appended components, in order.
    """

    A: sp.csc_matrix
    C: np.ndarray
    kept: np.ndarray
    groups: list[np.ndarray]


def _pair_correlations(C: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Pearson correlation of traces ``C[i]`` and ``C[j]`` for each listed pair."""
    Z = C.astype(np.float64) - C.mean(1, keepdims=True)
    nrm = np.linalg.norm(Z, axis=1)
    Z /= np.where(nrm > 0, nrm, np.inf)[:, None]
    out = np.empty(i.size)
    for s in range(0, i.size, _PAIR_BLOCK):
        e = s + _PAIR_BLOCK
        out[s:e] = np.einsum("pt,pt->p", Z[i[s:e]], Z[j[s:e]])
    return out


def _rank1(A: sp.csc_matrix, C: np.ndarray, n_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank-1 NMF ``a c`` of ``A C`` without forming it; ``a`` has unit norm."""
    nC = np.linalg.norm(C, axis=1)
    a = np.asarray(A @ nC).ravel()
    c = np.zeros(C.shape[1])
    for _ in range(n_iter):
        aa = a @ a
        if aa == 0:
            break
        c = np.maximum((np.asarray(A.T @ a).ravel() @ C) / aa, 0)
        cc = c @ c
        if cc == 0:
            break
        a = np.maximum(np.asarray(A @ (C @ c)).ravel() / cc, 0)
    na = np.linalg.norm(a)
    return (a / na, c * na) if na > 0 else (a, c)


def overlap_pairs(A: np.ndarray | sp.spmatrix) -> np.ndarray:
    """(P, 2) index pairs ``i < j`` of components whose footprints share a pixel."""
    S = (sp.csc_matrix(A) != 0).astype(np.float32)
    ov = sp.triu(S.T @ S, k=1).tocoo()
    return np.column_stack([ov.row, ov.col]).astype(np.int64)


def merge_groups(A: np.ndarray | sp.spmatrix, pairs: np.ndarray, rho: np.ndarray, *, merge_thr: float,
                 max_merge: int | None = 50, max_merge_area: int | None = None) -> list[np.ndarray]:
    """Groups of components to merge, from the trace correlation ``rho`` of each
    overlapping pair (:func:`overlap_pairs`): see :func:`merge_components`."""
    A = sp.csc_matrix(A, dtype=np.float32)
    K = A.shape[1]
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    edge = np.asarray(rho) > merge_thr
    graph = sp.coo_matrix((np.asarray(rho)[edge], (pairs[edge, 0], pairs[edge, 1])), shape=(K, K))
    n, labels = csgraph.connected_components(graph, directed=False)
    sizes = np.bincount(labels, minlength=n)
    score = np.bincount(labels[graph.row], weights=graph.data, minlength=n)
    cand = [c for c in np.argsort(-score, kind="stable") if sizes[c] > 1]
    if max_merge_area is not None:
        support = sp.csr_matrix((A != 0).astype(np.float32).T)  # (K, N)
        area = {c: (np.asarray(support[labels == c].sum(axis=0)).ravel() > 0).sum() for c in cand}
        cand = [c for c in cand if area[c] <= max_merge_area]
    if max_merge is not None:
        cand = cand[:max_merge]
    return [np.flatnonzero(labels == c) for c in cand]


def merged_component(A: sp.spmatrix, C: np.ndarray, n_iter: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The component ``(a, c)`` replacing a group: the rank-1 non-negative factorisation of
    the group's summed contribution ``A C`` (``a`` of unit norm), as float32."""
    a, c = _rank1(sp.csc_matrix(A, dtype=np.float32), np.asarray(C, np.float64), n_iter)
    return a.astype(np.float32), c.astype(np.float32)


def merge_components(
    A: np.ndarray | sp.spmatrix,
    C: np.ndarray,
    *,
    merge_thr: float = 0.85,
    max_merge: int | None = 50,
    n_iter: int = 10,
    max_merge_area: int | None = None,
) -> MergeResult:
    """Merge components whose footprints overlap and whose traces correlate.

    Parameters
    ----------
    A : (N, K) array or sparse matrix
        Footprints.
    C : (K, T) array
        Traces (denoised).
    merge_thr : float
        Pearson correlation above which two overlapping components are joined.
    max_merge : int or None
        Most merges per call (CaImAn's ``mx``), the groups with the largest summed
        correlation first; None merges every group.
    n_iter : int
        Alternating iterations of the rank-1 fit of each group.
    max_merge_area : int or None
        A group whose footprints together cover more pixels than this is not merged
        (CaImAn's ``max_merge_area``); None: no limit.

    Returns
    -------
    MergeResult

    Notes
    -----
    Components are nodes of a graph with an edge where footprints share a pixel and traces
    correlate above ``merge_thr``; each connected group of two or more becomes one component,
    the rank-1 non-negative factorisation of the group's summed contribution ``A_G C_G``.
    Pnevmatikakis et al. 2016, doi:10.1016/j.neuron.2015.11.037.
    """
    A = sp.csc_matrix(A, dtype=np.float32)
    C = np.asarray(C)
    K = A.shape[1]
    pairs = overlap_pairs(A)
    rho = _pair_correlations(C, pairs[:, 0], pairs[:, 1])
    groups = merge_groups(A, pairs, rho, merge_thr=merge_thr, max_merge=max_merge, max_merge_area=max_merge_area)
    merged = np.zeros(K, bool)
    cols, traces = [], []
    for G in groups:
        merged[G] = True
        a, c = _rank1(A[:, G], C[G].astype(np.float64), n_iter)
        cols.append(sp.csc_matrix(a.astype(np.float32)[:, None]))
        traces.append(c)
    kept = np.flatnonzero(~merged)
    A_out = sp.hstack([A[:, kept], *cols]).tocsc() if cols else A
    C_out = np.vstack([C[kept], *[t[None] for t in traces]]) if cols else C
    return MergeResult(A_out.astype(np.float32), C_out.astype(np.float32), kept, groups)


def remove_empty(
    A: np.ndarray | sp.spmatrix, C: np.ndarray
) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray]:
    """Drop components whose footprint or trace is all zero.

    Parameters
    ----------
    A : (N, K) array or sparse matrix
    C : (K, T) array

    Returns
    -------
    A : (N, K') csc, C : (K', T), keep : (K',) int indices of the kept components
    """
    A = sp.csc_matrix(A)
    a_ok = np.asarray(abs(A).sum(0)).ravel() > 0
    c_ok = np.abs(C).sum(1) > 0
    keep = np.flatnonzero(a_ok & c_ok)
    return A[:, keep], C[keep], keep


def merge_until_stable(A: sp.spmatrix, C: np.ndarray, merge_thr: float,
                       max_merge_area: int | None = None) -> tuple[sp.csc_matrix, np.ndarray]:
    """Merge overlapping, correlated components until no pair qualifies.

    Parameters
    ----------
    A : (N, K) sparse matrix
    C : (K, T) array
    merge_thr, max_merge_area : float, int or None
        As in :func:`merge_components`.

    Returns
    -------
    A : (N, K') csc float32, C : (K', T) float32
    """
    A = sp.csc_matrix(A, dtype=np.float32)
    while A.shape[1] > 1:
        m = merge_components(A, C, merge_thr=merge_thr, max_merge_area=max_merge_area)
        if not m.groups:
            break
        A, C = m.A, m.C
    return A, C
