"""Matching the units of two sessions (in the reference frame): candidate pairs from a
spatial index, their costs, and the one-to-one assignment of least total cost.

The cost of a pair is ``1 - overlap + dist_weight * distance / max_dist`` (CaImAn's
``register_ROIs``, and the default, is ``dist_weight = 0`` with the Jaccard overlap); only
pairs whose centroids lie within ``max_dist`` are candidates, and only those with a cost below
``thresh_cost`` can be matched. The assignment maximises ``sum(thresh_cost - cost)`` over
the matched pairs: a pair is matched only if that lowers the total, so a unit may stay
unmatched. The candidate graph falls apart into small connected groups (a unit and its
neighbours); each is solved exactly by the Hungarian algorithm on its own small matrix,
so no matrix over all the units of two sessions is ever made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .footprints import pair_overlap

__all__ = ["Candidates", "PairMatches", "candidate_pairs", "pair_costs", "assign_pairs", "match_sessions"]


@dataclass(frozen=True)
class Candidates:
    """Candidate pairs ``(i[n], j[n])`` of units of sessions a and b.

    Attributes
    ----------
    i, j : ndarray (n,) int64
        Unit positions (columns of the sessions' footprint matrices).
    distance, overlap, cost : ndarray (n,) float64
        Centroid distance (pixels), overlap in [0, 1], and cost.
    """

    i: np.ndarray
    j: np.ndarray
    distance: np.ndarray
    overlap: np.ndarray
    cost: np.ndarray


@dataclass(frozen=True)
class PairMatches:
    """One-to-one matches ``(i[n], j[n])`` between two sessions and their costs."""

    i: np.ndarray
    j: np.ndarray
    cost: np.ndarray

    def __len__(self) -> int:
        return int(self.i.size)


def candidate_pairs(cent_a: np.ndarray, cent_b: np.ndarray, max_dist: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of units whose centroids lie within ``max_dist`` (a k-d tree query).

    Parameters
    ----------
    cent_a, cent_b : ndarray (Ka, 2), (Kb, 2)
        Centroids; rows with NaN (empty footprints) are never candidates.

    Returns
    -------
    i, j : ndarray int64
    distance : ndarray float64
    """
    ok_a, ok_b = np.flatnonzero(np.isfinite(cent_a).all(1)), np.flatnonzero(np.isfinite(cent_b).all(1))
    if ok_a.size == 0 or ok_b.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    found = cKDTree(cent_a[ok_a]).sparse_distance_matrix(cKDTree(cent_b[ok_b]), max_dist, output_type="ndarray")
    return ok_a[found["i"]].astype(np.int64), ok_b[found["j"]].astype(np.int64), found["v"].astype(np.float64)


def pair_costs(Ma: sp.csc_matrix, Mb: sp.csc_matrix, cent_a: np.ndarray, cent_b: np.ndarray, *,
               max_dist: float = 10.0, dist_weight: float = 0.0, kind: str = "jaccard") -> Candidates:
    """Costs of the candidate pairs of two sessions (see the module docstring).

    Parameters
    ----------
    Ma, Mb : sparse (P, Ka), (P, Kb)
        Masks (``kind='jaccard'``) or footprints (``kind='cosine'``) in the reference frame.
    cent_a, cent_b : ndarray (K, 2)
        Their centroids, reference pixels.
    max_dist, dist_weight : float
    kind : {'jaccard', 'cosine'}

    Returns
    -------
    Candidates
    """
    i, j, d = candidate_pairs(cent_a, cent_b, max_dist)
    overlap = pair_overlap(Ma, Mb, i, j, kind=kind)
    cost = 1.0 - overlap + dist_weight * d / max(max_dist, 1e-12)
    return Candidates(i, j, d, overlap, cost)


def assign_pairs(cands: Candidates, *, thresh_cost: float = 0.7) -> PairMatches:
    """The one-to-one matching of least total ``cost - thresh_cost`` among the candidates.

    Returns
    -------
    PairMatches
        Sorted by ``i``.
    """
    keep = cands.cost < thresh_cost
    i, j, cost = cands.i[keep], cands.j[keep], cands.cost[keep]
    if i.size == 0:
        return PairMatches(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    ui, li = np.unique(i, return_inverse=True)
    uj, lj = np.unique(j, return_inverse=True)
    n = ui.size + uj.size
    graph = sp.coo_matrix((np.ones(i.size), (li, ui.size + lj)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    comp = label[li]
    order = np.argsort(comp, kind="stable")
    bounds = np.flatnonzero(np.diff(np.r_[-1, comp[order], -2]))
    chosen = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        e = order[lo:hi]
        if e.size == 1:  # most groups: one unit and its one counterpart
            chosen.append(e)
            continue
        rows, r = np.unique(li[e], return_inverse=True)
        cols, c = np.unique(lj[e], return_inverse=True)
        gain = np.zeros((rows.size, cols.size))
        gain[r, c] = cost[e] - thresh_cost  # < 0 for every candidate; 0: "leave unmatched"
        edge = np.full((rows.size, cols.size), -1)
        edge[r, c] = e
        a, b = linear_sum_assignment(gain)
        picked = edge[a, b]
        chosen.append(picked[picked >= 0])
    sel = np.concatenate(chosen)
    sel = sel[np.argsort(i[sel], kind="stable")]
    return PairMatches(i[sel], j[sel], cost[sel])


def match_sessions(Ma: sp.csc_matrix, Mb: sp.csc_matrix, cent_a: np.ndarray, cent_b: np.ndarray, *,
                   max_dist: float = 10.0, dist_weight: float = 0.0, kind: str = "jaccard",
                   thresh_cost: float = 0.7) -> PairMatches:
    """:func:`pair_costs` then :func:`assign_pairs`: the matches between two sessions."""
    cands = pair_costs(Ma, Mb, cent_a, cent_b, max_dist=max_dist, dist_weight=dist_weight, kind=kind)
    return assign_pairs(cands, thresh_cost=thresh_cost)
