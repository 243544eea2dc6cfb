"""Spike trains and AR(2) calcium dynamics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

MEAN_BURST_SPIKES = 4.0  # 1 + Poisson(3) spikes per burst


@dataclass(frozen=True)
class Activity:
    """Per-neuron firing, in units where one spike of median amplitude peaks at 1.

    Attributes
    ----------
    S : ndarray (K, T)
        AR(2) innovations: ``C = lfilter([1], [1, -g1, -g2], S)``.
    C : ndarray (K, T)
        Calcium, unit amplitude.
    g : ndarray (K, 2)
        AR(2) coefficients ``(g1, g2)``.
    tau_rise, tau_decay, rates_hz : ndarray (K,)
        Seconds, seconds, Hz.
    bursty : ndarray (K,) of bool
    """

    S: np.ndarray
    C: np.ndarray
    g: np.ndarray
    tau_rise: np.ndarray
    tau_decay: np.ndarray
    rates_hz: np.ndarray
    bursty: np.ndarray


def ar2_coefficients(tau_rise: np.ndarray, tau_decay: np.ndarray,
                     fr: float) -> tuple[np.ndarray, np.ndarray]:
    """AR(2) coefficients of a difference of exponentials (rise, decay in seconds).

    Returns
    -------
    g : ndarray (K, 2)
    peak : ndarray (K,)
        Peak of the impulse response of ``1 / (1 - g1 z^-1 - g2 z^-2)``.
    """
    d = np.exp(-1.0 / (np.asarray(tau_decay) * fr))
    r = np.exp(-1.0 / (np.asarray(tau_rise) * fr))
    g = np.stack([d + r, -d * r], axis=1)
    # impulse response h[n] = (d^(n+1) - r^(n+1)) / (d - r); its peak is within ~10 tau_rise
    n = np.arange(int(np.ceil(10 * np.max(tau_rise) * fr)) + 3)[None]
    h = (d[:, None] ** (n + 1) - r[:, None] ** (n + 1)) / (d - r)[:, None]
    return g, h.max(axis=1)


def spike_counts(rng: np.random.Generator, T: int, rate_per_frame: float,
                 bursty: bool, amp_logsd: float) -> np.ndarray:
    """One neuron's spikes per frame, each weighted by a log-normal amplitude.

    Bursty neurons fire events at ``rate / MEAN_BURST_SPIKES``, each a burst of
    ``1 + Poisson(3)`` spikes with inter-spike intervals of 0-2 frames (at 30 Hz).
    At least one spike is guaranteed, so every neuron has a defined peak.
    """
    s = np.zeros(T)
    if bursty:
        onsets = np.flatnonzero(rng.random(T) < rate_per_frame / MEAN_BURST_SPIKES)
        sizes = 1 + rng.poisson(MEAN_BURST_SPIKES - 1, onsets.size)
        times = np.concatenate([o + np.cumsum(rng.geometric(0.6, n) - 1)
                                for o, n in zip(onsets, sizes)] or [np.zeros(0, int)])
    else:
        counts = rng.poisson(rate_per_frame, T)
        times = np.repeat(np.arange(T), counts)
    times = times[times < T]
    if times.size == 0:
        times = rng.integers(0, max(1, T - 10), 1)
    np.add.at(s, times, rng.lognormal(0.0, amp_logsd, times.size))
    return s


def simulate_activity(rng: np.random.Generator, *, K: int, T: int, fr: float,
                      rate_range_hz: tuple[float, float], burst_frac: float,
                      tau_rise_range_s: tuple[float, float],
                      tau_decay_range_s: tuple[float, float],
                      amp_logsd: float) -> Activity:
    """Draw spike trains and their AR(2) calcium for K neurons.

    Parameters
    ----------
    rng : numpy.random.Generator
    K, T : int
    fr : float
        Frame rate, Hz.
    rate_range_hz : (float, float)
        Log-uniform range of mean spike rates.
    burst_frac : float
    tau_rise_range_s, tau_decay_range_s : (float, float)
    amp_logsd : float

    Returns
    -------
    Activity
    """
    lo, hi = np.log(rate_range_hz[0]), np.log(rate_range_hz[1])
    rates = np.exp(rng.uniform(lo, hi, K))
    bursty = rng.random(K) < burst_frac
    tau_rise = rng.uniform(*tau_rise_range_s, K)
    tau_decay = rng.uniform(*tau_decay_range_s, K)
    g, peak = ar2_coefficients(tau_rise, tau_decay, fr)
    S = np.stack([spike_counts(rng, T, rates[k] / fr, bool(bursty[k]), amp_logsd)
                  for k in range(K)]) / peak[:, None]
    C = np.stack([lfilter([1.0], [1.0, -g[k, 0], -g[k, 1]], S[k]) for k in range(K)])
    return Activity(S=S, C=C, g=g, tau_rise=tau_rise, tau_decay=tau_decay,
                    rates_hz=rates, bursty=bursty)
