"""Exact non-negative least squares for a few unknowns and many right-hand sides."""

from __future__ import annotations

import numpy as np

__all__ = ["nnls_small"]


def nnls_small(G: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Exact non-negative least squares for few unknowns and many right-hand sides.

    Minimises ``x^T G x / 2 - r^T x`` over ``x >= 0`` for each column ``r`` of ``R``.

    Parameters
    ----------
    G : (m, m) array
        Symmetric positive semi-definite Gram matrix, ``m <= 4``.
    R : (m, M) array
        Right-hand sides.

    Returns
    -------
    (m, M) float64 array

    Notes
    -----
    The solution is the least-squares solution on its own support, so the best feasible
    candidate among the ``2^m`` supports is the optimum; all columns are solved at once.
    """
    m, M = R.shape
    G = np.asarray(G, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    best = np.zeros((m, M))
    best_obj = np.zeros(M)
    for S in _SUBSETS[m]:
        Gs = G[S][:, S]
        try:
            xs = np.linalg.solve(Gs, R[S])
        except np.linalg.LinAlgError:
            xs = np.linalg.pinv(Gs) @ R[S]
        obj = -0.5 * np.einsum("sm,sm->m", R[S], xs)
        ok = (xs >= 0).all(0) & (obj < best_obj)
        if ok.any():
            best[:, ok] = 0.0
            best[S[:, None], ok] = xs[:, ok]
            best_obj[ok] = obj[ok]
    return best


_SUBSETS = {m: [np.flatnonzero([(c >> i) & 1 for i in range(m)]) for c in range(1, 2**m)]
            for m in range(1, 5)}
