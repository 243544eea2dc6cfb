"""CNMF-E's initialisation: seeds from the local correlation and peak-to-noise ratio images of
the spatially filtered movie (CaImAn's ``method_init='corr_pnr'``), one patch in memory.

A movie is ``Y`` of shape (T, h, w), time first; footprints come out as (h * w, K) with
pixel index ``y * w + x``, traces as (K, T).

References
----------
Zhou P, Resendez SL, Rodriguez-Romaguera J, et al. 2018, Efficient and accurate extraction
of in vivo calcium signals from microendoscopic video data, eLife 7:e28728,
doi:10.7554/eLife.28728 (Methods, "Initialization of spatial and temporal components").
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from ...summary.kernels import finalize, partial_sums
from .noise import noise_psd

__all__ = ["CorrPNR", "SeedOptions", "corr_pnr_images", "filter_frames", "filtered_moments", "kept_sums", "psf_kernel",
           "seed_corr_pnr"]


def _pair(v: float | tuple | list | np.ndarray) -> tuple[float, float]:
    a = np.broadcast_to(np.asarray(v, dtype=float), (2,))
    return float(a[0]), float(a[1])


def psf_kernel(gSig: float | tuple[float, float], *, center_psf: bool = False) -> np.ndarray:
    """The spatial filter of CNMF-E: a Gaussian of SD ``gSig``, ``4 gSig + 1`` pixels wide.

    With ``center_psf`` it is made zero-mean on the disk where it exceeds its value on the
    kernel's border (zero outside): convolving then keeps neuron-sized blobs and removes
    what is smooth at that scale, the bright out-of-focus background of one-photon movies.

    Returns
    -------
    ndarray (ky, kx) float32
    """
    gy, gx = _pair(gSig)
    axes = []
    for g in (gy, gx):
        half = int(2 * g)
        t = np.arange(-half, half + 1, dtype=np.float64)
        k = np.exp(-0.5 * (t / g) ** 2)
        axes.append(k / k.sum())
    ker = np.outer(axes[0], axes[1])
    if center_psf:
        edge = max(ker[0].max(), ker[-1].max(), ker[:, 0].max(), ker[:, -1].max())
        inside = ker >= edge
        ker = np.where(inside, ker - ker[inside].mean(), 0.0)
    return ker.astype(np.float32)


def filter_frames(Y: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Each frame of ``Y`` (T, h, w) convolved with ``kernel`` (reflected borders), float32."""
    Y = np.ascontiguousarray(Y, dtype=np.float32)
    out = np.empty_like(Y)
    for t in range(len(Y)):
        cv2.filter2D(Y[t], -1, kernel, dst=out[t], borderType=cv2.BORDER_REFLECT)
    return out


@dataclass
class CorrPNR:
    """The images seeds are chosen on (all (h, w) float32).

    Attributes
    ----------
    correlation : local correlation of the filtered movie after values below
        ``thresh_init`` noise SDs were zeroed (a neuron's pixels rise together).
    pnr : peak-to-noise ratio: the filtered movie's maximum over its noise SD.
    noise : noise SD of the filtered movie, per pixel.
    """

    correlation: np.ndarray
    pnr: np.ndarray
    noise: np.ndarray


def _local_correlation(X: np.ndarray) -> np.ndarray:
    return finalize(partial_sums(X))["correlation"]


def corr_pnr_images(filtered: np.ndarray, *, thresh_init: float = 2.0,
                    noise_range: tuple[float, float] = (0.25, 0.5), noise_method: str = "mean") -> CorrPNR:
    """Correlation and PNR images of a filtered movie (T, h, w), its temporal mean removed.

    Parameters
    ----------
    filtered : ndarray (T, h, w)
        :func:`filter_frames` of the movie, minus each pixel's temporal mean.
    thresh_init : float
        Values below this many noise SDs count as 0 in the correlation (noise alone then
        correlates little, while the transients of a neuron's pixels rise together).
    noise_range, noise_method
        Noise SD from the power spectral density (see :func:`~.noise.noise_psd`).
    """
    T, h, w = filtered.shape
    noise = noise_psd(filtered.reshape(T, -1).T, noise_range=noise_range,
                      noise_method=noise_method).reshape(h, w).astype(np.float32)
    noise = np.maximum(noise, np.finfo(np.float32).tiny)
    pnr = filtered.max(axis=0) / noise
    kept = np.where(filtered >= thresh_init * noise, filtered, 0.0).astype(np.float32)
    return CorrPNR(_local_correlation(kept), pnr.astype(np.float32), noise)


def filtered_moments(frames: np.ndarray, kernel: np.ndarray, *, noise_range: tuple[float, float] = (0.25, 0.5),
                     noise_method: str = "mean") -> dict[str, np.ndarray]:
    """Sums of one block of frames for :func:`corr_pnr_images` over a movie in blocks.

    Returns ``n`` frames, ``s1`` the sum of the filtered frames and ``noise2`` the frames
    times the noise variance of the filtered frames (from this block's spectrum): summed
    over blocks, ``s1 / n`` is the mean and ``noise2 / n`` the noise variance.
    """
    f = filter_frames(frames, kernel)
    T, h, w = f.shape
    sn = noise_psd(f.reshape(T, -1).T, noise_range=noise_range, noise_method=noise_method).reshape(h, w)
    return {"n": np.array(T), "s1": f.sum(axis=0, dtype=np.float64), "noise2": T * np.asarray(sn, np.float64) ** 2}


def kept_sums(frames: np.ndarray, kernel: np.ndarray, mean: np.ndarray, noise: np.ndarray,
              thresh_init: float = 2.0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The second pass over a block: the partial sums of the local correlation of the
    filtered frames (mean removed, values below ``thresh_init`` noise SDs zeroed) and their
    maximum (mean removed), per pixel."""
    f = filter_frames(frames, kernel)
    f -= mean.astype(np.float32)
    kept = np.where(f >= thresh_init * noise, f, 0.0).astype(np.float32)
    return partial_sums(kept), f.max(axis=0)


@dataclass(frozen=True)
class SeedOptions:
    """Options of :func:`seed_corr_pnr` (CaImAn's names).

    ``max_number`` (None: no limit) seeds, chosen where ``correlation >= min_corr`` and
    ``pnr >= min_pnr``; ``gSig``, ``gSiz`` (neuron box), ``center_psf``; ``min_pixel``
    pixels at least in a footprint; ``thresh_init``; ``border`` pixels along each edge
    that never seed (CaImAn's ``bd``, ``border_pix``).
    """

    gSig: tuple[float, float]
    gSiz: tuple[int, int]
    min_corr: float = 0.85
    min_pnr: float = 20.0
    max_number: int | None = None
    center_psf: bool = False
    min_pixel: int = 3
    thresh_init: float = 2.0
    border: int = 0
    noise_range: tuple[float, float] = (0.25, 0.5)
    noise_method: str = "mean"


def seed_corr_pnr(Y: np.ndarray, opt: SeedOptions) -> tuple[sp.csc_matrix, np.ndarray, CorrPNR]:
    """Greedy seeding of neurons at the pixels of highest ``correlation * pnr``.

    Parameters
    ----------
    Y : ndarray (T, h, w)
        The movie (raw, background included).
    opt : SeedOptions

    Returns
    -------
    A : (h * w, K) csc float32
        Footprints (non-negative, each one connected around its seed).
    C : (K, T) float32
        Traces (baseline removed), in units of the footprints.
    images : CorrPNR
        The images of the filtered movie before any seed was taken.

    Notes
    -----
    As Zhou et al. 2018 describe: candidates are the local maxima of ``correlation *
    pnr`` above both thresholds, visited from the largest. For a candidate, the pixels of
    a ``2 gSiz + 1`` box whose filtered trace correlates above 0.9 with the seed's give the
    neuron's trace; the pixels that correlate below 0.3 give a rough local background
    (their median); each pixel of the raw box is regressed on both traces and a constant,
    and its weight on the neuron's trace is the footprint, kept where it decreases
    outwards from the seed and connected to it. The neuron is subtracted from the raw and
    the filtered movies, the images are recomputed around it, and the next candidate is
    taken; seeding ends when no pixel passes the thresholds.
    """
    state = _SeedState(Y, opt)
    return state.run()


class _SeedState:
    """The movie, its filtered copy and the search map while seeds are taken."""

    def __init__(self, Y: np.ndarray, opt: SeedOptions) -> None:
        self.opt = opt
        self.raw = np.array(Y, dtype=np.float32, copy=True)
        self.T, self.h, self.w = self.raw.shape
        self.kernel = psf_kernel(opt.gSig, center_psf=opt.center_psf)
        self.filtered = filter_frames(self.raw, self.kernel)
        self.filtered -= self.filtered.mean(axis=0)
        self.images = corr_pnr_images(self.filtered, thresh_init=opt.thresh_init, noise_range=opt.noise_range,
                                      noise_method=opt.noise_method)
        self.cn, self.pnr = self.images.correlation.copy(), self.images.pnr.copy()
        self.searched = np.zeros((self.h, self.w), bool)
        b = int(opt.border)
        if b:
            self.searched[:b] = self.searched[-b:] = True
            self.searched[:, :b] = self.searched[:, -b:] = True

    def score(self) -> np.ndarray:
        v = self.cn * self.pnr
        v[(self.cn < self.opt.min_corr) | (self.pnr < self.opt.min_pnr) | self.searched] = 0
        return v

    def candidates(self) -> list[tuple[int, int]]:
        """Local maxima of the score (within a quarter of a neuron), largest first."""
        v = self.score()
        size = max(1, int(round(self.opt.gSiz[0] / 4)))
        peak = (v == ndimage.maximum_filter(v, size=size)) & (v > 0)
        ys, xs = np.nonzero(peak)
        order = np.argsort(-v[ys, xs], kind="stable")
        return list(zip(ys[order].tolist(), xs[order].tolist()))

    def run(self) -> tuple[sp.csc_matrix, np.ndarray, CorrPNR]:
        footprints: list[tuple[tuple[slice, slice], np.ndarray]] = []
        traces: list[np.ndarray] = []
        limit = self.opt.max_number
        while limit is None or len(traces) < limit:
            found = 0
            for y, x in self.candidates():
                if self.searched[y, x] or self.score()[y, x] <= 0:
                    continue
                self.searched[y, x] = True
                seed = self.try_seed(y, x)
                if seed is None:
                    continue
                footprints.append(seed[0])
                traces.append(seed[1])
                found += 1
                if limit is not None and len(traces) >= limit:
                    break
            if not found:
                break
        return self._matrices(footprints, traces), self._stack(traces), self.images

    def _box(self, y: int, x: int, scale: int) -> tuple[slice, slice]:
        gy, gx = self.opt.gSiz
        return (slice(max(0, y - scale * gy), min(self.h, y + scale * gy + 1)),
                slice(max(0, x - scale * gx), min(self.w, x + scale * gx + 1)))

    def try_seed(self, y: int, x: int) -> tuple[tuple[tuple[slice, slice], np.ndarray], np.ndarray] | None:
        d = np.diff(self.filtered[:, y, x])
        if d.max() < 3 * d.std():  # no transient at the seed: a peak of noise or background
            return None
        box = self._box(y, x, 1)
        ai, ci = _extract(self.filtered[(slice(None), *box)], self.raw[(slice(None), *box)],
                          (y - box[0].start, x - box[1].start))
        if ai is None or np.count_nonzero(ai) < self.opt.min_pixel:
            return None
        self.searched[box] |= ai > 0.5 * ai.max()
        self._subtract(box, ai, ci, y, x)
        return (box, ai), ci

    def _subtract(self, box: tuple[slice, slice], ai: np.ndarray, ci: np.ndarray, y: int, x: int) -> None:
        """Remove the neuron from both movies and refresh the images around it."""
        self.raw[(slice(None), *box)] -= ci[:, None, None] * ai
        wide = self._box(y, x, 2)
        img = np.zeros((wide[0].stop - wide[0].start, wide[1].stop - wide[1].start), np.float32)
        img[box[0].start - wide[0].start:box[0].stop - wide[0].start,
            box[1].start - wide[1].start:box[1].stop - wide[1].start] = ai
        a_filt = cv2.filter2D(img, -1, self.kernel, borderType=cv2.BORDER_REFLECT)
        self.filtered[(slice(None), *wide)] -= ci[:, None, None] * a_filt
        self.pnr[wide] = self.filtered[(slice(None), *wide)].max(axis=0) / self.images.noise[wide]
        # the correlation is refreshed in the box: a pixel's needs only its 8 neighbours
        near = (slice(max(0, box[0].start - 1), min(self.h, box[0].stop + 1)),
                slice(max(0, box[1].start - 1), min(self.w, box[1].stop + 1)))
        part, noise = self.filtered[(slice(None), *near)], self.images.noise[near]
        kept = np.where(part >= self.opt.thresh_init * noise, part, np.float32(0.0))
        cn = _local_correlation(kept)
        self.cn[box] = cn[box[0].start - near[0].start:box[0].stop - near[0].start,
                          box[1].start - near[1].start:box[1].stop - near[1].start]

    def _matrices(self, footprints, traces) -> sp.csc_matrix:
        A = np.zeros((self.h, self.w, len(traces)), np.float32)
        for k, (box, ai) in enumerate(footprints):
            A[(*box, k)] = ai
        return sp.csc_matrix(A.reshape(self.h * self.w, len(traces)))

    def _stack(self, traces: list[np.ndarray]) -> np.ndarray:
        return np.asarray(traces, np.float32).reshape(len(traces), self.T)


NEURON_CORR = 0.9  # filtered pixels this correlated with the seed make the neuron's trace
BACKGROUND_CORR = 0.3  # ... and those below this, the local background
BACKGROUND_PIXELS = 64  # most of them whose median is taken


def _extract(filtered: np.ndarray, raw: np.ndarray, centre: tuple[int, int]
             ) -> tuple[np.ndarray | None, np.ndarray]:
    """Footprint (box shape) and trace of the neuron seeded at ``centre`` of a box."""
    T, bh, bw = raw.shape
    F = filtered.reshape(T, -1) - filtered.reshape(T, -1).mean(0)
    F /= np.maximum(np.sqrt(np.einsum("ij,ij->j", F, F)), 1e-12)
    c_idx = centre[0] * bw + centre[1]
    corr = F.T @ F[:, c_idx]
    core = corr > NEURON_CORR
    trace = F[:, core].mean(axis=1, dtype=np.float64)
    if not np.any(trace):
        return None, trace
    R = raw.reshape(T, -1)
    far = np.flatnonzero(corr < BACKGROUND_CORR)
    if far.size > BACKGROUND_PIXELS:  # a median over an even sample of them is as good
        far = far[np.linspace(0, far.size - 1, BACKGROUND_PIXELS).astype(int)]
    bg = np.median(R[:, far], axis=1).astype(np.float64) if far.size else np.ones(T)
    X = np.stack([trace, bg - bg.mean(), np.ones(T)], axis=1)
    XtX = X.T @ X
    XtX[np.diag_indices(3)] += 1e-9 * np.trace(XtX)
    coef = np.linalg.solve(XtX, (R.T @ X.astype(np.float32)).T.astype(np.float64))
    a = np.maximum(coef[0], 0).reshape(bh, bw)
    a = _outward_decreasing(a, centre)
    a = _connected(a, centre)
    if not a.any():
        return None, trace
    # the trace in the units of the footprint: the raw box's least-squares weight on it
    # (background regressed out with the same regressors), baseline at rest removed
    trace = _baseline_removed(trace)
    scale = np.linalg.norm(a)
    return (a / scale).astype(np.float32), (trace * scale).astype(np.float32)


def _baseline_removed(c: np.ndarray) -> np.ndarray:
    """``c`` minus its level at rest: the median of the samples that rise by less than the noise."""
    d = np.diff(c, prepend=c[0] - 1.0)
    sn = noise_psd(c)
    rest = (d >= 0) & (d < sn)
    return c - (np.median(c[rest]) if rest.any() else np.median(c))


def _outward_decreasing(a: np.ndarray, centre: tuple[int, int]) -> np.ndarray:
    """Keep a pixel only while the footprint decreases away from the centre along rings
    (CaImAn's circular constraint): each ring is capped by the ring inside it."""
    h, w = a.shape
    yy, xx = np.indices((h, w))
    ring = np.rint(np.hypot(yy - centre[0], xx - centre[1])).astype(int)
    out = a.copy()
    cap = out[centre]
    for r in range(1, ring.max() + 1):
        on = ring == r
        out[on] = np.minimum(out[on], cap)
        cap = out[on].max() if on.any() else cap
    return out


def _connected(a: np.ndarray, centre: tuple[int, int]) -> np.ndarray:
    """The connected piece of the footprint's support that holds the centre."""
    lab, _ = ndimage.label(a > 0)
    keep = lab == lab[centre] if lab[centre] else np.zeros_like(a, bool)
    return np.where(keep, a, 0.0)
