"""A small simulated movie, motion-free, with its exact components (shared by the tests)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from calcium_dask.datasets import SimulationParams
from calcium_dask.datasets.scene import build_scene


@dataclass(frozen=True)
class SimMovie:
    Y: np.ndarray  # (T, H, W) float32, ADU, no motion
    A: sp.csc_matrix  # (N, K) true footprints, pixel y * W + x
    C: np.ndarray  # (K, T) true calcium, ADU at the footprint maximum
    b: np.ndarray  # (N, nb) true background (baseline + offset folded into the first)
    f: np.ndarray  # (nb, T)
    snr: np.ndarray
    dims: tuple[int, int]
    centers: np.ndarray
    radii: np.ndarray


@lru_cache(maxsize=4)
def sim_movie(seed: int = 1, T: int = 300, H: int = 64, W: int = 64, K: int = 10) -> SimMovie:
    """Render ``offset + gain * clean + noise`` directly from the ground truth."""
    p = SimulationParams.preset("small", T=T, H=H, W=W, K=K, seed=seed)
    truth = build_scene(p).truth
    clean = truth.clean_frames(0, T).astype(np.float64)
    rng = np.random.default_rng(seed + 1000)
    photons = rng.poisson(np.clip(clean, 0, None)).astype(np.float64)
    Y = (p.offset + p.gain * photons + rng.normal(0, p.read_sd, clean.shape)).astype(np.float32)
    fp = truth.footprints.reshape(K, -1)
    A = sp.csc_matrix(fp.T.astype(np.float64))
    C = p.gain * (truth.C.astype(np.float64) + truth.f0[:, None])
    N = H * W
    b = np.column_stack([p.offset + p.gain * truth.baseline.ravel(),
                         *(p.gain * truth.bg_spatial.reshape(-1, N))])
    f = np.vstack([np.ones((1, T)), truth.bg_temporal]).astype(np.float64)
    return SimMovie(Y=Y, A=A, C=C, b=b, f=f, snr=truth.snr, dims=(H, W),
                    centers=truth.centers, radii=truth.radii)
