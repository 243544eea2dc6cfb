"""Temporal update of CNMF traces from sufficient statistics.

The update reads the movie only through ``AtY = [A b]^T Y`` (K+nb, T) and
``AtA = [A b]^T [A b]``, which can be summed over pixel blocks or computed per time chunk and
concatenated, so it serves one patch and the whole field of view alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .deconvolution import constrained_foopsi
from .hals import background_traces, greedy_groups
from .noise import noise_psd

__all__ = ["TemporalResult", "residual_traces", "update_temporal"]


@dataclass
class TemporalResult:
    """Result of :func:`update_temporal` (CaImAn's names).

    Attributes
    ----------
    C : (K, T) float32
        Denoised calcium traces (baseline removed).
    f : (nb, T) float32
        Background traces.
    S : (K, T) float32
        Deconvolved activity.
    YrA : (K, T) float32
        Residual traces: ``C + YrA`` is each component's raw trace (baseline included).
    bl, c1, sn, lam : (K,) float
        Baseline, initial calcium, noise and sparsity penalty of each trace.
    g : (K, p) float
        AR coefficients of each trace.
    """

    C: np.ndarray
    f: np.ndarray
    S: np.ndarray
    YrA: np.ndarray
    bl: np.ndarray
    c1: np.ndarray
    g: np.ndarray
    sn: np.ndarray
    lam: np.ndarray


def _as_matrix(AtA: np.ndarray | sp.spmatrix) -> np.ndarray | sp.csc_matrix:
    if sp.issparse(AtA):
        return sp.csc_matrix(AtA, dtype=np.float64)
    return np.asarray(AtA, dtype=np.float64)


def residual_traces(
    AtY: np.ndarray, AtA: np.ndarray | sp.spmatrix, Cf: np.ndarray
) -> np.ndarray:
    """Residual traces ``YrA = (AtY - AtA Cf) / diag(AtA)``.

    Parameters
    ----------
    AtY : (K, T) array
    AtA : (K, K) array or sparse matrix
    Cf : (K, T) array
        Current traces (neurons and background).

    Returns
    -------
    (K, T) float32 array
        Zero for components with an empty footprint.
    """
    M = _as_matrix(AtA)
    d = np.asarray(M.diagonal(), dtype=np.float64)
    d = np.where(d > 0, d, np.inf)
    return ((AtY - M @ Cf) / d[:, None]).astype(np.float32)


def _background(AtY, M, Cf, K):
    """Exact non-negative least-squares background traces given the neuron traces."""
    Mb = M[K:].toarray() if sp.issparse(M) else M[K:]
    return background_traces(AtY[K:] - Mb[:, :K] @ Cf[:K], Mb[:, K:], Cf[K:]).astype(np.float64)


@dataclass
class _Estimates:
    """Per-trace deconvolution state carried across sweeps."""

    S: np.ndarray
    bl: np.ndarray
    c1: np.ndarray
    g: np.ndarray
    sn: np.ndarray
    lam: np.ndarray
    p: int
    g_known: bool
    sn_known: bool
    opts: dict

    @classmethod
    def start(cls, K, T, p, g, sn, opts) -> _Estimates:
        G = np.zeros((K, p)) if g is None else np.asarray(g, dtype=float).reshape(K, p).copy()
        SN = np.full(K, np.nan) if sn is None else np.asarray(sn, dtype=float).copy()
        z = np.zeros(K)
        return cls(np.zeros((K, T)), z, z.copy(), G, SN, z.copy(), p, g is not None,
                   sn is not None, opts)

    def deconvolve(self, raw: np.ndarray, G: np.ndarray, empty: np.ndarray,
                   reuse: bool) -> np.ndarray:
        """Denoised traces of the components ``G`` from their raw traces (rows of ``raw``)."""
        new = np.zeros_like(raw)
        for j, k in enumerate(G):
            if empty[j]:  # empty footprint: no data, no trace
                continue
            g = self.g[k] if (self.g_known or reuse) and self.p else None
            sn = self.sn[k] if (self.sn_known or reuse) else None
            out = _deconvolve(raw[j], self.p, g, sn, self.bl[k] if reuse else None, self.opts)
            new[j], self.S[k], self.bl[k], self.c1[k], gk, self.sn[k], self.lam[k] = out
            if self.p:
                self.g[k] = gk
        return new


def _deconvolve(y, p, g, sn, bl, opts):
    """One trace: OASIS (p > 0) or the non-negative part (p = 0)."""
    if p == 0:
        s_ = noise_psd(y, noise_range=opts["noise_range"], noise_method=opts["noise_method"])
        c = np.maximum(y, 0)
        return c, c, 0.0, 0.0, np.zeros(0), (s_ if sn is None else sn), 0.0
    r = constrained_foopsi(y, p=p, g=g, sn=sn, b=bl, **opts)
    c = r.c + r.c1 * r.d ** np.arange(y.size)  # C keeps the initial transient, as CaImAn's
    return c, r.s, r.b, r.c1, np.atleast_1d(r.g), r.sn, r.lam


def update_temporal(
    AtY: np.ndarray,
    AtA: np.ndarray | sp.spmatrix,
    C: np.ndarray,
    f: np.ndarray,
    *,
    p: int = 1,
    bas_nonneg: bool = False,
    iterations: int = 2,
    noise_range: tuple[float, float] = (0.25, 0.5),
    noise_method: str = "mean",
    lags: int = 5,
    fudge_factor: float = 0.96,
    s_min: float | None = None,
    optimize_g: int | bool = 0,
    g: np.ndarray | None = None,
    sn: np.ndarray | None = None,
    reestimate: bool = True,
    tol: float = 1e-3,
) -> TemporalResult:
    """Update traces by block coordinate descent with deconvolution (CaImAn's temporal step).

    Parameters
    ----------
    AtY : (K + nb, T) array
        ``[A b]^T Y``, neurons first.
    AtA : (K + nb, K + nb) array or sparse matrix
        ``[A b]^T [A b]``.
    C : (K, T) array
        Current neuron traces.
    f : (nb, T) array
        Current background traces.
    p : int
        AR order; 0 keeps the non-negative part of each raw trace.
    bas_nonneg : bool
        Constrain each trace's baseline to be non-negative.
    iterations : int
        Sweeps over all components (stops early when C changes by less than ``tol``).
    noise_range, noise_method, lags, fudge_factor
        Noise and AR estimation options of ``constrained_foopsi``.
    s_min, optimize_g
        Minimal spike size and decay refinement of ``constrained_foopsi``.
    g : (K, p) array, optional
        Known AR coefficients (default: estimated from each raw trace).
    sn : (K,) array, optional
        Known noise of each trace (default: estimated).
    reestimate : bool
        Re-estimate AR coefficients, noise and baseline of each trace at every sweep (the
        raw traces change as the neighbours' traces improve). False fixes them after the
        first sweep, as CaImAn does; known ``g`` and ``sn`` are never re-estimated.
    tol : float
        Relative change of the traces below which the sweeps stop.

    Returns
    -------
    TemporalResult

    Notes
    -----
    Components are split into groups with disjoint footprints (``AtA`` zero between them),
    whose updates do not interact. For a neuron k its raw trace is
    ``C_k + (AtY_k - AtA_k [C; f]) / AtA_kk``, the least-squares trace given all the
    others; it is denoised by noise-constrained OASIS deconvolution. Background traces get
    the exact non-negative least-squares update given the neurons.
    Pnevmatikakis et al. 2016, doi:10.1016/j.neuron.2015.11.037;
    Friedrich et al. 2017, doi:10.1371/journal.pcbi.1005423.
    """
    K, nb = C.shape[0], f.shape[0]
    M = _as_matrix(AtA)
    d = np.asarray(M.diagonal(), dtype=np.float64)
    d = np.where(d > 0, d, np.inf)
    Mn = (sp.diags(1.0 / d) @ M).tocsc() if sp.issparse(M) else M / d[:, None]
    Cf = np.vstack([C, f]).astype(np.float64)
    YrA = AtY / d[:, None] - Mn @ Cf
    est = _Estimates.start(K, AtY.shape[1], p, g, sn, dict(
        bas_nonneg=bas_nonneg, noise_range=tuple(noise_range), noise_method=noise_method,
        lags=lags, fudge_factor=fudge_factor, s_min=s_min, optimize_g=optimize_g))
    groups = greedy_groups(M[:K, :K]) if K else []
    for it in range(iterations):
        Cold = Cf[:K].copy()
        for G in groups:
            new = est.deconvolve(Cf[G] + YrA[G], G, ~np.isfinite(d[G]), it > 0 and not reestimate)
            YrA -= Mn[:, G] @ (new - Cf[G])
            Cf[G] = new
        if nb:
            new = _background(AtY, M, Cf, K)
            YrA -= np.asarray(Mn[:, K:] @ (new - Cf[K:]))
            Cf[K:] = new
        if K and np.linalg.norm(Cf[:K] - Cold) <= tol * np.linalg.norm(Cf[:K]):
            break
    f32 = np.float32
    return TemporalResult(Cf[:K].astype(f32), Cf[K:].astype(f32), est.S.astype(f32),
                          YrA[:K].astype(f32), est.bl, est.c1, est.g, est.sn, est.lam)
