"""Signal-to-noise ratio of traces by the exceptionality of their events (CaImAn's
``compute_event_exceptionality`` and the ``SNR_comp`` of its component evaluation)."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import special

from ._baseline import binned_percentile
from ._mode import half_sample_mode

__all__ = ["event_exceptionality", "fitness_to_snr", "frames_per_event", "remove_trace_baseline",
           "trace_snr"]

_MAD_TO_SD = 0.6744897501960817  # median of |Z| for a standard normal Z


def event_exceptionality(traces: np.ndarray, *, robust_std: bool = False, N: int = 5,
                         use_mode_fast: bool = False, sigma_factor: float = 3.0
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Log-probability of the most exceptional run of ``N`` samples of each trace.

    The baseline of a trace is its mode ``md`` (half-sample mode); the noise SD ``sd_r``
    comes from the samples below the mode only (activity is positive, so they are
    noise): their root-mean-square deviation, or with ``robust_std`` the median absolute
    deviation over 0.6745. Each sample gets the log of the Gaussian tail probability
    ``log P(Z > (x - md) / (sigma_factor * sd_r))``; summing over ``N`` consecutive
    samples gives the log-probability of the run under the noise model, and the fitness
    is its minimum over time (the lower, the more exceptional the trace).

    Parameters
    ----------
    traces : ndarray (K, T)
    robust_std : bool
        Noise from the median instead of the RMS of the below-mode deviations.
    N : int
        Length of the runs, frames (>= 1).
    use_mode_fast : bool
        Accepted for CaImAn compatibility; both of its mode estimators are the same
        half-sample mode.
    sigma_factor : float
        The noise SD is multiplied by this before computing the z-scores.

    Returns
    -------
    fitness : ndarray (K,)
        ``min_t erfc[k, t]``.
    erfc : ndarray (K, T)
        Log-probability of the ``N`` samples ending at ``t`` (the first ``N - 1`` sum
        the samples so far).
    sd_r : ndarray (K,)
        Noise SD.
    md : ndarray (K,)
        Mode (baseline).

    Notes
    -----
    A constant trace has no below-mode samples; its z-scores are 0 (no evidence of any
    event) instead of CaImAn's NaN.

    References
    ----------
    Giovannucci et al. 2019, CaImAn an open source tool for scalable calcium imaging
    data analysis, eLife 8:e38173, doi:10.7554/eLife.38173 (Methods, "Component
    evaluation").
    """
    N = int(N)
    if N < 1:
        raise ValueError(f"N must be >= 1 (consecutive samples), got {N}")
    x = np.atleast_2d(np.asarray(traces, np.float64))
    del use_mode_fast  # one estimator serves both settings
    md = half_sample_mode(x)
    dev = x - md[:, None]
    below = np.where(dev < 0, -dev, 0.0)
    n_below = np.count_nonzero(below, axis=1)
    sd_r = _noise_below_mode(below, n_below, robust=robust_std)
    scale = sigma_factor * sd_r
    ok = np.isfinite(scale) & (scale > 0)
    z = np.where(ok[:, None], dev / np.where(ok, scale, 1.0)[:, None], 0.0)
    logp = special.log_ndtr(-z)
    erfc = np.cumsum(logp, axis=1)
    erfc[:, N:] = erfc[:, N:] - erfc[:, :-N].copy()
    return erfc.min(axis=1), erfc, sd_r, md


def _noise_below_mode(below: np.ndarray, n_below: np.ndarray, *, robust: bool) -> np.ndarray:
    """RMS (or median / 0.6745) of the positive below-mode deviations; NaN if none."""
    if not robust:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(np.sum(below**2, axis=1) / n_below)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: constant traces
        return np.nanmedian(np.where(below > 0, below, np.nan), axis=1) / _MAD_TO_SD


def fitness_to_snr(fitness: np.ndarray, N: int) -> np.ndarray:
    """Express a fitness as an SNR: the z-score whose tail probability, sustained over
    ``N`` samples, has that log-probability (``-Phi^-1(exp(fitness / N))``).

    Computed in the log domain (:func:`scipy.special.ndtri_exp`), so very exceptional
    traces get a finite SNR where ``exp`` would underflow.
    """
    return -special.ndtri_exp(np.minimum(np.asarray(fitness, np.float64) / int(N), 0.0))


def remove_trace_baseline(traces: np.ndarray, *, q: float = 8.0,
                          max_bin: int = 800) -> np.ndarray:
    """Subtract a slow baseline: the ``q``-th percentile of blocks of ``min(T // 5,
    max_bin)`` frames, spline-interpolated (what CaImAn's evaluation does first).

    Parameters
    ----------
    traces : ndarray (K, T)

    Returns
    -------
    ndarray (K, T) float64
    """
    x = np.atleast_2d(np.asarray(traces, np.float64))
    bin_len = min(x.shape[1] // 5, int(max_bin))
    if bin_len < 1:
        return x.copy()
    return x - binned_percentile(x, q, bin_len=bin_len, zoom_mode="constant")


def frames_per_event(fr: float, decay_time: float) -> int:
    """Number of consecutive frames of an event: ``ceil(fr * decay_time)``, at least 1."""
    return max(1, int(math.ceil(float(fr) * float(decay_time))))


def trace_snr(C: np.ndarray, YrA: np.ndarray | None = None, *, fr: float, decay_time: float,
              remove_baseline: bool = True, robust_std: bool = False,
              sigma_factor: float = 3.0) -> np.ndarray:
    """SNR of each component's raw trace ``C + YrA`` (CaImAn's ``SNR_comp``).

    The raw trace loses its slow baseline (:func:`remove_trace_baseline`), then
    :func:`event_exceptionality` is run with runs of ``N = ceil(fr * decay_time)``
    frames (one transient) and the fitness is converted to units of noise SD by
    :func:`fitness_to_snr`. Compare with ``min_SNR`` (typically 2-2.5).

    Parameters
    ----------
    C : ndarray (K, T)
        Denoised traces.
    YrA : ndarray (K, T), optional
        Residuals; the raw trace is ``C + YrA``.
    fr : float
        Frame rate, Hz.
    decay_time : float
        Decay time of a transient, seconds.
    remove_baseline : bool
        Subtract the slow 8th-percentile baseline first.
    robust_std, sigma_factor
        See :func:`event_exceptionality`.

    Returns
    -------
    snr : ndarray (K,)

    References
    ----------
    Giovannucci et al. 2019, eLife 8:e38173, doi:10.7554/eLife.38173.
    """
    traces = np.atleast_2d(np.asarray(C, np.float64))
    if YrA is not None:
        traces = traces + np.asarray(YrA, np.float64)
    if traces.shape[0] == 0:
        return np.zeros(0)
    if remove_baseline:
        traces = remove_trace_baseline(traces)
    N = frames_per_event(fr, decay_time)
    fitness = event_exceptionality(traces, N=N, robust_std=robust_std,
                                   sigma_factor=sigma_factor)[0]
    return fitness_to_snr(fitness, N)
