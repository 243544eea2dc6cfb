"""Summary images from streaming partial sums (numpy only).

Each block of frames gives a small record of sums; records add up across blocks in any
order (a dask reduction), and :func:`finalize` turns the total into mean, max, std and the
local correlation image, so the movie is read once and never held in memory.
"""

from __future__ import annotations

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
        NaN pixels (borders with ``border_nan=True``) count as ``offset``.
    offset : ndarray, shape (H, W), optional
        Subtracted before squaring (e.g. a template), which keeps the float64 sums of
        squares accurate for bright, low-contrast movies. Must be the same for every block.

    Returns
    -------
    dict
        ``n`` (frames), ``max`` (H, W), ``s1`` sum, ``s2`` sum of squares and ``p<dy><dx>``
        sums of products with each neighbour in :data:`NEIGHBOURS`, float64.
    """
    # float32 products within a block (<= ~1000 frames, offset removed) are accurate to
    # ~1e-5 relative; blocks are then added in float64
    x = np.array(frames, dtype=np.float32, copy=True)
    mx = np.nanmax(x, axis=0).astype(np.float64) if len(x) else np.full(x.shape[1:], -np.inf)
    if offset is not None:
        x -= np.asarray(offset, dtype=np.float32)
    np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    h, w = x.shape[1:]
    flat = x.reshape(len(x), -1)
    out = {"n": np.array(len(x), dtype=np.int64), "max": mx,
           "s1": flat.sum(0, dtype=np.float64).reshape(h, w),
           "s2": np.einsum("ti,ti->i", flat, flat).astype(np.float64).reshape(h, w)}
    for dy, dx in NEIGHBOURS:
        (ya, xa), (yb, xb) = _pairs(h, w, dy, dx)
        out[f"p{dy}{dx}"] = np.einsum("tij,tij->ij", x[:, ya, xa], x[:, yb, xb]).astype(np.float64)
    return out


def combine(records: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Add partial-sum records (the max is a max)."""
    out = {k: (np.maximum.reduce([r[k] for r in records]) if k == "max" else sum(r[k] for r in records))
           for k in records[0]}
    return out


def finalize(total: dict[str, np.ndarray], *, offset: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Mean, max, std and local correlation images (float32) from the summed record.

    The correlation image is, for each pixel, the mean Pearson correlation over time of
    the pixel with its 8 neighbours (fewer on the border), as CaImAn's ``local_correlations``.
    """
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
