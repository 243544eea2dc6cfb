"""Greedy initialisation of CNMF components on one patch (CaImAn's ``greedyROI``).

A patch is ``Y`` of shape (T, h, w), time first; internally it is viewed as (T, N) with pixel
index ``y * w + x`` (C order). Footprints come out as (N, K), traces as (K, T).
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.sparse as sp

from .hals import hals, hals_traces

__all__ = ["greedy_roi", "initialize_components"]

_EPS = np.finfo(np.float32).eps


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


def _greedy(
    Y: np.ndarray, K: int, gSig: np.ndarray, gSiz: np.ndarray, nIter: int,
    rolling_sum: bool, rolling_length: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Greedy seeding on a (T, h, w) movie.

    Returns A (N, K), C (K, T), the residual movie minus its median (T, h, w), the median.
    """
    T, h, w = Y.shape
    med = _median(Y)
    R = Y - med
    half = (np.asarray(gSiz) // 2).astype(int)
    Gy, Gx = _gauss_matrix(h, gSig[0], half[0]), _gauss_matrix(w, gSig[1], half[1])
    rho = _blur(R, Gy, Gx)
    v = _score(rho, rolling_length, rolling_sum)
    A = np.zeros((h, w, K), np.float32)
    C = np.zeros((K, T), np.float32)
    for k in range(K):
        i, j = np.unravel_index(np.argmax(v), (h, w))
        y0, y1 = max(i - half[0], 0), min(i + half[0] + 1, h)
        x0, x1 = max(j - half[1], 0), min(j + half[1] + 1, w)
        D = R[:, y0:y1, x0:x1].reshape(T, -1)
        a, c = _finetune(D, rho[:, i, j].copy(), nIter)
        img = a.reshape(y1 - y0, x1 - x0)
        A[y0:y1, x0:x1, k] = img
        C[k] = c
        R[:, y0:y1, x0:x1] -= c[:, None, None] * img
        # the blurred movie changes only within twice the box around the seed
        Y0, Y1 = max(i - 2 * half[0], 0), min(i + 2 * half[0] + 1, h)
        X0, X1 = max(j - 2 * half[1], 0), min(j + 2 * half[1] + 1, w)
        blurred = Gy[Y0:Y1, y0:y1] @ img @ Gx[X0:X1, x0:x1].T
        rho[:, Y0:Y1, X0:X1] -= c[:, None, None] * blurred
        v[Y0:Y1, X0:X1] = _score(rho[:, Y0:Y1, X0:X1], rolling_length, rolling_sum)
    return A.reshape(h * w, K), C, R, med


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Greedy seeding of K components and an NMF background.

    Parameters
    ----------
    Y : (T, h, w) array
        Movie (time first).
    K : int
        Number of components.
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
        Background components, from an NMF of the residual movie.

    Returns
    -------
    A : (N, K) float32 array
        Footprints (unit norm at the downsampled resolution), N = h * w, pixel ``y * w + x``.
    C : (K, T) float32 array
    center : (K, 2) float array
        Centres of mass (y, x) of the footprints.
    b : (N, nb) float32 array
    f : (nb, T) float32 array

    Notes
    -----
    The filtered movie's most energetic pixel seeds a rank-1 fit in a ``gSiz`` box; the fit
    is subtracted from the movie and the filtered movie, and the next seed is taken.
    Pnevmatikakis et al. 2016, doi:10.1016/j.neuron.2015.11.037.
    """
    Y = _finite(Y)
    T, h, w = Y.shape
    gSig = _pair(gSig)
    gSiz = _default_gsiz(gSig, gSiz)
    Yd = _down(Y, ssub, tsub)
    A, C, b, f = _greedy_ds(Yd, K, gSig / ssub, gSiz / ssub, nIter, rolling_sum,
                            max(int(rolling_length) // tsub, 1), nb)
    A = _up_space(A, ssub, Yd.shape[1:], (h, w))
    b = _up_space(b, ssub, Yd.shape[1:], (h, w))
    C, f = _upsample(C, tsub, T, 1), _upsample(f, tsub, T, 1)
    return A, C, _centers(A, (h, w)), b, f


def _greedy_ds(Yd, K, gSig, gSiz, nIter, rolling_sum, rolling_length, nb):
    """Greedy seeding and background on an already downsampled movie."""
    gSiz = 2 * (np.round(gSiz).astype(int) // 2) + 1
    A, C, R, med = _greedy(Yd, K, gSig, gSiz, nIter, rolling_sum, max(int(rolling_length), 1))
    if nb > 0:
        R += med
        b, f = _nmf(np.maximum(R.reshape(len(R), -1), 0), nb)
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
) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Initialise footprints, traces and background as CaImAn's ``initialize_components``.

    The movie is divided by its mean image plus the median of that image, so that bright
    and dim pixels count alike (skipped for movies without a positive baseline),
    downsampled by ``ssub``/``tsub``, seeded by :func:`greedy_roi`, refined by
    :func:`~calcium_dask.cnmf.hals.hals` (``maxIter`` iterations, each footprint within
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

    Returns
    -------
    A : (N, K) csc float32, C : (K, T) float32, b : (N, nb) float32, f : (nb, T) float32,
    center : (K, 2) float array
    """
    Y = _finite(Y)
    T, h, w = Y.shape
    gSig = _pair(gSig)
    gSiz = _default_gsiz(gSig, gSiz)
    img = _normalizer(Y) if normalize_init else np.ones((h, w), np.float32)
    Yd = _down(Y / img, ssub, tsub)
    A, C, b, f = _greedy_ds(Yd, K, gSig / ssub, gSiz / ssub, nIter, rolling_sum,
                            max(int(rolling_length) // tsub, 1), nb)
    if use_hals and K > 0:
        A, C, b, f = hals(Yd, A, C, b, f, maxIter=maxIter)
        A = A.toarray()
    A = _up_space(A, ssub, Yd.shape[1:], (h, w)) * img.reshape(-1, 1)
    b = _up_space(b, ssub, Yd.shape[1:], (h, w)) * img.reshape(-1, 1)
    C, f = _upsample(C, tsub, T, 1), _upsample(f, tsub, T, 1)
    A = sp.csc_matrix(A.astype(np.float32))
    return A, C.astype(np.float32), b.astype(np.float32), f.astype(np.float32), _centers(A, (h, w))
