"""Smooth full-resolution shift fields from per-patch shifts, and piecewise-rigid warping."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._spectral import as_stack
from .grid import patch_centers
from .warp import BorderNan, _check_border, _interp_flag, _pixel_grid, _remap

__all__ = ["field_weights", "mean_shift", "shift_field", "warp_piecewise"]


def _linear_matrix(pos: np.ndarray, n: int) -> np.ndarray:
    """(len(pos), n) weights of linear interpolation at fractional indices ``pos`` in [0, n-1]."""
    out = np.zeros((len(pos), n))
    if n == 1:
        out[:, 0] = 1.0
        return out
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, n - 2)
    t = pos - i0
    rows = np.arange(len(pos))
    out[rows, i0] = 1.0 - t
    out[rows, i0 + 1] = t
    return out


def _cubic_matrix(pos: np.ndarray, n: int) -> np.ndarray:
    """(len(pos), n) Catmull-Rom (Keys, a = -1/2) weights, edge samples repeated outside."""
    i0 = np.floor(pos).astype(np.int64)
    t = pos - i0
    taps = np.stack(
        [
            0.5 * (-(t**3) + 2 * t**2 - t),
            0.5 * (3 * t**3 - 5 * t**2 + 2),
            0.5 * (-3 * t**3 + 4 * t**2 + t),
            0.5 * (t**3 - t**2),
        ],
        axis=1,
    )
    out = np.zeros((len(pos), n))
    rows = np.repeat(np.arange(len(pos)), 4)
    cols = np.clip(i0[:, None] + np.arange(-1, 3), 0, n - 1).ravel()
    np.add.at(out, (rows, cols), taps.ravel())
    return out


def _axis_weights(n_pix: int, centres: np.ndarray, factor: int) -> np.ndarray:
    """Weights (n_pix, n) mapping patch values along one axis to every pixel."""
    n = len(centres)
    if n == 1:
        return np.ones((n_pix, 1))
    # Fractional patch index of every pixel; constant beyond the outer centres.
    q = np.interp(np.arange(n_pix, dtype=np.float64), centres, np.arange(n, dtype=np.float64))
    if factor <= 1:
        return _linear_matrix(q, n)
    fine = np.arange((n - 1) * factor + 1) / factor  # refined grid, in patch-index units
    return _linear_matrix(q * factor, len(fine)) @ _cubic_matrix(fine, n)


def field_weights(
    shape: Sequence[int],
    *,
    strides: Sequence[int],
    overlaps: Sequence[int],
    upsample_factor_grid: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Separable interpolation matrices from the patch grid to every pixel.

    Parameters
    ----------
    shape : (H, W)
    strides, overlaps : (int, int)
        Patch layout (:func:`~calcium_dask.motion.kernels.grid.patch_grid`).
    upsample_factor_grid : int
        1: bilinear interpolation between patch centres. k > 1: the grid of patch values is
        first refined k times with Catmull-Rom cubic interpolation, then interpolated
        linearly to every pixel (a smoother field, approaching bicubic as k grows).

    Returns
    -------
    wy : ndarray, shape (H, ny), float32
    wx : ndarray, shape (W, nx), float32
        ``field = wy @ S @ wx.T`` for patch values ``S`` of shape (ny, nx). Each row sums
        to 1; beyond the outermost patch centres the field is constant (edge extension).
    """
    cy, cx = patch_centers(shape, strides=strides, overlaps=overlaps)
    factor = int(upsample_factor_grid)
    wy = _axis_weights(int(shape[0]), cy, factor)
    wx = _axis_weights(int(shape[1]), cx, factor)
    return wy.astype(np.float32), wx.astype(np.float32)


def _layout_weights(ps: np.ndarray, shape: Sequence[int], strides: Sequence[int], overlaps: Sequence[int],
                    upsample_factor_grid: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`field_weights` of the layout, checked against the grid of ``ps`` (T, ny, nx, 2)."""
    wy, wx = field_weights(shape, strides=strides, overlaps=overlaps, upsample_factor_grid=upsample_factor_grid)
    if ps.shape[1:3] != (wy.shape[1], wx.shape[1]):
        raise ValueError(f"patch_shifts grid {ps.shape[1:3]} does not match the layout's {(wy.shape[1], wx.shape[1])}")
    return wy, wx


def shift_field(
    patch_shifts: np.ndarray,
    shape: Sequence[int],
    *,
    strides: Sequence[int],
    overlaps: Sequence[int],
    upsample_factor_grid: int = 4,
) -> np.ndarray:
    """Smooth full-resolution shift field from per-patch shifts.

    Parameters
    ----------
    patch_shifts : ndarray, shape (ny, nx, 2) or (T, ny, nx, 2)
        Output of :func:`register_piecewise`.
    shape : (H, W)
    strides, overlaps : (int, int)
        The layout the patch shifts were measured on.
    upsample_factor_grid : int
        See :func:`field_weights`.

    Returns
    -------
    ndarray, shape (H, W, 2) or (T, H, W, 2), float32
        Shift (dy, dx) at every pixel, equal to each patch's shift at its centre.

    Notes
    -----
    NoRMCorre (Pnevmatikakis & Giovannucci 2017, doi:10.1016/j.jneumeth.2017.07.016) refines
    the patch grid ``upsample_factor_grid`` times before warping; CaImAn's default OpenCV
    path instead resizes the (ny, nx) grid to the frame, which places the patch values at
    evenly spread points rather than at the patch centres. Here each patch's value sits at
    its true centre (the last, flush patch included), the refinement is cubic, and the
    field is a separable product ``wy @ S @ wx.T`` costing O(H W nx) per frame.
    """
    ps = np.asarray(patch_shifts, dtype=np.float32)
    single = ps.ndim == 3
    ps = ps[None] if single else ps
    wy, wx = _layout_weights(ps, shape, strides, overlaps, upsample_factor_grid)
    field = np.stack([wy @ ps[..., c] @ wx.T for c in range(2)], axis=-1)
    return field[0] if single else field


def mean_shift(
    patch_shifts: np.ndarray,
    shape: Sequence[int],
    *,
    strides: Sequence[int],
    overlaps: Sequence[int],
    upsample_factor_grid: int = 4,
) -> np.ndarray:
    """Frame average of the smooth shift field: the rigid part of a piecewise correction.

    Parameters
    ----------
    patch_shifts : ndarray, shape (T, ny, nx, 2)
    shape, strides, overlaps, upsample_factor_grid
        See :func:`shift_field`.

    Returns
    -------
    ndarray, shape (T, 2), float32
        ``shift_field(...).mean(axis=(1, 2))``, without building the field.

    Notes
    -----
    A whole-frame registration follows the textured parts of the frame (bright cells
    weigh most), so under a non-rigid deformation it reports a texture-weighted mean
    displacement. Averaging the field that was applied weighs every pixel alike: it is
    the shift left once the deformation's own mean over the frame is taken out.
    """
    ps = np.asarray(patch_shifts, dtype=np.float64)
    wy, wx = _layout_weights(ps, shape, strides, overlaps, upsample_factor_grid)
    return np.einsum("i,tijc,j->tc", wy.mean(0, dtype=np.float64), ps, wx.mean(0, dtype=np.float64)).astype(np.float32)


def warp_piecewise(
    frames: np.ndarray,
    patch_shifts: np.ndarray,
    *,
    strides: Sequence[int],
    overlaps: Sequence[int],
    upsample_factor_grid: int = 4,
    border_nan: BorderNan = "copy",
    interpolation: str = "linear",
) -> np.ndarray:
    """Apply per-patch shifts as a smooth field, one ``cv2.remap`` per frame.

    Equivalent to ``apply_field(frames, shift_field(patch_shifts, ...))`` without holding
    the (T, H, W, 2) field in memory.

    Parameters
    ----------
    frames : ndarray, shape (H, W) or (T, H, W)
    patch_shifts : ndarray, shape (ny, nx, 2) or (T, ny, nx, 2)
    strides, overlaps, upsample_factor_grid
        See :func:`shift_field`.
    border_nan : {'copy', True, False, 'min'}
    interpolation : {'linear', 'cubic', 'nearest', 'lanczos'}

    Returns
    -------
    ndarray, same shape as ``frames``, float32
    """
    border_nan = _check_border(border_nan)
    flag = _interp_flag(interpolation)
    stack, single = as_stack(frames, native=True)
    ps = np.asarray(patch_shifts, dtype=np.float32).reshape(len(stack), *np.shape(patch_shifts)[-3:])
    wy, wx = _layout_weights(ps, stack.shape[1:], strides, overlaps, upsample_factor_grid)
    wxt = np.ascontiguousarray(wx.T)
    grid = _pixel_grid(stack.shape[1:])
    out = np.empty(stack.shape, np.float32)
    for i in range(len(stack)):
        fy = wy @ (ps[i, ..., 0] @ wxt)
        fx = wy @ (ps[i, ..., 1] @ wxt)
        _remap(stack[i].astype(np.float32, copy=False), fy, fx, grid, flag, border_nan, out=out[i])
    return out[0] if single else out
