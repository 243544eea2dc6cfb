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

__all__ = ["CNMFEOptions", "CNMFEPatch", "fit_patch_cnmfe", "NeuronJoin", "PatchJoin", "SAME_NEURON"]

# footprints of one neuron with a cosine of at least this are one neuron: measured on a simulated
# miniscope session (bench_onephoton seed 11, 21,600 frames, 4 patches x 4 time blocks), one
# neuron's footprints in two blocks had cosines of 0.80 (1st percentile) to 0.99 (median), two
# neurons' at most 0.51
SAME_NEURON = 0.7


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


class NeuronJoin:
    """The neurons of one patch fitted on consecutive time blocks, joined into one set as
    the blocks come (:meth:`add`, then :meth:`result`).

    A block's neuron whose footprint has a cosine of at least ``same`` with a neuron found
    before (in an earlier block, or earlier in this one: the strongest first) is that
    neuron; the others are new. A neuron's footprint is the average of the footprints
    joined in it, each weighted by the light it explains (its block's weight times its
    trace's norm); its trace over a block is the joined traces, projected on its footprint
    and added (one neuron split in two by a block's fit is whole again), 0 over the blocks
    where it was not found. It holds a footprint per neuron and the traces as given (the
    caller averages them to the rate it keeps), not the blocks.
    """

    def __init__(self, same: float = SAME_NEURON) -> None:
        self.same = same
        self.sums: list[np.ndarray] = []  # each neuron's weighted sum of footprints (dense: a patch)
        self.pieces: list[dict[int, np.ndarray]] = []  # each neuron's traces by their first sample
        self.samples = 0  # trace samples so far

    def add(self, A: sp.csc_matrix, C: np.ndarray, weight: float) -> None:
        """One block: unit-norm footprints ``A`` (N, K), traces ``C`` (K, T_b), ``weight``
        the block's (its samples at the rate it was fitted)."""
        Ad = A.toarray().astype(np.float64)
        C = np.asarray(C, np.float32)
        norms = np.linalg.norm(C, axis=1) if C.size else np.zeros(len(C))
        for k in np.argsort(-norms, kind="stable"):
            a = Ad[:, k]
            j, cos = self._closest(a)
            if cos < self.same:
                self.sums.append(np.zeros_like(a))
                self.pieces.append({})
                j, cos = len(self.sums) - 1, 1.0
            self.sums[j] += a * weight * max(float(norms[k]), 1e-12)
            piece = self.pieces[j].setdefault(self.samples, np.zeros(C.shape[1], np.float32))
            piece += np.float32(cos) * C[k]
        self.samples += C.shape[1]

    def _closest(self, a: np.ndarray) -> tuple[int, float]:
        """The neuron whose footprint is closest to ``a`` and their cosine (-1, 0.0: none)."""
        if not self.sums:
            return -1, 0.0
        S = np.stack(self.sums, axis=1)
        cos = (a @ S) / np.maximum(np.linalg.norm(S, axis=0), 1e-300)
        j = int(np.argmax(cos))
        return j, float(cos[j])

    def result(self, N: int) -> tuple[sp.csc_matrix, np.ndarray]:
        """``A`` (N, K) csc float32 unit-norm footprints and ``C`` (K, samples) float32."""
        C = np.zeros((len(self.sums), self.samples), np.float32)
        for j, pieces in enumerate(self.pieces):
            for t0, c in pieces.items():
                C[j, t0:t0 + len(c)] = c
        A = np.stack(self.sums, axis=1) if self.sums else np.zeros((N, 0))
        A /= np.maximum(np.linalg.norm(A, axis=0), 1e-300)
        return sp.csc_matrix(A, dtype=np.float32), C


class PatchJoin:
    """One patch's CNMF-E on consecutive time blocks joined into one :class:`CNMFEPatch`
    as the blocks come: neurons by :class:`NeuronJoin`, rings averaged by the blocks'
    samples (running sums), pixel noise their root-mean-square, seeds added up, the
    correlation and PNR images the largest over the blocks. It holds no block."""

    def __init__(self, same: float = SAME_NEURON) -> None:
        self.neurons = NeuronJoin(same)
        self.n = 0.0
        self.first: CNMFEPatch | None = None
        self.W: sp.csr_matrix | None = None
        self.b0 = self.sn2 = self.noise2 = 0.0
        self.corr = self.pnr = -np.inf
        self.seeds = 0

    def add(self, part: CNMFEPatch, C: np.ndarray) -> None:
        """One block's result, its traces kept as ``C`` (``part.C`` or its average)."""
        n = float(part.C.shape[1])
        self.neurons.add(part.A, C, n)
        W = part.ring.W.astype(np.float64) * n
        self.W = W if self.W is None else self.W + W
        self.b0 = self.b0 + part.ring.b0.astype(np.float64) * n
        self.sn2 = self.sn2 + part.sn.astype(np.float64) ** 2 * n
        self.noise2 = self.noise2 + part.images.noise.astype(np.float64) ** 2 * n
        self.corr = np.maximum(self.corr, part.images.correlation)
        self.pnr = np.maximum(self.pnr, part.images.pnr)
        self.seeds += part.n_seeds
        self.n += n
        self.first = self.first or part

    def result(self, own: tuple[int, int, int, int] | None = None) -> CNMFEPatch:
        """The joined patch; with ``own`` (the patch's tile) only the neurons centred in it
        (joined first: a neuron's centre moves a little from block to block)."""
        first, n = self.first, max(self.n, 1.0)
        assert first is not None, "no block was added"
        A, C = self.neurons.result(len(first.sn))
        ring = RingModel(sp.csr_matrix(self.W / n, dtype=np.float32), np.asarray(self.b0 / n, np.float32),
                         first.ring.dims, first.ring.ssub_B)
        images = CorrPNR(np.asarray(self.corr, np.float32), np.asarray(self.pnr, np.float32),
                         np.sqrt(self.noise2 / n).astype(np.float32))
        return _owned(CNMFEPatch(A, C, ring, np.sqrt(self.sn2 / n).astype(np.float32), first.dims, self.seeds,
                                 images), own)
