"""Greedy initialisation of CNMF components on one patch (CaImAn's ``greedyROI``).

A patch is ``Y`` of shape (T, h, w), time first; internally it is viewed as (T, N) with pixel
index ``y * w + x`` (C order). Footprints come out as (N, K), traces as (K, T).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numba
import numpy as np
import scipy.sparse as sp

from .hals import hals, hals_traces

__all__ = ["greedy_roi", "initialize_components"]

_EPS = np.finfo(np.float32).eps
_NOISE_FRAMES = 500  # pairs of neighbouring frames whose differences give the noise
_COMMON_MIN_AREA = 5  # patch area, in neuron boxes, below which no shared trace is removed
_MOTION_RATIO = 6.0  # variance of a residual shift over its noise above which it is removed


def _finite(Y: np.ndarray) -> np.ndarray:
    """``Y`` as float32 with NaN/inf set to 0 (copied only when needed)."""
    Y = np.asarray(Y, dtype=np.float32)
    return Y if np.isfinite(Y).all() else np.nan_to_num(Y, posinf=0.0, neginf=0.0)


def _pair(v: float | tuple | list | np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.asarray(v, dtype=float), (2,)).copy()


def _gauss_matrix(n: int, sig: float, half: int) -> np.ndarray:
    """(n, n) matrix of a 1-D Gaussian filter, width ``2 half + 1``, zero outside the image."""
    t = np.arange(-half, half + 1)
    g = np.exp(-(t**2) / (2.0 * sig**2))
    g /= g.sum()
    D = np.subtract.outer(np.arange(n), np.arange(n))
    return np.where(np.abs(D) <= half, g[np.clip(D + half, 0, 2 * half)], 0).astype(np.float32)


def _blur(R: np.ndarray, Gy: np.ndarray, Gx: np.ndarray) -> np.ndarray:
    """Separable filtering of every frame of ``R`` (T, h, w) as two matrix products."""
    return np.matmul(Gy, np.matmul(R, Gx.T))


def _score(rho: np.ndarray, rolling_length: int, rolling_sum: bool) -> np.ndarray:
    """Seed score per pixel: total energy, or the largest rolling mean of the energy.

    The rolling mean is a causal moving average started from zeros, as the linear filter of
    CaImAn's ``greedyROI``; OpenCV's box filter computes all window sums in one pass.
    """
    T = rho.shape[0]
    e = np.square(np.ascontiguousarray(rho.reshape(T, -1)))
    if not rolling_sum:
        return e.sum(0, dtype=np.float64).reshape(rho.shape[1:])
    L = min(rolling_length, T)
    win = cv2.boxFilter(e, -1, (1, L), anchor=(0, L - 1), normalize=False,
                        borderType=cv2.BORDER_CONSTANT)
    return (win.max(0).astype(np.float64) / rolling_length).reshape(rho.shape[1:])


def _median(Y: np.ndarray, max_frames: int = 1000) -> np.ndarray:
    """Per-pixel median over at most ``max_frames`` evenly spaced frames."""
    step = max(1, len(Y) // max_frames)
    sub = Y[::step].reshape(-(-len(Y) // step), -1)
    return np.median(np.ascontiguousarray(sub.T), axis=1).reshape(Y.shape[1:])


def _finetune(D: np.ndarray, c: np.ndarray, n_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank-1 non-negative fit ``D ~ c a^T`` by alternating updates; ``a`` has unit norm."""
    a = np.zeros(D.shape[1], np.float32)
    for _ in range(n_iter):
        a = np.maximum(D.T @ c, 0)
        a /= np.sqrt(a @ a) + _EPS
        c = D @ a
    return a, c


def _detrend(X: np.ndarray, window: int) -> np.ndarray:
    """``X`` (T, ...) minus its centred running mean over ``window`` frames (edges reflected)."""
    if window <= 1:
        return X.copy()
    X2 = np.ascontiguousarray(X.reshape(len(X), -1), dtype=np.float32)
    mean = cv2.boxFilter(X2, -1, (1, int(window)), normalize=True, borderType=cv2.BORDER_REFLECT)
    return (X2 - mean).reshape(X.shape)


def _white_sd(X: np.ndarray) -> np.ndarray:
    """White-noise SD of every pixel's trace in ``X`` (T, ...), from its first differences.

    The median absolute difference ignores the few large steps of transients and the slow
    trends. Pairs of neighbouring frames at ``_NOISE_FRAMES`` random (seeded) places stand
    for the whole movie: evenly strided samples would meet the same few phases of any
    period of the movie (a repeated stimulus, a session built of repeats) and estimate the
    noise from a handful of differences.
    """
    T = X.shape[0]
    if T < 2:
        return np.zeros(X.shape[1:], X.dtype)
    t = np.sort(np.random.default_rng(0).choice(T - 1, min(T - 1, _NOISE_FRAMES), replace=False))
    d = np.abs(X[t + 1] - X[t]).reshape(len(t), -1)
    sd = np.median(np.ascontiguousarray(d.T), axis=1) / (0.6745 * np.sqrt(2.0))
    return sd.reshape(X.shape[1:])


def _noise_energy(rho: np.ndarray) -> np.ndarray:
    """White-noise variance of each pixel's filtered trace (floored above zero)."""
    return np.maximum(_white_sd(rho).astype(np.float64) ** 2, np.finfo(np.float32).tiny)


def _in_box(i: int, j: int, box: tuple[int, int, int, int] | None) -> bool:
    return box is None or (box[0] <= i < box[1] and box[2] <= j < box[3])


@dataclass
class _Seeding:
    """Options of the greedy seeding (see :func:`greedy_roi`)."""

    K: int
    gSig: np.ndarray
    gSiz: np.ndarray
    nIter: int = 5
    rolling_sum: bool = True
    rolling_length: int = 100
    detrend_window: int = 0
    min_snr: float | None = None
    decay_frames: float = 0.0
    common: bool = False
    motion: bool = False
    own: tuple[int, int, int, int] | None = None
    max_seeds: int | None = None

    def budget(self) -> int:
        """Most seeds tried: K as CaImAn, or three times K when some seeds do not count."""
        if self.max_seeds is not None:
            return int(self.max_seeds)
        return self.K if self.own is None and self.min_snr is None else 3 * self.K


@numba.njit(cache=True)
def _filtered_max(x: np.ndarray, g: float, gain: float) -> np.ndarray:  # pragma: no cover - numba
    """Column maxima of ``y[t] = g y[t-1] + gain x[t]`` (causal exponential filter), y[-1] = 0."""
    T, N = x.shape
    y = np.zeros(N, np.float32)
    best = np.full(N, -np.inf, np.float32)
    for t in range(T):
        for n in range(N):
            y[n] = g * y[n] + gain * x[t, n]
            if y[n] > best[n]:
                best[n] = y[n]
    return best


def _transient_score(rho: np.ndarray, sd: np.ndarray, decay: float) -> np.ndarray:
    """Largest value of each pixel's trace after a matched filter for transients, in noise SDs.

    The filter is a causal exponential of time constant ``decay`` frames scaled to unit
    energy, so white noise of SD ``sd`` stays at SD ``sd``; ``decay = 0`` uses the trace as is.
    """
    T = rho.shape[0]
    x = np.ascontiguousarray(rho.reshape(T, -1), dtype=np.float32)
    g = float(np.exp(-1.0 / decay)) if decay > 0 else 0.0
    return _filtered_max(x, np.float32(g), np.float32(np.sqrt(1 - g * g))).reshape(rho.shape[1:]) / sd


def _remove_common(X: np.ndarray, rho: np.ndarray, G: tuple[np.ndarray, np.ndarray]) -> None:
    """Regress out of every pixel the trace the whole patch shares (in place).

    The shared trace is the median over pixels of the filtered movie ``rho``: neuropil and
    other diffuse signals rise everywhere at once, while a neuron covers a minority of the
    patch and hardly moves the median. Each pixel of ``X`` loses its least-squares multiple
    of that trace (so a vessel, where the neuropil is dimmer, loses less), and ``rho``,
    the filtered ``X``, is updated to match.
    """
    T = len(X)
    m = np.median(np.ascontiguousarray(rho[:, ::2, ::2]).reshape(T, -1), axis=1)
    mm = float(m @ m)
    if not mm > 0:
        return
    X2 = X.reshape(T, -1)
    beta = (m @ X2) / mm
    X2 -= np.outer(m, beta).astype(X.dtype)
    rho -= m[:, None, None].astype(rho.dtype) * _blur(beta.reshape(1, *X.shape[1:]).astype(np.float32), *G)


def _remove_motion(X: np.ndarray, image: np.ndarray, scale: np.ndarray | None = None) -> None:
    """Project out of every frame of ``X`` the signal of a residual translation (in place).

    A small displacement ``e(t)`` left by motion correction changes a frame by about
    ``-grad(image) . e(t)``: the same two images, the gradients of the mean image, in every
    frame (divided by ``scale`` when the movie was: the gradients are those of the movie
    before it was divided). Their least-squares weights in each frame estimate ``e(t)``;
    each direction is removed only when its weights vary well beyond what the noise gives
    (a robust variance, blind to the brief transients of neurons, more than
    ``_MOTION_RATIO`` times the noise's), so a well-corrected or motion-free movie is left
    as it is. Residuals that last several frames (slow breathing, brief motion events)
    matter: frame-to-frame jitter is white and counts as noise for the seeding score.
    """
    T = len(X)
    scale = np.ones(image.shape) if scale is None else np.asarray(scale, np.float64)
    gy, gx = np.gradient(np.asarray(image, np.float64) * scale)
    G = np.stack([(gy / scale).ravel(), (gx / scale).ravel()], 1)
    if not np.isfinite(G).all() or np.linalg.matrix_rank(G) < 2:
        return
    Q = np.linalg.qr(G)[0].astype(np.float32)
    X2 = X.reshape(T, -1)
    sd = _white_sd(X2).astype(np.float64)
    E = X2 @ Q
    noise_E = (Q.astype(np.float64) ** 2 * sd[:, None] ** 2).sum(0)
    spread = 1.4826 * np.median(np.abs(E - np.median(E, 0)), 0).astype(np.float64)
    moved = spread**2 > _MOTION_RATIO * noise_E
    if moved.any():
        X2 -= E[:, moved] @ Q[:, moved].T


def _seed_map(X: np.ndarray, opt: _Seeding, G: tuple[np.ndarray, np.ndarray]):
    """Filtered movie, the score of every pixel, and its noise SD (ones for energy scores)."""
    rho = _blur(X, *G)
    if opt.common and X[0].size >= _COMMON_MIN_AREA * np.prod(opt.gSiz):
        _remove_common(X, rho, G)
    if opt.min_snr is None:
        return rho, _score(rho, opt.rolling_length, opt.rolling_sum), np.ones(rho.shape[1:])
    sd = np.sqrt(_noise_energy(rho))
    return rho, _transient_score(rho, sd, opt.decay_frames), sd


def _rescore(rho: np.ndarray, sd: np.ndarray, opt: _Seeding) -> np.ndarray:
    """The score of a region of the filtered movie (after a component was removed)."""
    if opt.min_snr is None:
        return _score(rho, opt.rolling_length, opt.rolling_sum)
    return _transient_score(rho, sd, opt.decay_frames)


def _seeding_movie(Y: np.ndarray, opt: _Seeding, scale: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The movie minus its median image, and the movie the seeds are found in."""
    R = Y - _median(Y)
    X = _detrend(R, opt.detrend_window)
    if opt.motion:
        _remove_motion(X, Y.mean(0), scale)
    return R, X


def _fit_seed(X, rho, v, sd, ij, half, G, opt) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Rank-1 fit in the box around the seed ``ij``, removed from ``X``, ``rho`` and ``v``.

    Returns the box's footprint, the trace and the box ``(y0, y1, x0, x1)``.
    """
    (i, j), (h, w), T = ij, X.shape[1:], len(X)
    y0, y1 = max(i - half[0], 0), min(i + half[0] + 1, h)
    x0, x1 = max(j - half[1], 0), min(j + half[1] + 1, w)
    a, c = _finetune(X[:, y0:y1, x0:x1].reshape(T, -1), rho[:, i, j].copy(), opt.nIter)
    img = a.reshape(y1 - y0, x1 - x0)
    X[:, y0:y1, x0:x1] -= c[:, None, None] * img
    # the filtered movie changes only within twice the box around the seed
    Y0, Y1 = max(i - 2 * half[0], 0), min(i + 2 * half[0] + 1, h)
    X0, X1 = max(j - 2 * half[1], 0), min(j + 2 * half[1] + 1, w)
    rho[:, Y0:Y1, X0:X1] -= c[:, None, None] * (G[0][Y0:Y1, y0:y1] @ img @ G[1][X0:X1, x0:x1].T)
    v[Y0:Y1, X0:X1] = _rescore(rho[:, Y0:Y1, X0:X1], sd[Y0:Y1, X0:X1], opt)
    return img, c, (y0, y1, x0, x1)


def _greedy(Y: np.ndarray, opt: _Seeding, scale: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy seeding on a (T, h, w) movie (``scale``: the image it was divided by, if any).

    Returns A (N, K') and C (K', T), the K' seeds in the order found (at most
    ``opt.budget()``).
    """
    T, h, w = Y.shape
    R, X = _seeding_movie(Y, opt, scale)
    half = (np.asarray(opt.gSiz) // 2).astype(int)
    G = (_gauss_matrix(h, opt.gSig[0], half[0]), _gauss_matrix(w, opt.gSig[1], half[1]))
    rho, v, sd = _seed_map(X, opt, G)
    n_max = opt.budget()
    A = np.zeros((h, w, n_max), np.float32)
    C = np.zeros((n_max, T), np.float32)
    # within a box's width of an earlier seed, a seed is mostly what that rank-1 box fit
    # left of a large or bright neuron (merged later): fitted, but not counted towards K
    taken = np.zeros((h, w), bool)
    n = n_own = 0
    while n < n_max and n_own < opt.K:
        i, j = np.unravel_index(np.argmax(v), (h, w))
        if opt.min_snr is not None and v[i, j] < opt.min_snr:
            break  # nothing left that stands out of the noise
        img, C[n], (y0, y1, x0, x1) = _fit_seed(X, rho, v, sd, (i, j), half, G, opt)
        A[y0:y1, x0:x1, n] = img
        n += 1
        n_own += _in_box(i, j, opt.own) and not taken[i, j]
        taken[max(y0 - half[0], 0):y1 + half[0], max(x0 - half[1], 0):x1 + half[1]] = True
    A, C = A.reshape(h * w, n_max)[:, :n], C[:n]
    if opt.detrend_window > 1 and n:
        # traces in the movie's own domain (median removed, not detrended)
        C = hals_traces((R.reshape(T, -1) @ A).T, A.T @ A, np.maximum(C, 0), iters=5)
    return A, C


def _nmf(X: np.ndarray, nb: int, iters: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Rank-``nb`` NMF ``X (T, N) ~ f^T b^T``; returns b (N, nb), f (nb, T).

    ``X`` is first compressed to ``Q B`` with a randomized range finder (rank ``nb + 4``,
    one power iteration, Halko et al. 2011, doi:10.1137/090771806); NNDSVD start
    (Boutsidis & Gallopoulos 2008, doi:10.1016/j.patcog.2007.09.010) and HALS then use only
    the compressed factors, so the movie is read four times in all.
    """
    T, N = X.shape
    r = min(nb + 4, T, N)
    rng = np.random.default_rng(0)
    Q = np.linalg.qr(X @ rng.standard_normal((N, r)).astype(np.float32))[0]
    Q = np.linalg.qr(X @ (X.T @ Q))[0]
    B = Q.T @ X  # (r, N): X ~ Q B
    Ub, s, Vt = np.linalg.svd(B, full_matrices=False)
    U = Q @ Ub
    f = np.zeros((nb, T), np.float32)
    b = np.zeros((N, nb), np.float32)
    for m in range(min(nb, len(s))):
        u, v = U[:, m], Vt[m]
        pos = np.linalg.norm(np.maximum(u, 0)) * np.linalg.norm(np.maximum(v, 0))
        neg = np.linalg.norm(np.maximum(-u, 0)) * np.linalg.norm(np.maximum(-v, 0))
        sg = 1.0 if pos >= neg else -1.0
        f[m] = np.maximum(sg * u, 0) * np.sqrt(s[m])
        b[:, m] = np.maximum(sg * v, 0) * np.sqrt(s[m])
    fill = 0.01 * np.sqrt(max(float(X.mean()), 0.0) / max(nb, 1))
    f[f == 0], b[b == 0] = fill, fill
    for _ in range(iters):
        f = hals_traces((b.T @ B.T) @ Q.T, b.T @ b, f, iters=1)
        b = _hals_b(B.T @ (Q.T @ f.T), f @ f.T, b)
    return b, f


def _hals_b(Yf: np.ndarray, FFt: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One HALS sweep over the columns of ``b`` (cheap inner step of :func:`_nmf`)."""
    for m in range(b.shape[1]):
        if FFt[m, m] > 0:
            b[:, m] = np.maximum(b[:, m] + (Yf[:, m] - b @ FFt[:, m]) / FFt[m, m], 0)
    return b


def _block_mean(x: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """Mean over consecutive blocks of ``factor`` along ``axis``; the last block may be short."""
    if factor == 1:
        return x
    n = x.shape[axis]
    starts = np.arange(0, n, factor)
    counts = np.diff(np.append(starts, n)).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = -1
    return np.add.reduceat(x, starts, axis=axis) / counts.reshape(shape)


def _upsample(x: np.ndarray, factor: int, n_out: int, axis: int) -> np.ndarray:
    """Linear interpolation back to ``n_out`` samples from block means (pixel-centre aligned)."""
    n_in = x.shape[axis]
    if n_in == n_out:
        return x
    p = np.clip((np.arange(n_out) + 0.5) / factor - 0.5, 0, n_in - 1)
    i0 = np.floor(p).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    shape = [1] * x.ndim
    shape[axis] = -1
    wt = (p - i0).astype(np.float32).reshape(shape)
    return np.take(x, i0, axis) * (1 - wt) + np.take(x, i1, axis) * wt


def _centers(A: np.ndarray | sp.spmatrix, dims: tuple[int, int]) -> np.ndarray:
    """Centre of mass (y, x) of each footprint."""
    A = sp.csc_matrix(A)
    yy, xx = np.divmod(np.arange(dims[0] * dims[1]), dims[1])
    s = np.asarray(A.sum(0)).ravel()
    s[s == 0] = np.nan
    return np.stack([(A.T @ yy) / s, (A.T @ xx) / s], 1)


def _normalizer(Y: np.ndarray) -> np.ndarray:
    """CaImAn's normalising image, mean + median(mean), or ones without a positive baseline.

    Dividing by the mean image only makes sense when every pixel sits on a baseline well
    above its fluctuations (raw fluorescence); for baseline-free data (median of the mean
    image below the median temporal standard deviation) it would amplify noise, so the movie
    is left as is.
    """
    img = Y.mean(0)
    base = float(np.median(img))
    sub = Y[:: max(1, len(Y) // 1000)]
    if not base > float(np.median(sub.std(0))):
        return np.ones_like(img)
    return np.maximum(img, 0) + base + _EPS


def _default_gsiz(gSig: np.ndarray, gSiz) -> np.ndarray:
    if gSiz is None:
        return 2 * (gSig + 0.5).astype(int) + 1
    return _pair(gSiz)


def _down(Y: np.ndarray, ssub: int, tsub: int) -> np.ndarray:
    return _block_mean(_block_mean(_block_mean(Y, tsub, 0), ssub, 1), ssub, 2)


def _up_space(A: np.ndarray, ssub: int, ds: tuple[int, int], dims: tuple[int, int]) -> np.ndarray:
    X = A.reshape(*ds, -1)
    X = _upsample(_upsample(X, ssub, dims[0], 0), ssub, dims[1], 1)
    return X.reshape(dims[0] * dims[1], -1)


def _seeding(K, gSig, gSiz, nIter, ssub, tsub, rolling_sum, rolling_length, detrend_window,
             min_snr, decay_frames, remove_common, remove_motion, own, max_seeds) -> _Seeding:
    """Seeding options at the downsampled resolution."""
    gSig = _pair(gSig)
    gSiz = _default_gsiz(gSig, gSiz) / ssub
    if own is not None:
        own = (own[0] // ssub, -(-own[1] // ssub), own[2] // ssub, -(-own[3] // ssub))
    return _Seeding(
        K=int(K), gSig=gSig / ssub, gSiz=2 * (np.round(gSiz).astype(int) // 2) + 1,
        nIter=nIter, rolling_sum=rolling_sum, rolling_length=max(int(rolling_length) // tsub, 1),
        detrend_window=int(detrend_window) // tsub, min_snr=min_snr,
        decay_frames=float(decay_frames) / tsub, common=bool(remove_common),
        motion=bool(remove_motion), own=own, max_seeds=max_seeds)


def greedy_roi(
    Y: np.ndarray,
    *,
    K: int,
    gSig: float | tuple[float, float],
    gSiz: int | tuple[int, int] | None = None,
    nIter: int = 5,
    ssub: int = 1,
    tsub: int = 1,
    rolling_sum: bool = True,
    rolling_length: int = 100,
    nb: int = 1,
    detrend_window: int = 0,
    min_snr: float | None = None,
    decay_frames: float = 0.0,
    remove_common: bool = False,
    remove_motion: bool = False,
    own: tuple[int, int, int, int] | None = None,
    max_seeds: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Greedy seeding of up to K components and an NMF background.

    Parameters
    ----------
    Y : (T, h, w) array
        Movie (time first).
    K : int
        Number of components. With ``min_snr`` or ``own``, the number of seeds that count:
        seeds outside ``own``, or on the box of an earlier seed (most often what the
        earlier rank-1 box fit left of a large or bright neuron), are fitted without
        counting, up to ``max_seeds`` in all.
    gSig : float or (2,) sequence
        Standard deviation of the Gaussian filter (half-size of a neuron), pixels (y, x).
    gSiz : int or (2,) sequence, optional
        Size of the box fitted around each seed (default ``2 * int(gSig + 0.5) + 1``).
    nIter : int
        Alternating rank-1 iterations per component.
    ssub, tsub : int
        Spatial / temporal block-mean downsampling before seeding; footprints and traces are
        linearly upsampled back to (h, w) and T afterwards.
    rolling_sum : bool
        Seed at the largest rolling-window energy of the filtered movie (else total energy).
    rolling_length : int
        Window of the rolling sum, in frames of ``Y`` (divided by ``tsub`` after
        downsampling).
    nb : int
        Background components, from an NMF of the movie minus the components.
    detrend_window : int
        Frames of the centred running mean removed from every pixel before seeding (0 or 1:
        none, as CaImAn). Slow changes of the background (drift, neuropil) then no longer
        outweigh the transients of neurons; the traces are refitted on the movie itself.
    min_snr : float, optional
        Seeds are taken in order of significance: the largest value of each pixel's filtered
        trace after a matched filter for transients (``decay_frames``), in units of its noise
        SD; seeding stops when no pixel reaches ``min_snr``. None: in order of energy
        (rolling or total), never stopping early (CaImAn's ``greedyROI``).
    decay_frames : float
        Decay time of the indicator, frames (of ``Y``), for the matched filter; 0 uses the
        filtered trace itself.
    remove_common : bool
        Before seeding, regress out of every pixel the trace that the whole patch shares
        (the median over pixels of the filtered movie: neuropil), whose events would
        otherwise seed components anywhere, most of all along vessels. Skipped for patches
        smaller than five neuron boxes.
    remove_motion : bool
        Before seeding, project out of every frame the two images a residual translation
        adds (the gradients of the mean image), when their weights over time exceed the
        noise: motion-correction residuals flicker the edges of bright cells and vessels in
        step, and would seed components there.
    own : (y0, y1, x0, x1), optional
        Only seeds inside this box count towards ``K``; seeds outside are fitted too (so
        that their energy is explained, not split into partial components) until
        ``max_seeds``. Used by patches, which report only the components of their own tile.
    max_seeds : int, optional
        Most seeds in all (default ``K`` as CaImAn, or ``3 K`` with ``min_snr`` or ``own``).

    Returns
    -------
    A : (N, K') float32 array
        Footprints (unit norm at the downsampled resolution), N = h * w, pixel ``y * w + x``;
        K' <= ``max_seeds`` (fewer when seeding stopped at ``min_snr``).
    C : (K', T) float32 array
    center : (K', 2) float array
        Centres of mass (y, x) of the footprints.
    b : (N, nb) float32 array
    f : (nb, T) float32 array

    Notes
    -----
    The filtered movie's most energetic (or most significant) pixel seeds a rank-1 fit in a
    ``gSiz`` box; the fit is subtracted from the movie and the filtered movie, and the next
    seed is taken. Pnevmatikakis et al. 2016, doi:10.1016/j.neuron.2015.11.037.
    """
    Y = _finite(Y)
    T, h, w = Y.shape
    opt = _seeding(K, gSig, gSiz, nIter, ssub, tsub, rolling_sum, rolling_length,
                   detrend_window, min_snr, decay_frames, remove_common, remove_motion, own,
                   max_seeds)
    Yd = _down(Y, ssub, tsub)
    A, C, b, f = _greedy_ds(Yd, opt, nb)
    A = _up_space(A, ssub, Yd.shape[1:], (h, w))
    b = _up_space(b, ssub, Yd.shape[1:], (h, w))
    C, f = _upsample(C, tsub, T, 1), _upsample(f, tsub, T, 1)
    return A, C, _centers(A, (h, w)), b, f


def _greedy_ds(Yd: np.ndarray, opt: _Seeding, nb: int, scale: np.ndarray | None = None):
    """Greedy seeding and background on an already downsampled (and scaled) movie."""
    A, C = _greedy(Yd, opt, scale)
    if nb > 0:
        X = Yd.reshape(len(Yd), -1) - C.T @ A.T
        b, f = _nmf(np.maximum(X, 0), nb)
    else:
        b = np.zeros((A.shape[0], 0), np.float32)
        f = np.zeros((0, Yd.shape[0]), np.float32)
    return A, C, b, f


def initialize_components(
    Y: np.ndarray,
    *,
    K: int,
    gSig: float | tuple[float, float],
    gSiz: int | tuple[int, int] | None = None,
    nIter: int = 5,
    maxIter: int = 5,
    ssub: int = 1,
    tsub: int = 1,
    nb: int = 1,
    rolling_sum: bool = True,
    rolling_length: int = 100,
    normalize_init: bool = True,
    use_hals: bool = True,
    detrend_window: int = 0,
    min_snr: float | None = None,
    decay_frames: float = 0.0,
    remove_common: bool = False,
    remove_motion: bool = False,
    own: tuple[int, int, int, int] | None = None,
    max_seeds: int | None = None,
) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Initialise footprints, traces and background as CaImAn's ``initialize_components``.

    The movie is divided by its mean image plus the median of that image, so that bright
    and dim pixels count alike (skipped for movies without a positive baseline),
    downsampled by ``ssub``/``tsub``, seeded by :func:`greedy_roi`, refined by
    :func:`~calcium_dask.cnmf.kernels.hals.hals` (``maxIter`` iterations, each footprint within
    its support dilated by one pixel), then upsampled and multiplied back by the
    normalising image.

    Parameters
    ----------
    Y : (T, h, w) array
    K, gSig, gSiz, nIter, ssub, tsub, nb, rolling_sum, rolling_length
        As in :func:`greedy_roi`.
    maxIter : int
        HALS iterations.
    normalize_init : bool
        Divide by the mean image before seeding.
    use_hals : bool
        Refine with HALS.
    detrend_window, min_snr, decay_frames, remove_common, remove_motion, own, max_seeds
        Seeding options of :func:`greedy_roi`.

    Returns
    -------
    A : (N, K') csc float32, C : (K', T) float32, b : (N, nb) float32, f : (nb, T) float32,
    center : (K', 2) float array
    """
    Y = _finite(Y)
    T, h, w = Y.shape
    opt = _seeding(K, gSig, gSiz, nIter, ssub, tsub, rolling_sum, rolling_length,
                   detrend_window, min_snr, decay_frames, remove_common, remove_motion, own,
                   max_seeds)
    img = _normalizer(Y) if normalize_init else np.ones((h, w), np.float32)
    Yd = _down(Y / img, ssub, tsub)
    A, C, b, f = _greedy_ds(Yd, opt, nb, _down(img[None], ssub, 1)[0])
    if use_hals and A.shape[1] > 0:
        A, C, b, f = hals(Yd, A, C, b, f, maxIter=maxIter)
        A = A.toarray()
    A = _up_space(A, ssub, Yd.shape[1:], (h, w)) * img.reshape(-1, 1)
    b = _up_space(b, ssub, Yd.shape[1:], (h, w)) * img.reshape(-1, 1)
    C, f = _upsample(C, tsub, T, 1), _upsample(f, tsub, T, 1)
    A = sp.csc_matrix(A.astype(np.float32))
    return A, C.astype(np.float32), b.astype(np.float32), f.astype(np.float32), _centers(A, (h, w))
