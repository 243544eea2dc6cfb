"""Small simulated patches with planted footprints and traces (shared by the CNMF tests)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CENTERS = ((9, 10), (10, 29), (29, 9), (24, 25), (29, 30))  # the last two overlap


@dataclass
class Sim:
    Y: np.ndarray  # (T, h, w) float32
    A: np.ndarray  # (N, K) unit-norm footprints
    C: np.ndarray  # (K, T) calcium
    S: np.ndarray  # (K, T) spikes
    b: np.ndarray  # (N, nb)
    f: np.ndarray  # (nb, T)
    g: float
    sn: float
    centers: np.ndarray  # (K, 2)


def footprint(center, dims, sigma=2.0, radius=5.5):
    yy, xx = np.mgrid[: dims[0], : dims[1]]
    d2 = (yy - center[0]) ** 2 + (xx - center[1]) ** 2
    a = np.exp(-d2 / (2 * sigma**2)) * (d2 <= radius**2)
    return (a / np.linalg.norm(a)).ravel()


def simulate(
    T=600, dims=(40, 40), centers=CENTERS, g=0.92, rate=0.03, amp=(10.0, 20.0),
    sn=0.5, nb=1, seed=0,
) -> Sim:
    rng = np.random.default_rng(seed)
    K = len(centers)
    A = np.stack([footprint(c, dims) for c in centers], 1)
    S = (rng.random((K, T)) < rate) * rng.uniform(*amp, (K, T))
    C = np.zeros((K, T))
    for t in range(T):
        C[:, t] = S[:, t] + (g * C[:, t - 1] if t else 0)
    yy, xx = np.mgrid[: dims[0], : dims[1]]
    bs = [np.full(dims, 2.0), 2.0 * xx / dims[1]]
    b = np.stack([x.ravel() for x in bs[:nb]], 1) if nb else np.zeros((dims[0] * dims[1], 0))
    tt = np.arange(T)
    fs = [1.0 + 0.1 * np.sin(2 * np.pi * tt / 400), 1.0 + 0.6 * np.cos(2 * np.pi * tt / 250)]
    f = np.stack(fs[:nb]) if nb else np.zeros((0, T))
    Y = A @ C + b @ f + sn * rng.standard_normal((dims[0] * dims[1], T))
    Y = np.ascontiguousarray(Y.T.reshape(T, *dims), dtype=np.float32)
    return Sim(Y, A, C, S, b, f, g, sn, np.asarray(centers, float))


def corr(x, y):
    x = np.asarray(x, float).ravel() - np.mean(x)
    y = np.asarray(y, float).ravel() - np.mean(y)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12))


def match(A_est, A_true):
    """For each true footprint, the index and correlation of the best-matching estimate."""
    Ae = A_est.toarray() if hasattr(A_est, "toarray") else np.asarray(A_est)
    M = np.array([[corr(Ae[:, j], A_true[:, k]) for j in range(Ae.shape[1])]
                  for k in range(A_true.shape[1])])
    idx = M.argmax(1)
    return idx, M[np.arange(len(idx)), idx]


def _calcium(rng, K, T, rate, amp, g=0.9):
    S = (rng.random((K, T)) < rate) * rng.uniform(*amp, (K, T))
    C = np.zeros((K, T))
    for t in range(T):
        C[:, t] = S[:, t] + (g * C[:, t - 1] if t else 0)
    return C


def with_background(kind, *, seed=0, T=600, dims=(40, 40), amp=8.0, sn=0.5):
    """Four neurons under a strong background that CaImAn's greedy seeding mistakes for cells.

    ``kind='drift'``: a smooth bump whose level wanders slowly (bleaching, drift, slow
    neuropil). ``kind='neuropil'``: brief events shared by the whole patch with a spatially
    varying gain, dimmer along a vessel-like stripe (out-of-focus neuropil).
    Returns ``(Y (T, h, w) float32, A (N, 4), C (4, T), centres (4, 2))``.
    """
    rng = np.random.default_rng(seed)
    centers = [(9, 10), (10, 29), (29, 9), (28, 28)]
    A = np.stack([footprint(c, dims) for c in centers], 1)
    C = _calcium(rng, len(centers), T, 0.02, (8.0, 15.0))
    yy, xx = np.mgrid[: dims[0], : dims[1]]
    if kind == "drift":
        gain = np.exp(-((yy - 20) ** 2 + (xx - 18) ** 2) / (2 * 12.0**2)).ravel()
        trace = np.convolve(np.cumsum(rng.standard_normal(T)), np.ones(60) / 60, "same")
    else:
        gain = (1.0 + 0.3 * np.cos(xx / 7.0) - 0.7 * (np.abs(yy - xx - 2) < 2)).ravel()
        trace = _calcium(rng, 1, T, 0.01, (1.0, 1.0), g=0.93)[0]
    trace = (trace - trace.min()) / np.ptp(trace)
    Y = A @ C + 10 + amp * np.outer(gain, trace) + sn * rng.standard_normal((A.shape[0], T))
    return np.ascontiguousarray(Y.T.reshape(T, *dims), np.float32), A, C, np.asarray(centers, float)


def with_motion_events(*, seed=0, T=600, dims=(40, 40), amp=0.2, bright=30.0):
    """Two dim active neurons among bright, silent cells, with brief residual displacements.

    What motion correction leaves: shifts of ``amp`` pixels lasting half a second, a few
    times, which flicker the edges of the bright cells like transients.
    Returns ``(Y (T, h, w) float32, centres of the active neurons (2, 2))``.
    """
    import cv2

    rng = np.random.default_rng(seed)
    cells = [(10, 10), (12, 30), (30, 12)]
    active = [(29, 29), (20, 20)]
    static = 10.0 + sum(footprint(c, dims, sigma=2.5, radius=6.0).reshape(dims) for c in cells)
    static = 10.0 + (static - 10.0) * bright / (static - 10.0).max()
    A = np.stack([footprint(c, dims) for c in active], 1)
    C = _calcium(rng, 2, T, 0.02, (8.0, 15.0))
    shifts = 0.05 * rng.standard_normal((T, 2))
    for t0 in rng.choice(T - 20, 6, replace=False):
        shifts[t0 : t0 + 15] += amp * rng.choice([-1, 1], 2)
    frames = [cv2.warpAffine(static.astype(np.float32), np.float32([[1, 0, s[1]], [0, 1, s[0]]]),
                             dims[::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
              for s in shifts]
    Y = np.stack(frames) + (A @ C).T.reshape(T, *dims) + 0.5 * rng.standard_normal((T, *dims))
    return Y.astype(np.float32), np.asarray(active, float)
