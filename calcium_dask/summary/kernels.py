"""Summary images from streaming partial sums (numpy only).

Each block of frames gives a small record of sums; records add up across blocks in any
order (a dask reduction), and :func:`finalize` turns the total into mean, max, std and the
local correlation image, so the movie is read once and never held in memory.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["partial_sums", "combine", "finalize", "NEIGHBOURS"]

#: half of the 8-neighbourhood; the other half follows by symmetry
NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _pairs(h: int, w: int, dy: int, dx: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices (a, b) so that a pixel in ``a`` has its (dy, dx) neighbour at the same place in ``b``."""
    ys_a, ys_b = slice(0, h - dy), slice(dy, h)
    xs_a, xs_b = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    return (ys_a, xs_a), (ys_b, xs_b)


def partial_sums(frames: np.ndarray, *, offset: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Sums over the frames of one block.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W)
        Any real dtype. NaN pixels (borders with ``border_nan=True``) count as ``offset``
        and are ignored by the max.
    offset : ndarray, shape (H, W), optional
        Subtracted before squaring (e.g. a template), which keeps the sums of squares
        accurate for bright, low-contrast movies. Must be the same for every block.

    Returns
    -------
    dict
        ``n`` (frames), ``max`` (H, W), ``s1`` sum, ``s2`` sum of squares and ``p<dy><dx>``
        sums of products with each neighbour in :data:`NEIGHBOURS`, float32: the sums of
        one block's deviations from ``offset`` (relative error ~1e-6), half the work and
        the bytes of float64; :func:`combine` adds blocks in float64.
    """
    x = np.asarray(frames)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"frames must be real numbers, got {x.dtype}")
    t, h, w = x.shape
    f4 = np.float32
    off = np.zeros((h, w), f4) if offset is None else np.asarray(offset, dtype=f4)
    out = {"n": np.array(t, dtype=np.int64), "max": np.full((h, w), -np.inf, f4), "s1": np.zeros((h, w), f4),
           "s2": np.zeros((h, w), f4)}
    out.update({f"p{dy}{dx}": np.zeros((h - dy, w - abs(dx)), f4) for dy, dx in NEIGHBOURS})
    if t:
        # one fused pass, row by row (the accumulators of a row stay in cache): the
        # memory traffic of separate numpy passes cost ~5x more
        _accumulate(x, off, out["max"], out["s1"], out["s2"], out["p01"], out["p10"], out["p11"],
                    out["p1-1"])
    return out


@numba.njit(cache=True, nogil=True)
def _clean_row(x, t, i, off, buf):  # pragma: no cover - numba
    for j in range(buf.shape[0]):
        v = x[t, i, j] - off[i, j]
        buf[j] = v if np.isfinite(v) else 0.0


@numba.njit(cache=True, nogil=True)
def _accumulate(x, off, mx, s1, s2, p01, p10, p11, p1m1):  # pragma: no cover - numba
    n, h, w = x.shape
    a = np.empty(w, s1.dtype)
    b = np.empty(w, s1.dtype)
    for i in range(h):
        for t in range(n):
            for j in range(w):
                v = x[t, i, j]
                if v > mx[i, j]:  # False for NaN: the max ignores it
                    mx[i, j] = v
            _clean_row(x, t, i, off, a)
            for j in range(w):
                s1[i, j] += a[j]
                s2[i, j] += a[j] * a[j]
            for j in range(w - 1):
                p01[i, j] += a[j] * a[j + 1]
            if i + 1 < h:
                _clean_row(x, t, i + 1, off, b)
                for j in range(w):
                    p10[i, j] += a[j] * b[j]
                for j in range(w - 1):
                    p11[i, j] += a[j] * b[j + 1]
                    p1m1[i, j] += a[j + 1] * b[j]


def combine(records: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Add partial-sum records in float64 (the max is a max)."""
    out = {k: (np.maximum.reduce([r[k] for r in records]) if k == "max"
               else sum(np.asarray(r[k], np.float64) for r in records)) for k in records[0]}
    return out


def finalize(total: dict[str, np.ndarray], *, offset: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Mean, max, std and local correlation images (float32) from the summed record.

    The correlation image is, for each pixel, the mean Pearson correlation over time of
    the pixel with its 8 neighbours (fewer on the border), as CaImAn's ``local_correlations``.
    """
    total = {k: np.asarray(v, np.float64) for k, v in total.items()}
    n = max(int(total["n"]), 1)
    m1 = total["s1"] / n
    var = np.maximum(total["s2"] / n - m1 ** 2, 0.0)
    sd = np.sqrt(var)
    h, w = m1.shape
    acc, cnt = np.zeros((h, w)), np.zeros((h, w))
    for dy, dx in NEIGHBOURS:
        (ya, xa), (yb, xb) = _pairs(h, w, dy, dx)
        cov = total[f"p{dy}{dx}"] / n - m1[ya, xa] * m1[yb, xb]
        den = sd[ya, xa] * sd[yb, xb]
        r = np.divide(cov, den, out=np.zeros_like(cov), where=den > 0)
        acc[ya, xa] += r
        acc[yb, xb] += r
        cnt[ya, xa] += 1
        cnt[yb, xb] += 1
    mean = m1 + (offset if offset is not None else 0.0)
    return {"mean": mean.astype(np.float32), "max": total["max"].astype(np.float32),
            "std": sd.astype(np.float32), "correlation": (acc / np.maximum(cnt, 1)).astype(np.float32)}
