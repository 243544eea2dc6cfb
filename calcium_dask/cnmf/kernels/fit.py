"""The whole CNMF on one patch held in memory (CaImAn's ``CNMF.fit`` on a patch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .init import _centers, _finite, initialize_components
from .merge import merge_components, remove_empty
from .noise import noise_psd
from .spatial import update_spatial
from .temporal import TemporalResult, residual_traces, update_temporal

__all__ = ["PatchResult", "fit_patch", "sufficient_statistics"]


@dataclass
class PatchResult:
    """CNMF estimates on one patch (CaImAn's names; pixel index ``y * w + x``).

    Attributes
    ----------
    A : (N, K) csc float32
        Footprints, unit L2 norm.
    C, S, YrA : (K, T) float32
        Denoised traces, deconvolved activity, residual traces (``C + YrA`` is the raw trace).
    b : (N, nb) float32, f : (nb, T) float32
        Background footprints and traces.
    sn : (N,) float
        Pixel noise.
    g : (K, p) float
        AR coefficients (NaN after ``only_init``).
    bl, c1, neurons_sn : (K,) float
        Baseline, initial calcium and noise of each trace.
    dims : (h, w)
    """

    A: sp.csc_matrix
    C: np.ndarray
    S: np.ndarray
    YrA: np.ndarray
    b: np.ndarray
    f: np.ndarray
    sn: np.ndarray
    g: np.ndarray
    bl: np.ndarray
    c1: np.ndarray
    neurons_sn: np.ndarray
    dims: tuple[int, int]


def sufficient_statistics(
    Yr: np.ndarray, A: sp.spmatrix, b: np.ndarray, C: np.ndarray, f: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``AtY, AtA, YCt, CCt`` of an in-memory (T, N) movie for ``[A b]`` and ``[C; f]``.

    Returns
    -------
    AtY : (K+nb, T) float32, AtA : (K+nb, K+nb) float64, YCt : (N, K+nb) float32,
    CCt : (K+nb, K+nb) float64
    """
    return (*_footprint_stats(Yr, A, b), *_trace_stats(Yr, C, f))


def _footprint_stats(Yr, A, b):
    # a patch's footprints are small enough to multiply densely (one BLAS call, no copy of Y)
    Ab = np.hstack([A.toarray() if sp.issparse(A) else A, b]).astype(np.float32)
    return (Yr @ Ab).T, Ab.T.astype(np.float64) @ Ab


def _trace_stats(Yr, C, f):
    Cf = np.vstack([C, f]).astype(np.float32)
    return Yr.T @ Cf.T, Cf.astype(np.float64) @ Cf.T


def _spatial_step(Yr, A, C, b, f, dims, sn, opts):
    YCt, CCt = _trace_stats(Yr, C, f)
    res = update_spatial(YCt, CCt, A, b, dims=dims, sn=sn, **opts)
    return res.A, res.scale_traces(C), res.b


def _select(t: TemporalResult, keep: np.ndarray) -> TemporalResult:
    return TemporalResult(t.C[keep], t.f, t.S[keep], t.YrA[keep], t.bl[keep], t.c1[keep],
                          t.g[keep], t.sn[keep], t.lam[keep])


def fit_patch(
    Y: np.ndarray,
    *,
    K: int,
    gSig: float | tuple[float, float],
    gSiz: int | tuple[int, int] | None = None,
    p: int = 0,
    nb: int = 1,
    merge_thr: float = 0.85,
    max_merge_area: int | None = None,
    method_init: str = "greedy_roi",
    ssub: int = 1,
    tsub: int = 1,
    noise_range: tuple[float, float] = (0.25, 0.5),
    noise_method: str = "mean",
    lags: int = 5,
    max_num_samples_fft: int = 3072,
    bas_nonneg: bool = False,
    fudge_factor: float = 0.96,
    do_merge: bool = True,
    only_init: bool = True,
    n_iter: int = 2,
    nIter: int = 5,
    maxIter: int = 5,
    rolling_sum: bool = True,
    rolling_length: int = 100,
    normalize_init: bool = True,
    temporal_iterations: int = 2,
    spatial_options: dict | None = None,
    temporal_options: dict | None = None,
    detrend_window: int = 0,
    min_snr_init: float | None = None,
    decay_frames: float = 0.0,
    remove_common: bool = False,
    remove_motion: bool = False,
    own: tuple[int, int, int, int] | None = None,
) -> PatchResult:
    """Run CNMF on one patch: noise, initialisation, spatial/temporal updates, merging.

    Parameters
    ----------
    Y : (T, h, w) array
        Patch movie, time first.
    K, gSig, gSiz, ssub, tsub, nIter, maxIter, rolling_sum, rolling_length, normalize_init
        Initialisation options (see :func:`~calcium_dask.cnmf.kernels.init.initialize_components`).
    p, bas_nonneg, noise_range, noise_method, lags, fudge_factor, temporal_iterations
        Temporal-update options (see :func:`~calcium_dask.cnmf.kernels.temporal.update_temporal`);
        ``noise_range``/``noise_method`` also give the pixel noise.
    max_num_samples_fft : int
        Frames of the pixel noise estimate: a longer patch uses three blocks of a third
        of this many frames (start, middle, end; see
        :func:`~calcium_dask.cnmf.kernels.noise.noise_psd`).
    nb : int
        Background components.
    merge_thr : float
        Trace correlation above which overlapping components merge.
    max_merge_area : int or None
        Largest area of a merged component, pixels (see :func:`merge_components`).
    method_init : {'greedy_roi'}
    do_merge : bool
        Merge between the first and the second spatial/temporal round.
    only_init : bool
        Stop after initialisation and HALS; C is then HALS's non-negative trace, S is zero,
        g is NaN (CaImAn's ``only_init_patch``: the traces come from the refit).
    n_iter : int
        Rounds of (spatial update, temporal update), with a merge after each but the last.
    spatial_options, temporal_options : dict, optional
        Extra keywords of :func:`~calcium_dask.cnmf.kernels.spatial.update_spatial` and
        :func:`~calcium_dask.cnmf.kernels.temporal.update_temporal`.
    detrend_window, min_snr_init, decay_frames, remove_common, remove_motion : optional
        Seeding options ``detrend_window``, ``min_snr``, ``decay_frames``,
        ``remove_common`` and ``remove_motion`` of :func:`~calcium_dask.cnmf.kernels.init.greedy_roi`.
    own : (y0, y1, x0, x1), optional
        The patch's own tile: up to K seeds are taken inside it (seeds outside are fitted
        as well, to explain the neurons of the overlaps), and only the components whose
        centre of mass lies inside it are returned.

    Returns
    -------
    PatchResult

    Notes
    -----
    Pnevmatikakis et al. 2016, doi:10.1016/j.neuron.2015.11.037; Giovannucci et al. 2019,
    doi:10.7554/eLife.38173.
    """
    if method_init != "greedy_roi":
        raise ValueError(f"method_init must be 'greedy_roi', got {method_init!r}")
    if n_iter < 1:
        raise ValueError(f"n_iter must be at least 1, got {n_iter}")
    Y = _finite(Y)
    T, h, w = Y.shape
    dims = (h, w)
    Yr = Y.reshape(T, h * w)
    sn = noise_psd(Yr.T, noise_range=noise_range, noise_method=noise_method,
                   max_num_samples_fft=max_num_samples_fft)
    A, C, b, f, _ = initialize_components(
        Y, K=K, gSig=gSig, gSiz=gSiz, nIter=nIter, maxIter=maxIter, ssub=ssub, tsub=tsub,
        nb=nb, rolling_sum=rolling_sum, rolling_length=rolling_length,
        normalize_init=normalize_init, detrend_window=detrend_window, min_snr=min_snr_init,
        decay_frames=decay_frames, remove_common=remove_common, remove_motion=remove_motion,
        own=own)
    A, C, _ = remove_empty(A, C)
    if only_init:
        res = _init_result(Yr, A, C, b, f, sn, dims, p, noise_range, noise_method)
        return _owned(res, own)
    topts = dict(p=p, bas_nonneg=bas_nonneg, iterations=temporal_iterations,
                 noise_range=noise_range, noise_method=noise_method, lags=lags,
                 fudge_factor=fudge_factor, **(temporal_options or {}))
    for it in range(n_iter):
        A, C, b = _spatial_step(Yr, A, C, b, f, dims, sn, spatial_options or {})
        AtY, AtA = _footprint_stats(Yr, A, b)
        tres = update_temporal(AtY, AtA, C, f, **topts)
        f = tres.f
        A, C, keep = remove_empty(A, tres.C)
        tres = _select(tres, keep)
        if do_merge and it < n_iter - 1 and A.shape[1] > 1:
            m = merge_components(A, C, merge_thr=merge_thr, max_merge_area=max_merge_area)
            A, C = m.A, m.C
    res = PatchResult(A.astype(np.float32), tres.C, tres.S, tres.YrA, b, f, sn, tres.g,
                      tres.bl, tres.c1, tres.sn, dims)
    return _owned(res, own)


def _owned(res: PatchResult, own: tuple[int, int, int, int] | None) -> PatchResult:
    """The components whose centre of mass lies in the tile ``own`` (all when None)."""
    if own is None or res.A.shape[1] == 0:
        return res
    cy, cx = _centers(res.A, res.dims).T
    keep = np.flatnonzero((cy >= own[0] - 0.5) & (cy < own[1] - 0.5)
                          & (cx >= own[2] - 0.5) & (cx < own[3] - 0.5))
    return PatchResult(res.A[:, keep], res.C[keep], res.S[keep], res.YrA[keep], res.b, res.f,
                       res.sn, res.g[keep], res.bl[keep], res.c1[keep], res.neurons_sn[keep],
                       res.dims)


def _init_result(Yr, A, C, b, f, sn, dims, p, noise_range, noise_method) -> PatchResult:
    """PatchResult of the initialisation alone (traces not deconvolved)."""
    norms = np.sqrt(np.asarray(A.multiply(A).sum(0)).ravel())
    A = (A @ sp.diags(1.0 / norms)).tocsc().astype(np.float32)
    C = (C * norms[:, None]).astype(np.float32)
    AtY, AtA = _footprint_stats(Yr, A, b)
    YrA = residual_traces(AtY, AtA, np.vstack([C, f]))[: A.shape[1]]
    K = A.shape[1]
    nsn = (noise_psd(C + YrA, noise_range=noise_range, noise_method=noise_method)
           if K else np.zeros(0))
    z = np.zeros(K)
    return PatchResult(A, C, np.zeros_like(C), YrA, b, f, sn, np.full((K, p), np.nan),
                       z, z.copy(), np.atleast_1d(nsn), dims)
