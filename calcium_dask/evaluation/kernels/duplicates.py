"""Duplicates among accepted components: a piece of a cell found beside the whole cell.

CNMF on overlapping patches sometimes keeps, beside a well-estimated cell, a smaller
component lying mostly inside it whose trace follows the same cell (a fragment that the
merge at ``merge_thr`` left apart because the fragment's trace is noisier). CaImAn's
``Estimates.remove_duplicates`` removes a component whose mask lies ``thresh_subset`` or
more inside another's. Two neurons may overlap that much too, but they fire
independently, so here a subset is a duplicate only when its trace also follows the
containing component's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._stats import zscore

__all__ = ["find_duplicates", "duplicate_candidates", "resolve_duplicates", "DuplicateCandidates"]


def _masks(A: sp.spmatrix, frac: float) -> sp.csc_matrix:
    """(N, K) 0/1 masks: pixels at or above ``frac`` of each footprint's maximum."""
    A = sp.csc_matrix(A, dtype=np.float64)
    peak = np.asarray(A.max(axis=0).todense()).ravel()
    scale = sp.diags(1.0 / np.where(peak > 0, peak, 1.0))
    M = (A @ scale >= frac).astype(np.float64)
    M.eliminate_zeros()
    return sp.csc_matrix(M)


@dataclass
class DuplicateCandidates:
    """Pairs ``(j, i)`` where ``j`` lies at least ``thresh_subset`` inside the stronger ``i``
    (``inside``: the fraction of ``j``'s mask in ``i``'s); their traces decide."""

    pairs: np.ndarray  # (P, 2) int: (j, i)
    inside: np.ndarray  # (P,)


def duplicate_candidates(A: sp.spmatrix, strength: np.ndarray, candidates: np.ndarray, *,
                         thresh_subset: float = 0.5, mask_frac: float = 0.2) -> DuplicateCandidates:
    """The pairs :func:`find_duplicates` must correlate (see there for the arguments)."""
    K = A.shape[1]
    cand = np.asarray(candidates, bool).ravel()
    if cand.shape != (K,) or len(strength) != K:
        raise ValueError(f"A has {K} components but candidates or strength do not")
    idx = np.flatnonzero(cand)
    none = DuplicateCandidates(np.zeros((0, 2), np.int64), np.zeros(0))
    if idx.size < 2 or thresh_subset > 1:
        return none
    M = _masks(sp.csc_matrix(A)[:, idx], mask_frac)
    area = np.asarray(M.sum(axis=0)).ravel()
    overlap = sp.coo_matrix(M.T @ M)  # [j, i]: pixels of j in i
    jj, ii = overlap.row, overlap.col
    inside = overlap.data / np.maximum(area[jj], 1.0)
    s = np.asarray(strength, np.float64)[idx]
    s = np.where(np.isfinite(s), s, -np.inf)
    stronger = (s[ii] > s[jj]) | ((s[ii] == s[jj]) & (idx[ii] < idx[jj]))
    sel = (jj != ii) & (inside >= thresh_subset) & stronger
    return DuplicateCandidates(np.column_stack([idx[jj[sel]], idx[ii[sel]]]).astype(np.int64), inside[sel])


def resolve_duplicates(K: int, cands: DuplicateCandidates, corr: np.ndarray, *, corr_thr: float = 0.5) -> np.ndarray:
    """For each component, the component it duplicates, or -1, given the trace
    correlation ``corr`` of each candidate pair: of several, the one containing most of it."""
    out = np.full(K, -1, np.int64)
    best = np.full(K, -1.0)
    for (j, i), ins, r in zip(cands.pairs, cands.inside, np.asarray(corr)):
        if r >= corr_thr and ins > best[j]:
            best[j], out[j] = ins, i
    return out


def _trace_corr(C: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Pearson correlation of the traces of each pair (0 for a constant trace)."""
    Z = zscore(np.asarray(C, np.float64), 1)
    return np.einsum("pt,pt->p", Z[pairs[:, 0]], Z[pairs[:, 1]]) / max(Z.shape[1], 1)


def find_duplicates(A: sp.spmatrix, C: np.ndarray, strength: np.ndarray, candidates: np.ndarray, *,
                    thresh_subset: float = 0.5, corr_thr: float = 0.5, mask_frac: float = 0.2) -> np.ndarray:
    """For each component, the component it duplicates, or -1.

    Component ``j`` duplicates component ``i`` (both among ``candidates``) when at least
    ``thresh_subset`` of ``j``'s mask lies inside ``i``'s mask, their traces correlate
    at ``corr_thr`` or more, and ``i`` is the stronger (``strength``, ties to the lower
    index). Of several such ``i``, the one containing most of ``j`` is named.

    Parameters
    ----------
    A : sparse (N, K)
        Footprints.
    C : ndarray (K, T)
        Traces (denoised; a fragment of a cell follows the cell's transients).
    strength : ndarray (K,)
        Which of two duplicates is kept (the evaluation passes the trace SNR).
    candidates : ndarray (K,) bool
        Components that may duplicate or be duplicated (the accepted ones: a fragment is
        not dropped in favour of a rejected component).
    thresh_subset : float
        Fraction of a component's mask inside the other's (CaImAn's ``thresh_subset``);
        above 1 nothing is a duplicate.
    corr_thr : float
        Smallest trace correlation of a duplicate with the component it duplicates.
    mask_frac : float
        A mask holds the pixels at or above this fraction of the footprint's maximum.

    Returns
    -------
    ndarray (K,) int64
    """
    K = A.shape[1]
    if len(C) != K:
        raise ValueError(f"A has {K} components but C has {len(C)} traces")
    cands = duplicate_candidates(A, strength, candidates, thresh_subset=thresh_subset, mask_frac=mask_frac)
    return resolve_duplicates(K, cands, _trace_corr(C, cands.pairs), corr_thr=corr_thr)
