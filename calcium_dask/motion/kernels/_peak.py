"""Locating the cross-correlation peak: bounded integer search, then upsampled-DFT refinement.

The correlation ``c(s) = (1/hw) sum_k Q(k) exp(-2 pi i k.s / n)`` of a conjugated
cross-power spectrum ``Q = F * conj(T)`` (rfft2 layout) is evaluated only where needed,
at shifts on a grid of step ``1/factor``, by two small matrix products per image (Guizar-Sicairos, Thurman & Fienup
2008, doi:10.1364/OL.33.000156). Shifts are handled as integers in units of ``1/factor``
so that every phase factor is an exact root of unity taken from a table: no complex
exponentials per image, and float32 phases stay accurate for any frame size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

from ._envelope import Envelope

__all__ = ["correlation_grid", "find_peak", "find_peak_contrast"]

_FINE_HALF_WIDTH = 0.3  # pixels searched either side of the integer-stage estimate
_DIRECT_LIMIT = 400  # beyond this many integer candidates an inverse FFT is cheaper


@lru_cache(maxsize=32)
def _roots(order: int) -> np.ndarray:
    return np.exp((2j * np.pi / order) * np.arange(order)).astype(np.complex64)


@lru_cache(maxsize=32)
def _freqs(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ky = np.rint(np.fft.fftfreq(h, 1.0 / h)).astype(np.int64)  # signed row frequencies
    kx = np.arange(w // 2 + 1, dtype=np.int64)
    weight = np.full(kx.size, 2.0, dtype=np.float32)  # rfft column + its Hermitian mirror
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    return ky, kx, weight


def _phases(order: int, freqs: np.ndarray, start: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """exp(2 pi i (start[n] + offsets[j]) freqs[k] / order) as (N, r, nk), by two table lookups."""
    roots = _roots(order)
    base = roots[(start[:, None] * freqs) % order]  # (N, nk)
    step = roots[(offsets[:, None] * freqs) % order]  # (r, nk)
    return base[:, None, :] * step[None]


def correlation_grid(
    prod: np.ndarray,
    start: np.ndarray,
    offsets_y: np.ndarray,
    offsets_x: np.ndarray,
    *,
    shape: tuple[int, int],
    factor: int = 1,
) -> np.ndarray:
    """Cross-correlation of each image on a small grid of shifts.

    Parameters
    ----------
    prod : ndarray, shape (N, h, w//2+1), complex64
        Conjugated cross-power spectra ``F * conj(T)``.
    start : ndarray, shape (N, 2) or (2,), int
        Grid origin of each image (or one origin shared by all, which is faster), in
        units of ``1 / factor`` pixel.
    offsets_y, offsets_x : ndarray, shapes (ry,), (rx,), int
        Grid points relative to ``start`` (shared by all images), same units.
    shape : (h, w)
    factor : int

    Returns
    -------
    ndarray, shape (N, ry, rx), float64
        ``c[n, i, j] = sum_x t(x) f(x - s)`` at
        ``s = (start[n] + (offsets_y[i], offsets_x[j])) / factor``.
    """
    h, w = shape
    ky, kx, weight = _freqs(h, w)
    start = np.asarray(start, dtype=np.int64)
    shared = start.ndim == 1
    starts = start[None] if shared else start
    # Q = conj(P): c(s) = Re sum Q exp(-i k.s), hence the negated shifts.
    ey = _phases(factor * h, ky, -starts[:, 0], -offsets_y)  # (N or 1, ry, h)
    ex = _phases(factor * w, kx, -starts[:, 1], -offsets_x)  # (N or 1, rx, wc)
    ex *= weight
    if shared:  # one large matrix product instead of N small ones
        n, wc = prod.shape[0], prod.shape[-1]
        cols = (prod.reshape(-1, wc) @ ex[0].T).reshape(n, h, -1)
        out = np.matmul(ey[0], cols)
    else:
        out = np.matmul(ey, np.matmul(prod, np.swapaxes(ex, 1, 2)))
    return out.real.astype(np.float64) / (h * w)


def _parabolic_offset(profile: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Vertex of the parabola through samples j-1, j, j+1 of each row, in samples."""
    n, r = profile.shape
    rows = np.arange(n)
    left = profile[rows, np.clip(j - 1, 0, r - 1)]
    mid = profile[rows, j]
    right = profile[rows, np.clip(j + 1, 0, r - 1)]
    denom = left - 2.0 * mid + right
    ok = (j > 0) & (j < r - 1) & np.isfinite(left) & np.isfinite(right) & (denom < 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.where(ok, 0.5 * (left - right) / np.where(ok, denom, -1.0), 0.0)
    return np.clip(delta, -0.5, 0.5)


def _argmax2(vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, ry, rx = vals.shape
    return np.unravel_index(vals.reshape(n, -1).argmax(axis=1), (ry, rx))


def _integer_window(lo_i: np.ndarray, hi_i: np.ndarray, window: np.ndarray | None):
    """Integer candidates of all images: (start (2,), my (N, ry), mx (N, rx)).

    All images share one window, so they share the DFT kernels: ``window`` (2, 2) =
    (first, last) per axis when given (a fixed window keeps each image's result
    independent of the others in its batch), else the union of the images' bounds.
    """
    n = len(lo_i)
    if window is None:
        first, last = lo_i.min(axis=0), hi_i.max(axis=0)
    else:
        first, last = np.asarray(window[0], np.int64), np.asarray(window[1], np.int64)
    span = last - first + 1
    my = np.broadcast_to(first[0] + np.arange(span[0]), (n, span[0]))
    mx = np.broadcast_to(first[1] + np.arange(span[1]), (n, span[1]))
    return first, my, mx


def _clip_to_window(lo_i: np.ndarray, hi_i: np.ndarray, window: np.ndarray | None):
    if window is None:
        return lo_i, hi_i
    first, last = np.asarray(window[0]), np.asarray(window[1])
    lo_c = np.clip(lo_i, first, last)
    return lo_c, np.clip(hi_i, lo_c, last)


def _integer_stage(
    prod: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    shape: tuple[int, int],
    envelope: Envelope | None,
    window: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best integer shift in [lo, hi], a parabolic subpixel estimate, and the peak score."""
    rows = np.arange(len(prod))
    lo_i = np.ceil(lo - 1e-9).astype(np.int64)
    hi_i = np.maximum(np.floor(hi + 1e-9).astype(np.int64), lo_i)  # keep >= 1 integer
    lo_i, hi_i = _clip_to_window(lo_i, hi_i, window)
    start, my, mx = _integer_window(lo_i, hi_i, window)
    if my.shape[1] * mx.shape[1] > _DIRECT_LIMIT:
        cc = scipy.fft.irfft2(prod, s=shape, axes=(-2, -1), workers=1)  # c(-s)
        vals = cc[rows[:, None, None], (-my % shape[0])[:, :, None], (-mx % shape[1])[:, None, :]]
        vals = vals.astype(np.float64)
    else:
        oy, ox = my[0] - my[0, 0], mx[0] - mx[0, 0]
        vals = correlation_grid(prod, start, oy, ox, shape=shape)
    if envelope is not None:
        vals = envelope.score_integer(vals, my, mx)
    everywhere = vals
    valid_y = (my >= lo_i[:, :1]) & (my <= hi_i[:, :1])
    valid_x = (mx >= lo_i[:, 1:]) & (mx <= hi_i[:, 1:])
    vals = np.where(valid_y[:, :, None] & valid_x[:, None, :], vals, -np.inf)
    jy, jx = _argmax2(vals)
    best = np.stack([my[rows, jy], mx[rows, jx]], axis=1)
    offset = np.stack([_parabolic_offset(vals[rows, :, jx], jy), _parabolic_offset(vals[rows, jy, :], jx)], axis=1)
    return _Integer(best, np.clip(best + offset, lo, hi), vals[rows, jy, jx], everywhere, my, mx)


@dataclass
class _Integer:
    """The integer stage: best shift (within the bounds), its parabolic estimate and score,
    and the scores of every integer shift of the window (bounds or not), at ``my`` x ``mx``."""

    best: np.ndarray
    estimate: np.ndarray
    value: np.ndarray
    scores: np.ndarray
    my: np.ndarray
    mx: np.ndarray

    def contrast(self, radius: int) -> np.ndarray:
        """Peak score over the best score of the window farther than ``radius`` pixels
        (Chebyshev) from it, allowed shift or not: about 1 when noise made the peak, large
        when the match stands out; ``inf`` when nothing farther was searched or scored above
        0, 0 for a peak at or below 0."""
        near_y = np.abs(self.my - self.best[:, :1]) <= radius
        near_x = np.abs(self.mx - self.best[:, 1:]) <= radius
        far = np.where(near_y[:, :, None] & near_x[:, None, :], -np.inf, self.scores)
        rival = far.reshape(len(far), -1).max(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(rival > 0, self.value / np.where(rival > 0, rival, 1.0), np.inf)
        return np.where(self.value > 0, ratio, 0.0)


def _fine_scores(
    prod: np.ndarray, my: np.ndarray, mx: np.ndarray, shape: tuple[int, int], factor: int, envelope: Envelope | None
) -> np.ndarray:
    start = np.stack([my[:, 0], mx[:, 0]], axis=1)
    vals = correlation_grid(prod, start, my[0] - my[0, 0], mx[0] - mx[0, 0], shape=shape, factor=factor)
    if envelope is None:
        return vals
    return envelope.score_grid(vals, my, mx, factor)


def _on_open_edge(m: np.ndarray, j: np.ndarray, q: int, lo: np.ndarray, hi: np.ndarray, factor: int) -> np.ndarray:
    """Maximum on the region's edge with allowed shifts beyond it: the peak lies further out."""
    first = (j == 0) & (m[:, 0] - 1 >= lo * factor)
    last = (j == 2 * q) & (m[:, -1] + 1 <= hi * factor)
    return first | last


def _fine_stage(
    prod: np.ndarray,
    estimate: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    shape: tuple[int, int],
    factor: int,
    envelope: Envelope | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Upsampled-DFT search around ``estimate`` on the 1/factor grid, then a parabola."""
    n = len(prod)
    q = max(1, int(np.ceil(_FINE_HALF_WIDTH * factor)))
    steps = np.arange(-q, q + 1)
    centre = np.rint(estimate * factor).astype(np.int64)
    shifts = np.empty((n, 2))
    peak = np.empty(n)
    todo = np.arange(n)
    for attempt in range(4):
        my = centre[todo, :1] + steps
        mx = centre[todo, 1:] + steps
        every = len(todo) == n  # indexing would copy the whole batch of spectra
        sub_prod = prod if every else prod[todo]
        sub_envelope = envelope if (every or envelope is None) else envelope.take(todo)
        vals = _fine_scores(sub_prod, my, mx, shape, factor, sub_envelope)
        in_y = (my >= (lo[todo, :1] - 1e-9) * factor) & (my <= (hi[todo, :1] + 1e-9) * factor)
        in_x = (mx >= (lo[todo, 1:] - 1e-9) * factor) & (mx <= (hi[todo, 1:] + 1e-9) * factor)
        in_y[:, q] = in_x[:, q] = True  # the centre always counts
        vals = np.where(in_y[:, :, None] & in_x[:, None, :], vals, -np.inf)
        jy, jx = _argmax2(vals)
        edge = _on_open_edge(my, jy, q, lo[todo, 0], hi[todo, 0], factor)
        edge |= _on_open_edge(mx, jx, q, lo[todo, 1], hi[todo, 1], factor)
        done = ~edge if attempt < 3 else np.ones(len(todo), dtype=bool)
        rows = np.arange(len(todo))
        dy = _parabolic_offset(vals[rows, :, jx], jy)
        dx = _parabolic_offset(vals[rows, jy, :], jx)
        idx = todo[done]
        shifts[idx, 0] = ((my[rows, jy] + dy) / factor)[done]
        shifts[idx, 1] = ((mx[rows, jx] + dx) / factor)[done]
        peak[idx] = vals[rows, jy, jx][done]
        centre[todo[~done]] = np.stack([my[rows, jy], mx[rows, jx]], axis=1)[~done]
        todo = todo[~done]
        if not len(todo):
            break
    return np.clip(shifts, lo, hi), peak


def find_peak(
    prod: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    shape: tuple[int, int],
    upsample_factor: int = 10,
    envelope: Envelope | None = None,
    window: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Shift maximising the (normalised) cross-correlation within bounds, to 1/upsample_factor px.

    Parameters
    ----------
    prod : ndarray, shape (N, h, w//2+1), complex64
        Conjugated cross-power spectra ``F * conj(T)`` (:func:`cross_power`).
    lo, hi : ndarray, shape (N, 2)
        Inclusive bounds (pixels) of the allowed shifts, per image. The integer search
        covers only the integers inside (NoRMCorre's bounded peak search) and the
        subpixel result never leaves the interval.
    shape : (h, w)
    upsample_factor : int
        1 returns the integer peak.
    envelope : Envelope, optional
        When given the score is the correlation divided by the taper's autocorrelation
        (:mod:`._envelope`), otherwise the plain correlation.
    window : array-like (2, 2) of int, optional
        Fixed integer search window ((first_y, first_x), (last_y, last_x)) shared by all
        images (each still limited to its own bounds). Default: the union of the bounds,
        which depends on the other images of the batch.

    Returns
    -------
    shifts : ndarray, shape (N, 2), float64
    peak : ndarray, shape (N,), float64
        Score at the best sample: ``sum_x t(x) f(x - s)``, divided by ``A(s)`` when an
        ``envelope`` is given.

    Notes
    -----
    The integer stage also fits a parabola through the best integer and its neighbours;
    the upsampled DFT then samples +-0.3 pixel around that estimate (moving the region if
    the maximum lands on its edge) rather than +-0.75 pixel around the integer peak, which
    finds the same maximum at about a third of the cost. A final parabola through the best
    upsampled sample and its neighbours interpolates between grid points.
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    stage = _integer_stage(prod, lo, hi, shape, envelope, window)
    if upsample_factor <= 1:
        return stage.best.astype(np.float64), stage.value
    return _fine_stage(prod, stage.estimate, lo, hi, shape, int(upsample_factor), envelope)


def find_peak_contrast(
    prod: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    shape: tuple[int, int],
    radius: int,
    upsample_factor: int = 10,
    envelope: Envelope | None = None,
    window: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`find_peak`, and how far the peak stands out of the correlation around it.

    Parameters
    ----------
    radius : int
        Half-width, pixels, of the peak's main lobe (the template's autocorrelation),
        left out when looking for the peak's best rival.
    window : array-like (2, 2) of int, optional
        As in :func:`find_peak`; rivals are looked for in the whole window, also beyond
        ``lo`` and ``hi`` (give a window wider than the bounds so that the correlation
        around a peak near the bounds is seen).
    prod, lo, hi, shape, upsample_factor, envelope
        As in :func:`find_peak`.

    Returns
    -------
    shifts, peak : as :func:`find_peak`
    contrast : ndarray, shape (N,)
        Score of the best integer shift over the best score among the integer shifts
        farther than ``radius`` from it (suite2p's peak-to-noise ratio of a block's phase
        correlation): near 1 when the peak is one of many that noise made.
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    stage = _integer_stage(prod, lo, hi, shape, envelope, window)
    contrast = stage.contrast(int(radius))
    if upsample_factor <= 1:
        return stage.best.astype(np.float64), stage.value, contrast
    shifts, peak = _fine_stage(prod, stage.estimate, lo, hi, shape, int(upsample_factor), envelope)
    return shifts, peak, contrast
