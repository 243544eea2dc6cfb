"""Compile calcium-dask's numba kernels once, at image build time.

The kernels use ``@numba.njit(cache=True)``; running each one here on float64
traces (the dtype the package computes in) writes the machine code to
``$NUMBA_CACHE_DIR``, so worker processes load it instead of compiling on
their first task. A worker on a CPU of another family compiles again, once.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def ar_trace(g: tuple[float, ...], n: int = 600, seed: int = 0) -> np.ndarray:
    """A noisy autoregressive calcium trace driven by sparse spikes."""
    rng = np.random.default_rng(seed)
    spikes = (rng.random(n) < 0.03).astype(np.float64)
    c = np.zeros(n)
    for t in range(n):
        c[t] = spikes[t] + sum(gi * c[t - 1 - i] for i, gi in enumerate(g) if t - 1 - i >= 0)
    return c + 0.1 * rng.standard_normal(n) + 0.5


def warm() -> None:
    """Run every numba-compiled path (deconvolution, seeding, refit products, summary
    images, motion registration and warping) once."""
    from calcium_dask.cnmf.kernels.deconvolution import constrained_foopsi
    from calcium_dask.cnmf.kernels.oasis import oasis_ar1, oasis_ar2

    y1, y2 = ar_trace((0.9,)), ar_trace((1.3, -0.4))
    constrained_foopsi(y1, p=1)
    constrained_foopsi(y2, p=2)
    constrained_foopsi(y1, p=1, optimize_g=2)
    oasis_ar1(y1 - 0.5, 0.9, lam=0.1)
    oasis_ar2(y2 - 0.5, 1.3, -0.4, lam=0.1)
    _warm_patch_kernels()
    _warm_summary_kernels()
    _warm_motion_kernels()


def _warm_patch_kernels() -> None:
    """The numba kernels of CNMF seeding and the refit's products over time chunks."""
    import scipy.sparse as sp

    from calcium_dask.cnmf.kernels.init import greedy_roi
    from calcium_dask.cnmf.kernels.products import frames_dot_footprints, frames_dot_traces

    rng = np.random.default_rng(0)
    movie = (5 + rng.standard_normal((200, 16, 16))).astype(np.float32)
    greedy_roi(movie, K=1, gSig=2, min_snr=0.0, decay_frames=5.0)
    A = sp.random(256, 3, density=0.1, random_state=0, format="csc", dtype=np.float32)
    frames_dot_footprints(movie, A, np.ones((256, 1), np.float32))
    frames_dot_traces(movie, rng.standard_normal((3, 200)).astype(np.float32), A != 0)


def _warm_summary_kernels() -> None:
    """The summary images' fused pass, for the dtypes movies come in (one compilation each)."""
    from calcium_dask.summary.kernels import partial_sums

    frames = np.arange(3 * 8 * 8).reshape(3, 8, 8)
    for dtype in (np.float32, np.float64, np.uint16, np.int16, np.uint8, np.int8):
        partial_sums(frames.astype(dtype), offset=np.zeros((8, 8)))


def _warm_motion_kernels() -> None:
    """Registration's taper and the separable bicubic shift (frames arrive as float32 or
    as the movie's integers)."""
    from calcium_dask.motion.kernels._cubic import shift_cubic
    from calcium_dask.motion.kernels._spectral import NATIVE, taper, tapered

    frames = np.arange(2 * 16 * 16).reshape(2, 16, 16)
    for dtype in NATIVE:
        tapered(frames.astype(dtype), taper((16, 16), 4), norm=True)
        shift_cubic(frames.astype(dtype), np.array([[0.3, -1.2], [2.0, 0.5]]))


if __name__ == "__main__":
    if not os.environ.get("NUMBA_CACHE_DIR"):
        sys.exit("warm_numba.py: set NUMBA_CACHE_DIR to the directory the image keeps the cache in")
    warm()
    print(f"numba cache warmed in {os.environ['NUMBA_CACHE_DIR']}")
