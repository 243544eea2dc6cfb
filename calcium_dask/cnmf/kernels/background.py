"""One low-rank background for the whole field from the patches' backgrounds (numpy only)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["low_rank_background"]


def low_rank_background(b_all: np.ndarray | sp.spmatrix, f_all: np.ndarray, nb: int, *, iters: int = 50,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rank-``nb`` non-negative factorisation of ``B = b_all @ f_all`` without forming B.

    Parameters
    ----------
    b_all : (N, P) array or sparse matrix
        Background footprints of all patches, in global pixels (zero outside each patch),
        already divided by the number of patches covering each pixel so that overlaps
        average rather than add.
    f_all : (P, T) array
        Their traces.
    nb : int
        Rank of the global background.

    Returns
    -------
    b : (N, nb) float32, f : (nb, T) float32

    Notes
    -----
    HALS (Cichocki & Phan 2009, doi:10.1587/transfun.E92.A.708) needs only ``B f^T`` and
    ``b^T B``, which factor through the thin matrices: ``b_all (f_all f^T)`` and
    ``(b^T b_all) f_all``; memory stays O((N + T) P) instead of O(N T).
    """
    N, T = b_all.shape[0], f_all.shape[1]
    if nb == 0 or b_all.shape[1] == 0:
        return np.zeros((N, nb), np.float32), np.zeros((nb, T), np.float32)
    b_all = sp.csr_matrix(b_all, dtype=np.float64) if sp.issparse(b_all) else np.asarray(b_all, np.float64)
    f_all = np.asarray(f_all, np.float64)
    rng = np.random.default_rng(seed)
    f = np.maximum(f_all.mean(0, keepdims=True), 0) + 0.1 * rng.random((nb, T)) * f_all.mean()
    b = np.maximum(b_all @ (f_all @ f.T), 0)
    for _ in range(iters):
        bf, ff = b_all @ (f_all @ f.T), f @ f.T
        for j in range(nb):
            b[:, j] = np.maximum(b[:, j] + (bf[:, j] - b @ ff[:, j]) / max(ff[j, j], 1e-12), 0)
        bb, btb = (b.T @ b_all) @ f_all, b.T @ b
        for j in range(nb):
            f[j] = np.maximum(f[j] + (bb[j] - btb[j] @ f) / max(btb[j, j], 1e-12), 0)
    scale = np.linalg.norm(b, axis=0)
    scale[scale == 0] = 1.0
    return (b / scale).astype(np.float32), (f * scale[:, None]).astype(np.float32)
