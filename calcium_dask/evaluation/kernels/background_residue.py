"""Components made of background rather than of cells.

CNMF models the background with ``nb`` components (``b f``). Neuropil that this low-rank
model does not fit stays in the residual, and CNMF can take a patch of it for a source: a
diffuse blob between cells whose trace is the slow drift of the background, not calcium
transients. Its r_value can still be high, since the movie at the frames where it is
"active" is brighter there, so CaImAn's pass tests accept it.

Its trace gives it away: the background traces ``f`` explain much of it. On 28
simulated movies (trends removed, see :func:`background_correlation`), accepted false units
lying apart from every cell correlate with ``f`` at a median of 0.68 (7 of 26 at 0.85 or
more), accepted true units at 0.19 (99 % below 0.70; none of those failing the SNR test
reaches 0.85). A neuron driven with the neuropil (a population event) can follow ``f``
too, but it then has events the SNR test finds exceptional, which is why the evaluation
rejects only units that are both explained by the background and fail the SNR test.
"""

from __future__ import annotations

import numpy as np

__all__ = ["background_correlation"]


def _detrended(Y: np.ndarray, order: int) -> np.ndarray:
    """Rows of ``Y`` minus their least-squares polynomial of ``order`` over the frames."""
    T = Y.shape[1]
    basis, _ = np.linalg.qr(np.vander(np.linspace(-1.0, 1.0, T), min(order, T - 1) + 1))
    return Y - (Y @ basis) @ basis.T


def background_correlation(traces: np.ndarray, f: np.ndarray, *, detrend: int = 2) -> np.ndarray:
    """Multiple correlation of each trace with the background traces.

    The square root of the share of each trace's variance that a least-squares linear
    combination of the rows of ``f`` explains, once a polynomial trend over the whole
    recording has been removed from every trace (photobleaching and other drifts that
    all traces share are no sign of a unit being background).

    Parameters
    ----------
    traces : ndarray (K, T)
        Unit traces (the denoised ``C``).
    f : ndarray (nb, T)
        Background traces.
    detrend : int
        Order of the trend removed first (0: the mean only).

    Returns
    -------
    ndarray (K,) float64
        In [0, 1]; 0 for a trace that is only a trend; NaN for a trace with non-finite
        values, and for every unit if no finite background trace varies beyond its trend
        (nothing to compare with).
    """
    C = np.asarray(traces, np.float64)
    F = np.asarray(f, np.float64)
    if C.ndim != 2 or F.ndim != 2 or F.shape[1] != C.shape[1]:
        raise ValueError(f"traces {np.shape(traces)} and background traces {np.shape(f)} "
                         "must have the same number of frames")
    F = F[np.isfinite(F).all(axis=1)]  # a broken background trace says nothing
    finite = np.isfinite(C).all(axis=1)
    C = np.where(finite[:, None], C, 0.0)
    Fd = _detrended(F, detrend)
    # an orthonormal basis of the span of f beyond its trend (SVD, not QR: a zero,
    # repeated or pure-trend background trace must not add a direction)
    u, s, _ = np.linalg.svd(Fd.T, full_matrices=False)
    keep = s > np.finfo(np.float64).eps * max(F.shape) * np.linalg.norm(F)
    if not keep.any():
        return np.full(len(C), np.nan)
    Cd = _detrended(C, detrend)
    explained = np.sum((Cd @ u[:, keep]) ** 2, axis=1)
    total = np.sum(Cd**2, axis=1)
    varies = total > 1e-12 * np.sum(C**2, axis=1)  # more than round-off beyond the trend
    share = np.divide(explained, total, out=np.zeros(len(C)), where=varies)
    return np.where(finite, np.sqrt(np.clip(share, 0.0, 1.0)), np.nan)
