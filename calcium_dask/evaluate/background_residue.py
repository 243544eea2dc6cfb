"""Components made of background rather than of cells.

CNMF models the background with ``nb`` components (``b f``). Neuropil that this low-rank
model does not fit stays in the residual, and CNMF can take a patch of it for a source: a
diffuse blob between cells whose trace is the slow drift of the background, not calcium
transients. Its r_value can still be high, since the movie at the frames where it is
"active" is brighter there, so CaImAn's pass tests accept it.

Its trace gives it away: the background traces ``f`` explain most of it (on the
simulated movies, the multiple correlation of such accepted false units with ``f`` has a
median of 0.77; that of accepted true units 0.20, and 99 % are below 0.75). A neuron driven
with the neuropil (a population event) can follow ``f`` too, but it then has events the
SNR test finds exceptional, which is why the evaluation rejects only units that are both
explained by the background and fail the SNR test.
"""

from __future__ import annotations

import numpy as np

__all__ = ["background_correlation"]


def background_correlation(traces: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Multiple correlation of each trace with the background traces.

    The square root of the share of each trace's variance that a least-squares linear
    combination of the rows of ``f`` (and a constant) explains.

    Parameters
    ----------
    traces : ndarray (K, T)
        Unit traces (the denoised ``C``).
    f : ndarray (nb, T)
        Background traces.

    Returns
    -------
    ndarray (K,) float64
        In [0, 1]; 0 for a constant trace, NaN for every unit if there is no background
        trace that varies (nothing to compare with).
    """
    C = np.asarray(traces, np.float64)
    F = np.asarray(f, np.float64)
    if C.ndim != 2 or F.ndim != 2 or F.shape[1] != C.shape[1]:
        raise ValueError(f"traces {np.shape(traces)} and background traces {np.shape(f)} "
                         "must have the same number of frames")
    Fc = F - F.mean(axis=1, keepdims=True)
    # an orthonormal basis of the span of f (SVD, not QR: a zero or repeated background
    # trace must not add a direction)
    u, s, _ = np.linalg.svd(Fc.T, full_matrices=False)
    keep = s > (s.max() if s.size else 0.0) * max(Fc.shape) * np.finfo(np.float64).eps
    if not keep.any():
        return np.full(len(C), np.nan)
    Cc = C - C.mean(axis=1, keepdims=True)
    explained = np.sum((Cc @ u[:, keep]) ** 2, axis=1)
    total = np.sum(Cc**2, axis=1)
    share = np.divide(explained, total, out=np.zeros(len(C)), where=total > 0)
    return np.sqrt(np.clip(share, 0.0, 1.0))
