"""Noise level and autoregressive (AR) time constants of fluorescence traces.

Kernels of the CNMF temporal model: the noise standard deviation of a trace from
the high-frequency part of its power spectral density, the AR(p) coefficients
of the calcium dynamics from its autocovariance (or refitted on the largest
transients), and their conversions to and from time constants.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.fft

# scipy.signal and scipy.optimize (with scipy.stats, ~0.8 s) are imported where they are used:
# a client imports this module to build graphs, and only a few kernels need them

__all__ = [
    "noise_psd",
    "noise_movie",
    "estimate_ar",
    "ar_from_time_constants",
    "time_constants_from_ar",
    "fit_decay_on_events",
]

NoiseMethod = Literal["mean", "median", "logmexp"]

# Periodogram ordinates of white noise are sigma^2 * Exp(1): their median is
# sigma^2 * ln 2 and the mean of their logarithm is log(sigma^2) - Euler's gamma.
_MEDIAN_EXP1 = np.log(2.0)
_EULER_GAMMA = 0.5772156649015329
_ROWS_PER_BLOCK = 2048  # bounds the complex FFT buffer for many-pixel inputs


def _subsample_time(Y: np.ndarray, max_num_samples_fft: int) -> np.ndarray:
    """First, middle and last thirds of a long recording, as CaImAn does."""
    T = Y.shape[-1]
    if T <= max_num_samples_fft:
        return Y
    n3 = max_num_samples_fft // 3
    half = int(max_num_samples_fft / 3 / 2)
    parts = (
        Y[..., 1 : n3 + 1],
        Y[..., T // 2 - half : T // 2 + half],
        Y[..., T - n3 :],
    )
    return np.concatenate(parts, axis=-1)


def _band(T: int, noise_range: tuple[float, float]) -> np.ndarray:
    """Boolean mask of the rfft bins with frequency in (lo, hi] (fraction of fs)."""
    ff = np.arange(0, 0.5 + 1.0 / T, 1.0 / T)[: T // 2 + 1]
    return (ff > noise_range[0]) & (ff <= noise_range[1])


def _average_psd(psd: np.ndarray, method: str, unbiased: bool) -> np.ndarray:
    """Noise SD from one-sided PSD ordinates ``psd`` (..., F) of the band."""
    half = psd / 2.0
    if method == "mean":
        return np.sqrt(np.mean(half, axis=-1))
    if method == "median":
        med = np.median(half, axis=-1)
        return np.sqrt(med / _MEDIAN_EXP1 if unbiased else med)
    if method == "logmexp":
        mlog = np.mean(np.log(half + 1e-10), axis=-1)
        return np.sqrt(np.exp(mlog + _EULER_GAMMA if unbiased else mlog))
    raise ValueError(f"noise_method must be 'mean', 'median' or 'logmexp', got {method!r}")


def noise_psd(
    Y: np.ndarray,
    *,
    noise_range: tuple[float, float] = (0.25, 0.5),
    noise_method: NoiseMethod = "mean",
    max_num_samples_fft: int = 3072,
    unbiased: bool = True,
) -> np.ndarray | float:
    """Noise standard deviation of each trace from its power spectral density.

    Parameters
    ----------
    Y : ndarray, shape (N, T) or (T,)
        Traces, time on the last axis; any real dtype.
    noise_range : (float, float), optional
        Frequency band ``(lo, hi]`` as a fraction of the sampling rate
        (0.5 is the Nyquist frequency) over which the PSD is averaged.
    noise_method : {'mean', 'median', 'logmexp'}, optional
        How the PSD is averaged over the band: arithmetic mean, median, or
        exponential of the mean of its logarithm.
    max_num_samples_fft : int, optional
        Recordings longer than this use only three blocks of
        ``max_num_samples_fft // 3`` frames (start, middle and end).
    unbiased : bool, optional
        Rescale the 'median' and 'logmexp' averages so that white noise of
        standard deviation sigma gives sigma (the PSD ordinates of white noise
        are exponentially distributed). ``False`` reproduces CaImAn's
        ``get_noise_fft`` exactly (biased by factors 0.83 and 0.75).

    Returns
    -------
    sn : ndarray, shape (N,), or float for a 1-D input
        Noise standard deviation of each trace.

    Notes
    -----
    With ``X_k`` the DFT of a trace of length T, the one-sided periodogram is
    ``P_k = 2 |X_k|^2 / T`` and ``sn = sqrt(avg_k P_k / 2)`` over the band. For
    white noise ``E[P_k / 2] = sigma^2``. Calcium transients are slow, so the
    upper half of the spectrum holds mostly noise [1]_.

    References
    ----------
    .. [1] Pnevmatikakis et al. (2016) Simultaneous denoising, deconvolution,
       and demixing of calcium imaging data. Neuron 89:285-299,
       doi:10.1016/j.neuron.2015.11.037
    """
    Y = np.asarray(Y)
    scalar = Y.ndim == 1
    Y2 = _subsample_time(np.atleast_2d(Y), max_num_samples_fft)
    Y2 = Y2.reshape(-1, Y2.shape[-1])
    T = Y2.shape[-1]
    if T < 2:
        raise ValueError(f"need at least 2 time points to estimate noise, got {T}")
    band = _band(T, noise_range)
    if not band.any():
        raise ValueError(f"noise_range {noise_range} selects no frequency for T={T}")
    sn = np.empty(Y2.shape[0])
    # single precision is plenty for a noise level and halves the FFT's time and memory
    dtype = np.float32 if Y2.dtype == np.float32 else np.float64
    for start in range(0, Y2.shape[0], _ROWS_PER_BLOCK):
        block = np.asarray(Y2[start : start + _ROWS_PER_BLOCK], dtype=dtype)
        X = scipy.fft.rfft(block, axis=-1, workers=1)[:, band]
        psd = (2.0 / T) * (X.real.astype(np.float64) ** 2 + X.imag.astype(np.float64) ** 2)
        sn[start : start + block.shape[0]] = _average_psd(psd, noise_method, unbiased)
    return float(sn[0]) if scalar else sn


def noise_movie(movie: np.ndarray, **kwargs) -> np.ndarray:
    """Noise standard deviation of every pixel of a time-first movie.

    Parameters
    ----------
    movie : ndarray, shape (T, H, W) or (T, P)
        Movie with time on the first axis.
    **kwargs
        Options of :func:`noise_psd`.

    Returns
    -------
    sn : ndarray, shape (H, W) or (P,)
        Noise standard deviation of each pixel.
    """
    movie = np.asarray(movie)
    flat = movie.reshape(movie.shape[0], -1)
    sn = np.empty(flat.shape[1])
    for start in range(0, flat.shape[1], _ROWS_PER_BLOCK):
        cols = flat[:, start : start + _ROWS_PER_BLOCK].T
        sn[start : start + cols.shape[0]] = noise_psd(cols, **kwargs)
    return sn.reshape(movie.shape[1:])


def _autocovariance(y: np.ndarray, maxlag: int) -> np.ndarray:
    """Biased autocovariance of ``y`` at lags 0..maxlag (divided by T)."""
    y = y - y.mean()
    T = y.size
    return np.array([y[k:] @ y[: T - k] for k in range(maxlag + 1)]) / T


def _ar_polynomial_roots(g: np.ndarray) -> np.ndarray:
    """Real parts of the roots of ``z^p - g_1 z^{p-1} - g_p``, largest first."""
    if g.size == 1:
        return g.copy()
    disc = g[0] * g[0] + 4.0 * g[1]
    half = np.sqrt(max(disc, 0.0)) / 2.0  # complex pair -> double real root
    return np.array([g[0] / 2.0 + half, g[0] / 2.0 - half])


def _stable_roots(g: np.ndarray, fudge_factor: float) -> np.ndarray:
    """Make the AR polynomial's roots real, in [0, 1), then shrink them."""
    roots = _ar_polynomial_roots(g)
    roots = np.where(roots >= 1.0, 0.95, roots)  # non-decaying: CaImAn's fallback
    roots = np.where(roots < 0.0, 0.15, roots)  # oscillating: a fast rise instead
    roots = fudge_factor * roots
    if roots.size == 1:
        return roots + 0.0  # + 0.0: no negative zeros
    return np.array([roots[0] + roots[1], -roots[0] * roots[1]]) + 0.0


def estimate_ar(
    y: np.ndarray,
    *,
    p: int = 1,
    sn: float | None = None,
    lags: int = 5,
    fudge_factor: float = 0.96,
    noise_range: tuple[float, float] = (0.25, 0.5),
    noise_method: NoiseMethod = "mean",
) -> np.ndarray:
    """AR(p) coefficients of a fluorescence trace from its autocovariance.

    Parameters
    ----------
    y : ndarray, shape (T,)
        Fluorescence trace.
    p : {0, 1, 2}, optional
        Order of the AR process; 0 returns an empty array.
    sn : float, optional
        Noise standard deviation; estimated with :func:`noise_psd` if None.
    lags : int, optional
        Number of autocovariance lags used beyond ``p``.
    fudge_factor : float, optional
        Shrinkage (0 < f <= 1) of the AR roots, reducing the upward bias of
        the decay time.
    noise_range, noise_method : optional
        Passed to :func:`noise_psd` when ``sn`` is None.

    Returns
    -------
    g : ndarray, shape (p,)
        Coefficients of ``c_t = g_1 c_{t-1} + ... + g_p c_{t-p} + s_t``. The
        roots of ``z^p - g_1 z^{p-1} - ... - g_p`` are real and in [0, 1):
        a stable, non-oscillating, decaying process.

    Notes
    -----
    For ``y = c + noise`` with white noise of variance ``sn^2``, the
    autocovariance ``r_k`` of ``y`` obeys the Yule-Walker equations of ``c``
    except at lag 0, where ``sn^2`` is added: ``r_k = sum_j g_j (r_{|k-j|} -
    sn^2 [k == j])`` for ``k = 1..lags+p``, solved in the least-squares sense
    (CaImAn's ``estimate_time_constant`` [1]_). Complex roots are replaced by
    their real part, roots >= 1 by 0.95 and negative roots by 0.15
    (CaImAn's rules, without its random jitter).

    References
    ----------
    .. [1] Pnevmatikakis et al. (2016) Neuron 89:285-299,
       doi:10.1016/j.neuron.2015.11.037
    """
    if p not in (0, 1, 2):
        raise ValueError(f"p must be 0, 1 or 2, got {p}")
    y = np.asarray(y, dtype=np.float64).ravel()
    if p == 0:
        return np.zeros(0)
    if sn is None:
        sn = noise_psd(y, noise_range=noise_range, noise_method=noise_method)
    L = min(lags + p, y.size - 1)
    if L < p:
        raise ValueError(f"trace of {y.size} samples is too short for AR({p})")
    xc = _autocovariance(y, L)
    idx = np.abs(np.arange(L)[:, None] - np.arange(p)[None, :])
    A = xc[idx] - sn**2 * np.eye(L, p)
    g = np.linalg.lstsq(A, xc[1 : L + 1], rcond=None)[0]
    return _stable_roots(g, fudge_factor)


def ar_from_time_constants(tau_rise: float, tau_decay: float, fr: float) -> np.ndarray:
    """AR coefficients of a difference-of-exponentials calcium kernel.

    Parameters
    ----------
    tau_rise : float
        Rise time constant in seconds; 0 gives an AR(1) model.
    tau_decay : float
        Decay time constant in seconds (CaImAn's ``decay_time``).
    fr : float
        Frame rate in Hz.

    Returns
    -------
    g : ndarray, shape (1,) or (2,)
        ``[d]`` or ``[d + r, -d r]`` with ``d = exp(-1 / (tau_decay fr))`` and
        ``r = exp(-1 / (tau_rise fr))``, the roots of the AR polynomial.
    """
    if tau_decay <= 0 or fr <= 0:
        raise ValueError(f"tau_decay and fr must be positive, got {tau_decay}, {fr}")
    d = np.exp(-1.0 / (tau_decay * fr))
    if tau_rise <= 0:
        return np.array([d])
    r = np.exp(-1.0 / (tau_rise * fr))
    return np.array([d + r, -d * r])


def time_constants_from_ar(g: np.ndarray, fr: float) -> tuple[float, float]:
    """Rise and decay time constants (seconds) of AR(1)/AR(2) coefficients.

    Parameters
    ----------
    g : ndarray, shape (1,) or (2,)
        AR coefficients with real roots in [0, 1).
    fr : float
        Frame rate in Hz.

    Returns
    -------
    tau_rise, tau_decay : float
        Time constants; ``tau_rise`` is 0 for AR(1) or a non-positive root.
    """
    g = np.atleast_1d(np.asarray(g, dtype=np.float64))
    roots = np.sort(np.roots(np.concatenate(([1.0], -g))).real)[::-1]
    if roots[0] >= 1 or roots[0] <= 0:
        raise ValueError(f"AR coefficients {g} are not a decaying process")
    tau_decay = -1.0 / (fr * np.log(roots[0]))
    tau_rise = -1.0 / (fr * np.log(roots[1])) if roots.size > 1 and roots[1] > 0 else 0.0
    return float(tau_rise), float(tau_decay)


def _event_windows(s: np.ndarray, n_events: int, length: int) -> list[tuple[int, int]]:
    """Windows ``[t0, t1)`` after the largest spikes, up to ``length`` frames.

    A window ends early at the next spike larger than a quarter of its own,
    so it holds one transient and its decay (small spikes inside it are taken
    as the compensation of a wrong decay time).
    """
    times = np.flatnonzero(s > 0)
    windows = []
    for t0 in times[np.argsort(s[times])[::-1][:n_events]]:
        later = times[(times > t0) & (s[times] > 0.25 * s[t0])]
        t1 = min(t0 + length, later[0] if later.size else s.size)
        if t1 - t0 >= 3:
            windows.append((int(t0), int(t1)))
    return windows


def _window_cost(y, windows, d, r):
    """Residual of least-squares fits of each window with the AR(2) response."""
    longest = max(t1 - t0 for t0, t1 in windows)
    import scipy.signal

    impulse = np.r_[1.0, np.zeros(longest)]
    g11 = scipy.signal.lfilter([1.0], [1.0, -(d + r), d * r], impulse)
    total = 0.0
    for t0, t1 in windows:
        L = t1 - t0
        cols = [np.ones(L), g11[:L]] + ([np.r_[0.0, g11[: L - 1]]] if r > 0 else [])
        basis = np.stack(cols, axis=1)
        coef, *_ = np.linalg.lstsq(basis, y[t0:t1], rcond=None)
        total += float(np.sum((y[t0:t1] - basis @ coef) ** 2))
    return total


def fit_decay_on_events(
    y: np.ndarray, g: np.ndarray, s: np.ndarray, *, n_events: int = 5
) -> np.ndarray:
    """Refit the decay of AR(1)/AR(2) coefficients on the largest transients.

    Parameters
    ----------
    y : ndarray, shape (T,)
        Fluorescence trace.
    g : ndarray, shape (1,) or (2,)
        Current AR coefficients (real roots in [0, 1)).
    s : ndarray, shape (T,)
        Spikes deconvolved with ``g``; the ``n_events`` largest mark events.
    n_events : int, optional
        Number of transients used.

    Returns
    -------
    g : ndarray, same shape
        Coefficients with the decay root refitted and the rise root kept.

    Notes
    -----
    Each window, from a large spike for five decay times (or up to the next
    large spike), is fitted by least squares with a local baseline plus the
    homogeneous AR solution (one exponential for AR(1); the spike response
    and the carried-over calcium for AR(2)); the summed residual is minimised
    over the decay root. This is the meaning of OASIS's ``optimize_g``
    (Friedrich, Zhou & Paninski 2017, doi:10.1371/journal.pcbi.1005423), with
    a local baseline so that an error of the global one does not bias it.
    """
    g = np.asarray(g, dtype=np.float64).ravel()
    roots = np.sort(np.roots(np.concatenate(([1.0], -g))).real)[::-1]
    d = roots[0]
    r = max(roots[1], 0.0) if g.size > 1 else 0.0
    windows = _event_windows(np.asarray(s), n_events, int(np.ceil(5.0 / max(1.0 - d, 1e-3))))
    if not windows:
        return g
    import scipy.optimize

    y = np.asarray(y, dtype=np.float64)
    best = scipy.optimize.minimize_scalar(
        lambda dd: _window_cost(y, windows, dd, r),
        bounds=(r + 1e-3, 0.999),
        method="bounded",
        options={"xatol": 1e-4},
    )
    dd = float(best.x)
    return np.array([dd + r, -dd * r]) if g.size > 1 else np.array([dd])
