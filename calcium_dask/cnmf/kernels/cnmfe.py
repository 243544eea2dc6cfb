"""CNMF-E on one patch held in memory: corr_pnr seeds, the ring background, spatial and temporal
updates on the movie less its background, merging, and more seeds from the residual."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .corr_pnr import CorrPNR, SeedOptions, seed_corr_pnr
from .init import _centers, _finite
from .merge import merge_components, remove_empty
from .noise import noise_psd
from .ring import RingModel, fit_ring, ring_radius
from .spatial import update_spatial
from .temporal import update_temporal

__all__ = ["CNMFEOptions", "CNMFEPatch", "fit_patch_cnmfe"]


@dataclass(frozen=True)
class CNMFEOptions:
    """What :func:`fit_patch_cnmfe` needs (CaImAn's names).

    ``seeds`` (:class:`~.corr_pnr.SeedOptions`); ``ring_size_factor`` (ring radius over
    ``gSiz``), ``ssub_B``; ``init_iter`` (seeding rounds: later rounds seed in the residual);
    ``n_iter`` rounds of (background, spatial, temporal, merge); ``merge_thr``,
    ``max_merge_area``, ``do_merge``; temporal options ``p``, ``bas_nonneg``, ``noise_range``,
    ``noise_method``, ``lags``, ``fudge_factor``; ``spatial`` keywords of
    :func:`~.spatial.update_spatial`.
    """

    seeds: SeedOptions
    ring_size_factor: float = 1.5
    ssub_B: int = 2
    init_iter: int = 2
    n_iter: int = 2
    merge_thr: float = 0.85
    max_merge_area: int | None = None
    do_merge: bool = True
    p: int = 1
    bas_nonneg: bool = False
    noise_range: tuple[float, float] = (0.25, 0.5)
    noise_method: str = "mean"
    lags: int = 5
    fudge_factor: float = 0.96
    spatial: dict = field(default_factory=dict)

    @property
    def radius(self) -> int:
        """Ring radius, blocks."""
        return ring_radius(max(self.seeds.gSiz), self.ring_size_factor, self.ssub_B)


@dataclass
class CNMFEPatch:
    """CNMF-E estimates on one patch (pixel index ``y * w + x``).

    ``A`` (N, K) csc, unit-norm footprints; ``C`` (K, T) denoised traces; ``ring`` the
    background; ``sn`` (N,) pixel noise; ``dims`` (h, w); ``n_seeds`` seeds taken;
    ``images`` the correlation and PNR images the first seeds were chosen on.
    """

    A: sp.csc_matrix
    C: np.ndarray
    ring: RingModel
    sn: np.ndarray
    dims: tuple[int, int]
    n_seeds: int
    images: CorrPNR


def _neurons(A: sp.csc_matrix, C: np.ndarray) -> np.ndarray:
    """``A C`` as (T, N) float32: one dense product straight into frame order (the sparse
    product and its transposed copy took 4 times as long on a patch's few dozen units)."""
    return np.asarray(C, np.float32).T @ A.T.toarray().astype(np.float32, copy=False) if A.shape[1] else 0.0


def _update(Yr: np.ndarray, ring: RingModel, A: sp.csc_matrix, C: np.ndarray, sn: np.ndarray,
            opt: CNMFEOptions) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray]:
    """One round on ``Y - B``: spatial update, temporal update; returns A, C and ``Y - B``."""
    T = len(Yr)
    Yb = Yr - ring.background(Yr, _neurons(A, C))
    none_b = np.zeros((Yr.shape[1], 0), np.float32)
    Cf = C.astype(np.float32)
    res = update_spatial(Yb.T @ Cf.T, Cf.astype(np.float64) @ Cf.T, A, none_b, dims=ring.dims, sn=sn,
                         update_background=False, **opt.spatial)
    A, C = res.A, res.scale_traces(C)
    A, C, _ = remove_empty(A, C)
    if A.shape[1]:
        Ad = A.toarray()
        tres = update_temporal((Yb @ Ad).T, Ad.T.astype(np.float64) @ Ad, C, np.zeros((0, T), np.float32),
                               p=opt.p, bas_nonneg=opt.bas_nonneg, noise_range=opt.noise_range,
                               noise_method=opt.noise_method, lags=opt.lags, fudge_factor=opt.fudge_factor)
        A, C, _ = remove_empty(A, tres.C)
    return A, C, Yb


def fit_patch_cnmfe(Y: np.ndarray, opt: CNMFEOptions, *,
                    own: tuple[int, int, int, int] | None = None) -> CNMFEPatch:
    """CNMF-E (Zhou et al. 2018) on a (T, h, w) patch.

    Parameters
    ----------
    Y : ndarray (T, h, w)
    opt : CNMFEOptions
    own : (y0, y1, x0, x1), optional
        The patch's own tile: only the neurons centred in it are returned (the others are
        fitted too, so that their light is not taken by the ones returned).

    Returns
    -------
    CNMFEPatch

    Notes
    -----
    Seeds from the correlation and PNR images of the filtered movie
    (:func:`~.corr_pnr.seed_corr_pnr`); the ring background is fitted to the movie less the
    neurons (:func:`~.ring.fit_ring`); then ``n_iter`` rounds of: spatial and temporal
    updates of the neurons on the movie less its background, a merge of overlapping
    components whose traces correlate above ``merge_thr``, a new ring background. After the
    first round, ``init_iter - 1`` more seeding passes look for neurons in the residual
    (movie less background less neurons), as CaImAn's ``greedyROI_corr`` does: a dim neuron
    next to a bright one stands out once the bright one is gone.
    """
    Y = _finite(Y)
    T, h, w = Y.shape
    Yr = Y.reshape(T, h * w)
    sn = noise_psd(Yr.T, noise_range=opt.noise_range, noise_method=opt.noise_method)
    A, C, images = seed_corr_pnr(Y, opt.seeds)
    n_seeds = A.shape[1]
    ring = fit_ring(Yr, _neurons(A, C) if n_seeds else None, dims=(h, w), radius=opt.radius, ssub_B=opt.ssub_B)
    for it in range(opt.n_iter):
        if A.shape[1]:
            A, C, Yb = _update(Yr, ring, A, C, sn, opt)
        else:
            Yb = Yr - ring.background(Yr)
        if it < opt.init_iter - 1:
            A, C, more = _reseed(Yb, A, C, (h, w), opt)
            n_seeds += more
        if opt.do_merge and A.shape[1] > 1:
            m = merge_components(A, C, merge_thr=opt.merge_thr, max_merge_area=opt.max_merge_area)
            A, C = m.A, m.C
        ring = fit_ring(Yr, _neurons(A, C) if A.shape[1] else None, dims=(h, w), radius=opt.radius,
                        ssub_B=opt.ssub_B)
    if A.shape[1]:
        A, C, _ = _update(Yr, ring, A, C, sn, opt)
    return _owned(CNMFEPatch(sp.csc_matrix(A, dtype=np.float32), np.asarray(C, np.float32), ring,
                             np.asarray(sn, np.float32), (h, w), n_seeds, images), own)


def _reseed(Yb: np.ndarray, A: sp.csc_matrix, C: np.ndarray, dims: tuple[int, int],
            opt: CNMFEOptions) -> tuple[sp.csc_matrix, np.ndarray, int]:
    """Seeds in the residual ``Y - B - A C``, appended to the components."""
    T = len(Yb)
    residual = (Yb - _neurons(A, C)) if A.shape[1] else Yb
    seeds = opt.seeds
    if seeds.max_number is not None:
        left = seeds.max_number - A.shape[1]
        if left <= 0:
            return A, C, 0
        seeds = SeedOptions(**{**seeds.__dict__, "max_number": left})
    A2, C2, _ = seed_corr_pnr(residual.reshape(T, *dims), seeds)
    if not A2.shape[1]:
        return A, C, 0
    return sp.hstack([A, A2]).tocsc(), np.vstack([C, C2]).astype(np.float32), A2.shape[1]


def _owned(res: CNMFEPatch, own: tuple[int, int, int, int] | None) -> CNMFEPatch:
    if own is None or res.A.shape[1] == 0:
        return res
    cy, cx = _centers(res.A, res.dims).T
    keep = np.flatnonzero((cy >= own[0] - 0.5) & (cy < own[1] - 0.5) & (cx >= own[2] - 0.5) & (cx < own[3] - 0.5))
    return CNMFEPatch(res.A[:, keep], res.C[keep], res.ring, res.sn, res.dims, res.n_seeds, res.images)
