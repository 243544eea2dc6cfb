"""Acceptance of components from their evaluation metrics (CaImAn's
``select_components_from_metrics``)."""

from __future__ import annotations

import numpy as np

__all__ = ["accept"]


def accept(snr: np.ndarray, r_values: np.ndarray, cnn_pred: np.ndarray | None = None, *,
           min_SNR: float = 2.0, rval_thr: float = 0.8, min_cnn_thr: float = 0.9,
           SNR_lowest: float = 0.5, rval_lowest: float = -1.0, cnn_lowest: float = 0.2,
           use_cnn: bool = True) -> np.ndarray:
    """Which components pass the evaluation.

    A component is accepted when it passes at least one of the upper thresholds,
    ``snr > min_SNR`` or ``r_values >= rval_thr`` or ``cnn_pred >= min_cnn_thr``, and
    fails none of the lower bounds, ``snr <= SNR_lowest``, ``r_values <= rval_lowest``,
    ``cnn_pred <= cnn_lowest``. With ``use_cnn`` False the classifier is ignored on
    both sides. NaN metrics pass no threshold and fail no bound.

    Parameters
    ----------
    snr, r_values : ndarray (K,)
    cnn_pred : ndarray (K,) or None
        Required when ``use_cnn``.
    min_SNR, rval_thr, min_cnn_thr : float
        Upper thresholds (any suffices).
    SNR_lowest, rval_lowest, cnn_lowest : float
        Lower bounds (any rejects).
    use_cnn : bool

    Returns
    -------
    accepted : ndarray (K,) bool

    References
    ----------
    Giovannucci et al. 2019, eLife 8:e38173, doi:10.7554/eLife.38173.
    """
    snr = np.asarray(snr, np.float64).ravel()
    r = np.asarray(r_values, np.float64).ravel()
    if r.shape != snr.shape:
        raise ValueError(f"snr has {snr.size} values but r_values has {r.size}")
    good = (snr > min_SNR) | (r >= rval_thr)
    bad = (snr <= SNR_lowest) | (r <= rval_lowest)
    if use_cnn:
        if cnn_pred is None:
            raise ValueError("use_cnn=True needs cnn_pred (or pass use_cnn=False)")
        cnn = np.asarray(cnn_pred, np.float64).ravel()
        if cnn.shape != snr.shape:
            raise ValueError(f"snr has {snr.size} values but cnn_pred has {cnn.size}")
        good |= cnn >= min_cnn_thr
        bad |= cnn <= cnn_lowest
    return good & ~bad
