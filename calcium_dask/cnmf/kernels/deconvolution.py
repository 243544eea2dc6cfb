"""Noise-constrained deconvolution of calcium traces (CaImAn's ``constrained_foopsi``).

Finds the sparsest non-negative spike train whose calcium fits the trace to
within the noise: ``min sum(s)`` subject to ``||y - b - c||^2 <= sn^2 T``,
``s = G c >= 0``, with the baseline ``b`` and the initial calcium ``c1``
estimated too. The dual problem, ``min 1/2 ||y - b - c||^2 + lam sum(s)``, is
solved by OASIS (:mod:`calcium_dask.cnmf.kernels.oasis`) while ``lam`` is tuned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .noise import NoiseMethod, estimate_ar, fit_decay_on_events, noise_psd
from .oasis import (
    ar_roots,
    fill,
    kernel_tables,
    pav,
    penalty_weights,
    response,
    solve_penalized,
    spikes_from_calcium,
)

__all__ = ["FoopsiResult", "constrained_foopsi"]

_MAX_OUTER = 60  # lam updates; Newton on a piecewise quadratic, usually < 8
_MAX_INNER = 30  # baseline updates per lam; usually 1-3
_TOL = 1e-5  # relative tolerance on the noise constraint
_MAX_G_ROUNDS = 5  # alternations of decay refinement and fit (optimize_g)


@dataclass(frozen=True, eq=False)
class FoopsiResult:
    """Result of :func:`constrained_foopsi`.

    Attributes
    ----------
    c : ndarray, shape (T,)
        Denoised calcium without the initial-condition transient.
    s : ndarray, shape (T,)
        Deconvolved activity, ``s >= 0``.
    b : float
        Baseline.
    c1 : float
        Calcium at frame 0 from activity before the recording; it decays as
        ``c1 * d**t`` (``d``: largest AR root). The model of the trace is
        ``b + c + c1 * d**t`` (see :meth:`calcium` and :meth:`model`).
    g : ndarray, shape (p,)
        AR coefficients used.
    sn : float
        Noise standard deviation used.
    lam : float
        Sparsity penalty of the dual problem at the solution.
    """

    c: np.ndarray
    s: np.ndarray
    b: float
    c1: float
    g: np.ndarray
    sn: float
    lam: float

    @property
    def d(self) -> float:
        """Largest root of the AR polynomial (decay per frame), 0 for p=0."""
        return _roots(self.g)[0]

    def calcium(self) -> np.ndarray:
        """Denoised calcium with the initial transient, ``c + c1 d^t``, shape (T,)."""
        decay = np.zeros(self.c.size)
        decay[0] = 1.0
        if self.d > 0 and self.c.size > 1:  # d^t without pow's cost and underflow traps
            decay[1:] = np.exp(np.log(self.d) * np.arange(1, self.c.size))
        return self.c + self.c1 * decay

    def model(self) -> np.ndarray:
        """Fitted trace ``b + c + c1 d^t``, shape (T,)."""
        return self.b + self.calcium()


def _roots(g: np.ndarray) -> tuple[float, float]:
    g = np.asarray(g, dtype=np.float64).ravel()
    if g.size == 0:
        return 0.0, 0.0
    return ar_roots(g[0], g[1] if g.size > 1 else 0.0)


@numba.njit(cache=True)
def _solve_b(y, lam, b, b_lo, b_hi, fix_b, tol_b, wts, g, tabs, work, c, z, h, ones):
    """Baseline optimal for ``lam``: ``mean(y - b - c) = 0`` or ``b = b_lo``.

    The mean residual is monotone and piecewise linear in ``b``: Newton steps,
    kept inside the bracket ``[b_lo, b_hi]`` by bisection, or by false
    position when they cycle between two pool structures. Leaves the calcium
    in ``c``; returns ``(b, n_pools, n_passes)``.
    """
    g1, g2, d, r = g
    T = y.size
    lo, hi, m_lo, m_hi = b_lo, b_hi, np.nan, np.nan
    side = 0
    n = 0
    last = False
    for it in range(_MAX_INNER + 1):
        for t in range(T):
            z[t] = y[t] - b - lam * wts[t]
        n = pav(z, g1, g2, d, r, 0.0, tabs, work)
        fill(c, n, d, tabs, work)
        if fix_b or last or it == _MAX_INNER:
            break
        m = np.mean(y - c) - b
        if abs(m) <= tol_b or (m < 0 and b <= b_lo):
            break
        # a bracket of 10 tol_b: the greedy AR(2) solution can jump across the root
        if hi - lo <= 10 * tol_b:
            if m < 0 and lo <= b_lo:  # the root is below the bound: the bound is optimal
                b, last = b_lo, True
                continue
            break
        if m > 0:  # the mean residual decreases with b: the root is above
            lo, m_lo = b, m
            m_hi *= 0.5 if side == 1 else 1.0  # Illinois: unstick a kept end
            side = 1
        else:
            hi, m_hi = b, m
            m_lo *= 0.5 if side == -1 else 1.0
            side = -1
        response(ones, h, n, d, tabs, work)
        denom = 1.0 - np.mean(h)
        b_new = b + (m / denom if denom > 1e-9 else np.inf * m)  # Newton
        eps = 1e-9 * (abs(lo) + abs(hi)) + 1e-300
        if not lo + eps < b_new < hi - eps:  # outside, or cycling onto an end
            if np.isnan(m_lo) or np.isnan(m_hi):
                b_new = 0.5 * (lo + hi)
            else:  # false position on the piecewise-linear mean residual
                b_new = lo + m_lo * (hi - lo) / (m_lo - m_hi)
        b = b_new
    return b, n, it + 1


@numba.njit(cache=True)
def _lam_step(y, b, F, free_b, wts, d, tabs, work, n, c, q, h, ones):
    """Newton step on ``lam`` for ``RSS(lam) = thresh``, ``F = RSS - thresh``.

    With the pools fixed the residual is affine in ``lam``, the baseline
    following its optimum at rate ``db/dlam``, so the RSS is a quadratic
    whose root is exact until the pools change. Returns ``(dlam, db/dlam)``.
    """
    response(wts, q, n, d, tabs, work)
    e = q.copy()
    rate = 0.0
    if free_b:
        response(ones, h, n, d, tabs, work)
        denom = 1.0 - np.mean(h)
        if denom > 1e-9:
            rate = np.mean(q) / denom
            e -= rate * (1.0 - h)
    res = y - b - c
    aa, bb = e @ e, res @ e
    disc = bb * bb - aa * F
    if aa > 0 and disc >= 0:
        return (-bb + np.sqrt(disc)) / aa, rate
    return (-F / (2 * bb) if bb > 0 else np.nan), rate


@numba.njit(cache=True)
def _max_lam(y, b, g1, g2):
    """Smallest ``lam`` with ``c = 0``: max of ``K^T (y - b)`` over frames."""
    T = y.size
    u = np.zeros(T + 2)
    best = 0.0
    for t in range(T - 1, -1, -1):
        u[t] = y[t] - b + g1 * u[t + 1] + g2 * u[t + 2]
        best = max(best, u[t])
    return best


@numba.njit(cache=True)
def _constrained(y, g, thresh, b, fix_b, b_lo):
    """Tune ``lam`` (and ``b``) until ``||y - b - c||^2 = thresh``.

    ``b`` is the baseline if ``fix_b``, else a first guess of it, optimised
    within ``[b_lo, max(y)]``. Returns ``(c, b, lam, n_lam, n_pav)``; ``c``
    includes the initial-condition transient.
    """
    g1, g2, d, r = g
    T = y.size
    tabs = kernel_tables(g1, g2, d, T)
    wts = penalty_weights(g1, g2, T)
    work = np.empty((8, T))
    c, z, q, h, ones = np.zeros(T), np.empty(T), np.empty(T), np.empty(T), np.ones(T)
    b_hi = max(y.max(), b_lo)
    b_init = min(max(b, b_lo), b_hi)
    if not fix_b:  # b optimal for c = 0
        b = max(np.mean(y), b_lo)
    rss0 = np.sum((y - b) ** 2)
    if rss0 <= thresh * (1 + _TOL) + 1e-20 * np.sum(y * y):
        return c, b, 0.0, 0, 0  # c = 0 already fits within the noise
    sn = np.sqrt(thresh / T)
    lam_lo, lam_hi = 0.0, _max_lam(y, b, g1, g2)
    # start near the typical solution: spikes ~1.5 noise SDs of the matched filter
    lam = min(1.5 * sn / np.sqrt(tabs[2][min(T, 1000) - 1]), 0.5 * lam_hi)
    b = b_init
    tol_b = 1e-4 * sn + 1e-15 * np.abs(y).max()  # RSS error ~ T tol_b^2: negligible
    n_pav, tried_zero = 0, False
    for it in range(_MAX_OUTER):
        b, n, k = _solve_b(y, lam, b, b_lo, b_hi, fix_b, tol_b, wts, g, tabs, work, c, z, h, ones)
        n_pav += k
        F = np.sum((y - b - c) ** 2) - thresh
        if abs(F) <= _TOL * thresh or (lam == 0 and F > 0):  # met, or unreachable
            break
        if F < 0:
            lam_lo = lam
        else:
            lam_hi = lam
        if lam_hi - lam_lo <= 1e-7 * lam_hi or it == _MAX_OUTER - 1:
            break
        free_b = not fix_b and b > b_lo
        dlam, rate = _lam_step(y, b, F, free_b, wts, d, tabs, work, n, c, q, h, ones)
        if lam_lo < lam + dlam < lam_hi:
            lam += dlam
            b = min(max(b + rate * dlam, b_lo), b_hi)  # follow the optimum
        elif lam + dlam <= 0 and not tried_zero:  # the noise level may be out of reach
            lam, tried_zero = 0.0, True
        else:
            lam = 0.5 * (lam_lo + lam_hi)
    return c, b, lam, it + 1, n_pav


def _prepare(y, p, g, sn, noise_range, noise_method, lags, fudge_factor):
    """Noise level and AR coefficients, estimated when not given."""
    if sn is None:
        sn = noise_psd(y, noise_range=noise_range, noise_method=noise_method) if y.size > 1 else 0.0
    if p == 0:
        return np.zeros(0), float(sn)
    if g is None:
        if y.size > p + 1:
            g = estimate_ar(y, p=p, sn=sn, lags=lags, fudge_factor=fudge_factor)
        else:
            g = np.zeros(p)  # too short to tell: no dynamics
    g = np.asarray(g, dtype=np.float64).ravel()
    if g.size != p:
        raise ValueError(f"g must have p={p} coefficients, got {g.size}")
    return g, float(sn)


def _kernel(g: np.ndarray) -> tuple[float, float, float, float]:
    d, r = _roots(g)
    g1 = float(g[0]) if g.size else 0.0
    g2 = float(g[1]) if g.size > 1 else 0.0
    return g1, g2, d, r


def _spike_floor(s_min: float, sn: float, d: float) -> float:
    """CaImAn's minimal spike size: negative values are in units of sn sqrt(1-d)."""
    return -s_min * sn * np.sqrt(1.0 - d) if s_min < 0 else float(s_min)


def _optimize_g(y, g, sn, b, bas_nonneg, n_events, fit):
    """Alternate decay refinement and constrained fits until the decay settles."""
    for _ in range(_MAX_G_ROUNDS):
        s = spikes_from_calcium(fit[0], *_kernel(g)[:3])
        g_new = fit_decay_on_events(y, g, s, n_events=n_events)
        converged = abs(_kernel(g_new)[2] - _kernel(g)[2]) < 1e-3
        g, fit = g_new, _fit(y, g_new, sn, b, bas_nonneg)
        if converged:
            break
    return g, fit


def constrained_foopsi(
    y: np.ndarray,
    *,
    p: int = 1,
    g: np.ndarray | None = None,
    sn: float | None = None,
    b: float | None = None,
    bas_nonneg: bool = False,
    noise_range: tuple[float, float] = (0.25, 0.5),
    noise_method: NoiseMethod = "mean",
    lags: int = 5,
    fudge_factor: float = 0.96,
    s_min: float | None = None,
    optimize_g: int | bool = 0,
) -> FoopsiResult:
    """Noise-constrained sparse non-negative deconvolution of one trace.

    Parameters
    ----------
    y : ndarray, shape (T,)
        Fluorescence trace (any real dtype; computed in float64).
    p : {0, 1, 2}, optional
        Order of the AR model of the calcium; 0 means no dynamics.
    g : ndarray, shape (p,), optional
        AR coefficients; estimated with :func:`estimate_ar` if None.
    sn : float, optional
        Noise standard deviation; estimated with :func:`noise_psd` if None.
    b : float, optional
        Baseline; estimated (jointly with the calcium) if None.
    bas_nonneg : bool, optional
        Constrain the estimated baseline to be ``>= 0``.
    noise_range, noise_method, lags, fudge_factor : optional
        Options of the noise and AR estimates (CaImAn's names).
    s_min : float or None, optional
        Minimal spike size. 0 or None: plain L1 sparsity. Positive: after the
        noise-constrained fit, spikes are refitted without penalty but with
        every non-zero spike ``>= s_min``. Negative: the same with threshold
        ``|s_min| * sn * sqrt(1 - d)`` (CaImAn's convention).
    optimize_g : int or bool, optional
        Number of the largest isolated events used to refine the decay time
        after a first fit (0 or False: keep ``g``; True: 5 events).

    Returns
    -------
    FoopsiResult
        ``c, s, b, c1, g, sn, lam``; the trace is modelled as
        ``b + c + c1 d^t`` with ``s = G c >= 0``.

    Notes
    -----
    Solves ``min_{c, b, c1} sum(s)`` subject to ``s = G c >= 0``, ``c1 >= 0``
    and ``||y - b - c - c1 d^t||^2 <= sn^2 T`` [1]_ through its dual
    ``min 1/2 ||y - b - c||^2 + lam sum(s)``, solved by OASIS [2]_. ``lam`` is
    found by safeguarded Newton steps (the residual norm is piecewise
    quadratic in ``lam``), and for every ``lam`` the baseline is at its
    optimum ``mean(y - c)`` (or at 0). If ``c = 0`` already fits within the
    noise, the result is ``c = 0`` and ``b = mean(y)``. With ``p = 0`` the
    calcium is ``max(y - b - lam, 0)`` (soft threshold).

    References
    ----------
    .. [1] Pnevmatikakis et al. (2016) Neuron 89:285-299,
       doi:10.1016/j.neuron.2015.11.037
    .. [2] Friedrich, Zhou & Paninski (2017) PLoS Comput Biol 13:e1005423,
       doi:10.1371/journal.pcbi.1005423
    """
    if p not in (0, 1, 2):
        raise ValueError(f"p must be 0, 1 or 2, got {p}")
    y = np.ascontiguousarray(y, dtype=np.float64).ravel()
    if y.size == 0 or not np.all(np.isfinite(y)):
        raise ValueError("y must be a non-empty trace of finite values")
    g, sn = _prepare(y, p, g, sn, noise_range, noise_method, lags, fudge_factor)
    fit = _fit(y, g, sn, b, bas_nonneg)
    n_events = 5 if optimize_g is True else int(optimize_g)
    if n_events > 0 and p > 0:
        g, fit = _optimize_g(y, g, sn, b, bas_nonneg, n_events, fit)
    c, b_fit, lam = fit
    kern = _kernel(g)
    if s_min:
        # CaImAn's meaning: refit without penalty, spikes either 0 or >= floor
        c = solve_penalized(y - b_fit, *kern, 0.0, _spike_floor(s_min, sn, kern[2]))[0]
    return _finish(c, g, kern, b_fit, sn, lam)


def _fit(y, g, sn, b, bas_nonneg):
    """Run the constrained solver with a sensible start and baseline bounds."""
    kern = _kernel(g)
    span = float(y.max() - y.min())
    b_lo = 0.0 if bas_nonneg else float(y.min()) - 2.0 * span - 10.0 * sn
    fix = b is not None
    if not fix:  # a low percentile is close to the baseline of sparse activity
        k = (y.size - 1) * 15 // 100
        b = np.partition(y, k)[k]
    out = _constrained(y, kern, sn * sn * y.size, float(b), fix, b_lo)
    return out[:3]


@numba.njit(cache=True)
def _without_initial(c, d):
    """``max(c - c[0] d^t, 0)``: the calcium without the initial transient."""
    out = np.empty(c.size)
    decay = c[0]
    for t in range(c.size):
        out[t] = max(c[t] - decay, 0.0)
        decay *= d
    return out


def _finish(c, g, kern, b, sn, lam) -> FoopsiResult:
    """Split off the initial-condition transient and compute the spikes."""
    g1, g2, d, _ = kern
    if g.size == 0:  # no dynamics: every frame is its own event
        c1, c = 0.0, np.maximum(c, 0.0)
        s = c.copy()
    else:
        c1 = float(c[0])
        c = _without_initial(c, d)
        s = spikes_from_calcium(c, g1, g2, d)
    return FoopsiResult(c=c, s=s, b=float(b), c1=c1, g=g, sn=float(sn), lam=float(lam))
