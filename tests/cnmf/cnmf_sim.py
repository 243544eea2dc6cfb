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
