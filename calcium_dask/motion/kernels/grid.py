"""The grid of overlapping patches used by piecewise-rigid registration."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["extract_patches", "patch_centers", "patch_grid", "patch_size"]


def patch_size(
    shape: Sequence[int], *, strides: Sequence[int], overlaps: Sequence[int]
) -> tuple[int, int]:
    """Size ``strides + overlaps`` of a patch, limited to the frame size.

    Parameters
    ----------
    shape : (H, W)
    strides, overlaps : (int, int)

    Returns
    -------
    (ph, pw) : tuple of int
    """
    if min(strides) < 1 or min(overlaps) < 0:
        raise ValueError(f"strides must be >= 1 and overlaps >= 0, got {strides}, {overlaps}")
    return tuple(min(int(s) + int(o), int(n)) for n, s, o in zip(shape, strides, overlaps))  # type: ignore[return-value]


def _starts(n: int, size: int, stride: int) -> np.ndarray:
    # Regular starts, plus a last patch flush with the far border (NoRMCorre's layout).
    return np.array(list(range(0, n - size, stride)) + [n - size], dtype=np.int64)


def patch_grid(
    shape: Sequence[int], *, strides: Sequence[int], overlaps: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Start coordinates of the patches that tile a frame.

    Parameters
    ----------
    shape : (H, W)
        Frame shape.
    strides : (int, int)
        Distance between the starts of neighbouring patches.
    overlaps : (int, int)
        Extra pixels each patch extends beyond its stride; a patch is
        ``strides + overlaps`` pixels wide (limited to the frame).

    Returns
    -------
    ys : ndarray, shape (ny,), int64
        Row of the top edge of each patch row: ``0, s, 2s, ...`` then ``H - ph``.
    xs : ndarray, shape (nx,), int64
        Column of the left edge of each patch column.

    Notes
    -----
    As in NoRMCorre (Pnevmatikakis & Giovannucci 2017, doi:10.1016/j.jneumeth.2017.07.016)
    the patches start every ``stride`` pixels while they fit, and one more patch is placed
    flush with the far border, so the last two patches may overlap more than ``overlaps``.
    """
    ph, pw = patch_size(shape, strides=strides, overlaps=overlaps)
    return _starts(int(shape[0]), ph, int(strides[0])), _starts(int(shape[1]), pw, int(strides[1]))


def patch_centers(
    shape: Sequence[int], *, strides: Sequence[int], overlaps: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the patches of :func:`patch_grid`, in pixel coordinates.

    Returns
    -------
    cy : ndarray, shape (ny,), float64
        ``ys + (ph - 1) / 2`` (pixel ``i`` has its centre at coordinate ``i``).
    cx : ndarray, shape (nx,), float64
    """
    ph, pw = patch_size(shape, strides=strides, overlaps=overlaps)
    ys, xs = patch_grid(shape, strides=strides, overlaps=overlaps)
    return ys + (ph - 1) / 2.0, xs + (pw - 1) / 2.0


def extract_patches(
    frames: np.ndarray, ys: np.ndarray, xs: np.ndarray, size: Sequence[int]
) -> np.ndarray:
    """Copy all patches of all frames into one array.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W)
    ys, xs : ndarray, shapes (ny,), (nx,)
        Patch starts from :func:`patch_grid`.
    size : (ph, pw)

    Returns
    -------
    ndarray, shape (T, ny, nx, ph, pw), same dtype as ``frames``
    """
    windows = np.lib.stride_tricks.sliding_window_view(frames, tuple(size), axis=(-2, -1))
    return windows[:, ys[:, None], xs[None, :]]
