"""OASIS: sparse non-negative deconvolution of AR(1)/AR(2) calcium traces.

Numba kernels of the pool-adjacent-violators algorithm of Friedrich, Zhou &
Paninski (2017). One kernel serves AR(2), AR(1) (``g2 = 0``) and no dynamics
(``g1 = g2 = 0``): a *pool* is a run of frames without a spike in which the
calcium follows the homogeneous AR recursion from the pool's first value.

The first pool is the initial condition: it decays as ``v d^k`` with ``d`` the
largest root of the AR polynomial, and is constrained to ``v >= 0``. Every
other pool starts with a spike ``>= smin``; its values are
``c[t+k] = g11[k] v + g12[k] w_prev``, with ``v`` its first value, ``w_prev``
the last value of the preceding pool, ``g11`` the impulse response and
``g12[k] = g2 g11[k-1]``.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["oasis_ar1", "oasis_ar2", "ar_roots"]

# Below this root separation the pool dot products are summed directly
# instead of from the two geometric sums, which then lose precision.
_CLOSE_ROOTS = 0.05


def ar_roots(g1: float, g2: float = 0.0) -> tuple[float, float]:
    """Decay and rise roots ``(d, r)`` of ``z^2 - g1 z - g2`` (``d >= r``).

    Raises ValueError unless they are real with ``0 <= d < 1`` and ``|r| <= d``.
    """
    disc = g1 * g1 + 4.0 * g2
    if disc < 0:
        raise ValueError(f"AR coefficients ({g1}, {g2}) have complex roots")
    d = (g1 + np.sqrt(disc)) / 2.0
    r = (g1 - np.sqrt(disc)) / 2.0
    if not (0.0 <= d < 1.0) or abs(r) > d:
        raise ValueError(f"AR coefficients ({g1}, {g2}) are not a decaying process")
    return float(d), float(r)


@numba.njit(cache=True)
def kernel_tables(g1, g2, d, T):
    """Impulse response and the running sums the pools need, each shape (T + 1,).

    Returns ``(g11, g12, inv_g11g11, g11g12, inv_dd)``: ``g11[k]`` is the
    calcium k frames after a unit spike, ``g12[k] = g2 g11[k-1]`` the effect of
    the frame before the spike, ``inv_g11g11[k] = 1 / sum_{j<=k} g11[j]^2``,
    ``g11g12[k] = sum_{j<=k} g11[j] g12[j]`` and
    ``inv_dd[k] = 1 / sum_{j<=k} d^(2j)`` (for the initial-condition pool).
    Reciprocals turn the divisions of pool merges into multiplications.
    """
    g11, g12 = np.empty(T + 1), np.empty(T + 1)
    inv_g11g11, g11g12, inv_dd = np.empty(T + 1), np.empty(T + 1), np.empty(T + 1)
    s11, s12, sdd, dk = 0.0, 0.0, 0.0, 1.0
    for k in range(T + 1):
        if k == 0:
            g11[k], g12[k] = 1.0, 0.0
        elif k == 1:
            g11[k], g12[k] = g1, g2
        else:
            g11[k] = g1 * g11[k - 1] + g2 * g11[k - 2]
            g12[k] = g2 * g11[k - 1]
        s11 += g11[k] * g11[k]
        s12 += g11[k] * g12[k]
        sdd += dk * dk
        dk *= d
        inv_g11g11[k], g11g12[k], inv_dd[k] = 1.0 / s11, s12, 1.0 / sdd
    return g11, g12, inv_g11g11, g11g12, inv_dd


@numba.njit(cache=True)
def penalty_weights(g1, g2, T):
    """Weights ``w`` with ``sum(s) = w @ c`` (``w = K^{-T} 1``), shape (T,)."""
    w = np.full(T, 1.0 - g1 - g2)
    if T >= 2:
        w[T - 2] = 1.0 - g1
    if T >= 1:
        w[T - 1] = 1.0
    return w


@numba.njit(cache=True)
def _support(h):
    """Length of ``h`` up to its last entry above 1e-17 of its peak."""
    tiny = 1e-17 * np.abs(h).max()
    k = h.size
    while k > 1 and abs(h[k - 1]) <= tiny:
        k -= 1
    return k


@numba.njit(cache=True)
def pav(z, g1, g2, d, r, smin, tabs, work):
    """Pool-adjacent-violators pass over ``z``; returns the number of pools.

    ``work`` is an (8, T) float array: rows hold each pool's start, length,
    first value v, last value w, sums ``D = sum d^k z`` and ``R = sum r^k z``
    over the pool, and ``d^(L-1)``, ``r^(L-1)``. Merging two pools combines
    these sums in O(1), so a pass is O(T) however long the pools grow.
    """
    g11, g12, inv_g11g11, g11g12, inv_dd = tabs
    pt, pl, pv, pw, pD, pR, pe, pf = work
    # g11 @ z over a pool is D when r = 0, else (d D - r R) / (d - r), unless
    # the roots are too close: then it is summed over the kernel's support
    direct = r != 0 and d - r < _CLOSE_ROOTS
    inv_dr = 1.0 / (d - r) if r != 0 and not direct else 0.0
    support = _support(g11) if direct else 0
    n = 0
    for t in range(z.size):
        pt[n], pl[n], pv[n], pw[n] = t, 1, z[t], z[t]
        pD[n], pR[n], pe[n], pf[n] = z[t], z[t], 1.0, 1.0
        if n == 0:
            pv[0] = max(0.0, z[t])
            pw[0] = pv[0]
        n += 1
        while n > 1:
            i = n - 1
            lp = int(pl[i - 1])
            pred = pw[0] * d if i == 1 else g11[lp] * pv[i - 1] + g12[lp] * pw[i - 2]
            if pred + smin <= pv[i]:
                break
            a = i - 1  # merge pool i into pool a
            pD[a] += pe[a] * d * pD[i]
            pR[a] += pf[a] * r * pR[i]
            pe[a] *= d * pe[i]
            pf[a] *= r * pf[i]
            pl[a] += pl[i]
            L = int(pl[a])
            if a == 0:
                pv[0] = max(0.0, pD[0] * inv_dd[L - 1])
                pw[0] = pv[0] * pe[0]
            else:
                s = int(pt[a])
                if r == 0:
                    dot = pD[a]
                elif direct:
                    dot = 0.0
                    for k in range(min(L, support)):
                        dot += g11[k] * z[s + k]
                else:
                    dot = (d * pD[a] - r * pR[a]) * inv_dr
                pv[a] = (dot - g11g12[L - 1] * pw[a - 1]) * inv_g11g11[L - 1]
                pw[a] = g11[L - 1] * pv[a] + g12[L - 1] * pw[a - 1]
            n -= 1
    return n


@numba.njit(cache=True)
def fill(c, n, d, tabs, work):
    """Write the calcium trace of ``n`` pools into ``c`` (shape (T,))."""
    g11, g12 = tabs[0], tabs[1]
    pt, pl, pv, pw = work[0], work[1], work[2], work[3]
    v = pv[0]
    for k in range(int(pl[0])):
        c[k] = v
        v *= d
    for j in range(1, n):
        s, L, v, wprev = int(pt[j]), int(pl[j]), pv[j], pw[j - 1]
        for k in range(L):
            c[s + k] = g11[k] * v + g12[k] * wprev


@numba.njit(cache=True)
def response(u, out, n, d, tabs, work):
    """Change of the calcium for a unit change of the data along ``u``.

    With the pools held fixed the solution is linear in the data; this applies
    that linear map to ``u`` (shape (T,)) and writes the result into ``out``.
    A first pool clipped at zero does not respond.
    """
    g11, g12, inv_g11g11, g11g12, inv_dd = tabs
    pt, pl, pv = work[0], work[1], work[2]
    L = int(pl[0])
    dv = 0.0
    if pv[0] > 0.0:
        D, e = 0.0, 1.0
        for k in range(L):
            D += e * u[k]
            e *= d
        dv = D * inv_dd[L - 1]
    for k in range(L):
        out[k] = dv
        dv *= d
    for j in range(1, n):
        s, L = int(pt[j]), int(pl[j])
        wprev = out[s - 1]
        dot = 0.0
        for k in range(L):
            dot += g11[k] * u[s + k]
        dv = (dot - g11g12[L - 1] * wprev) * inv_g11g11[L - 1]
        for k in range(L):
            out[s + k] = g11[k] * dv + g12[k] * wprev


@numba.njit(cache=True)
def spikes_from_calcium(c, g1, g2, d):
    """Spikes ``s_t = c_t - g1 c_{t-1} - g2 c_{t-2}``, ``s_0 = 0``, ``s_1 = c_1 - d c_0``.

    Frames 0 and 1 assume the initial condition decays as ``d^t``; tiny
    negative values from rounding are set to zero.
    """
    T = c.size
    s = np.zeros(T)
    if T >= 2:
        s[1] = max(0.0, c[1] - d * c[0])
    for t in range(2, T):
        s[t] = max(0.0, c[t] - g1 * c[t - 1] - g2 * c[t - 2])
    return s


@numba.njit(cache=True)
def solve_penalized(y, g1, g2, d, r, lam, smin):
    """OASIS on ``y`` (shape (T,)) with AR roots ``d, r``; returns ``(c, s)``."""
    T = y.size
    tabs = kernel_tables(g1, g2, d, T)
    z = y - lam * penalty_weights(g1, g2, T)
    work = np.empty((8, T))
    n = pav(z, g1, g2, d, r, smin, tabs, work)
    c = np.empty(T)
    fill(c, n, d, tabs, work)
    return c, spikes_from_calcium(c, g1, g2, d)


def _as_trace(y: np.ndarray) -> np.ndarray:
    y = np.ascontiguousarray(y, dtype=np.float64).ravel()
    if y.size == 0:
        raise ValueError("empty trace")
    if not np.all(np.isfinite(y)):
        raise ValueError("trace contains NaN or infinite values")
    return y


def oasis_ar1(
    y: np.ndarray, g: float, *, lam: float = 0.0, smin: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse non-negative deconvolution of an AR(1) trace (exact, O(T)).

    Parameters
    ----------
    y : ndarray, shape (T,)
        Fluorescence trace, baseline already subtracted.
    g : float
        AR(1) coefficient, ``0 <= g < 1``.
    lam : float, optional
        Sparsity penalty on the spikes.
    smin : float, optional
        Minimal size of a non-zero spike.

    Returns
    -------
    c : ndarray, shape (T,)
        Denoised calcium, ``c >= 0``.
    s : ndarray, shape (T,)
        Spikes ``s_t = c_t - g c_{t-1} >= 0``; ``s_0 = 0`` (``c_0`` is the
        initial condition).

    Notes
    -----
    Solves ``min_c 1/2 ||y - c||^2 + lam sum_t s_t`` subject to ``c_0 >= 0``
    and ``s_t = c_t - g c_{t-1} in {0} U [smin, inf)`` for ``t >= 1`` (where
    ``sum_t s_t`` counts ``c_0``). For ``smin = 0`` this is a convex problem
    and the pool-adjacent-violators algorithm [1]_ solves it exactly.

    References
    ----------
    .. [1] Friedrich, Zhou & Paninski (2017) Fast online deconvolution of
       calcium imaging data. PLoS Comput Biol 13:e1005423,
       doi:10.1371/journal.pcbi.1005423
    """
    if not 0.0 <= g < 1.0:
        raise ValueError(f"g must be in [0, 1), got {g}")
    return solve_penalized(_as_trace(y), float(g), 0.0, float(g), 0.0, float(lam), float(smin))


def oasis_ar2(
    y: np.ndarray, g1: float, g2: float, *, lam: float = 0.0, smin: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse non-negative deconvolution of an AR(2) trace (greedy OASIS).

    Parameters
    ----------
    y : ndarray, shape (T,)
        Fluorescence trace, baseline already subtracted.
    g1, g2 : float
        AR(2) coefficients; the roots of ``z^2 - g1 z - g2`` must be real, the
        larger one in [0, 1).
    lam : float, optional
        Sparsity penalty on the spikes.
    smin : float, optional
        Minimal size of a non-zero spike.

    Returns
    -------
    c : ndarray, shape (T,)
        Denoised calcium, ``c >= 0``.
    s : ndarray, shape (T,)
        Spikes ``s_t = c_t - g1 c_{t-1} - g2 c_{t-2} >= 0``; ``s_0 = 0``.

    Notes
    -----
    Same objective as :func:`oasis_ar1` with the AR(2) kernel. Pools are merged
    greedily while the next pool's first value is below the continuation of
    the previous pool, as in [1]_; the result is a (usually exact) approximate
    solution. The initial condition decays with the larger root ``d``.

    References
    ----------
    .. [1] Friedrich, Zhou & Paninski (2017) PLoS Comput Biol 13:e1005423,
       doi:10.1371/journal.pcbi.1005423
    """
    d, r = ar_roots(float(g1), float(g2))
    return solve_penalized(_as_trace(y), float(g1), float(g2), d, r, float(lam), float(smin))
