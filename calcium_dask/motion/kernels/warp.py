"""Applying rigid shifts and dense shift fields to frames, and building those fields.

A shift or field value ``(dy, dx)`` moves the content of a frame by ``(dy, dx)``: the output
pixel ``(y, x)`` is read from the input at ``(y - dy, x - dx)``. Pixels whose source lies
outside the frame are filled according to ``border_nan``, with NoRMCorre's meanings:
``'copy'`` replicates the nearest edge value, ``True`` writes NaN, ``False`` writes 0 and
``'min'`` writes the frame's minimum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Union

import cv2
import numpy as np
import scipy.fft

from ._cubic import shift_cubic
from ._spectral import as_stack

__all__ = ["apply_field", "apply_shift"]

BorderNan = Union[bool, Literal["copy", "min"]]
_INTERP = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
_TOL = 1e-3  # sub-1/1000 px excursions past the edge are rounding, not missing data


def _interp_flag(interpolation: str) -> int:
    try:
        return _INTERP[interpolation]
    except KeyError:
        raise ValueError(f"interpolation must be one of {sorted(_INTERP)}, got {interpolation!r}") from None


def _check_border(border_nan: BorderNan) -> BorderNan:
    """Validate ``border_nan`` and return it as a Python bool or str."""
    if isinstance(border_nan, (bool, np.bool_)):
        return bool(border_nan)
    if isinstance(border_nan, str) and border_nan in ("copy", "min"):
        return border_nan  # type: ignore[return-value]
    raise ValueError(f"border_nan must be True, False, 'copy' or 'min', got {border_nan!r}")


def _fill_value(valid: np.ndarray, border_nan: BorderNan) -> float:
    """NaN, 0, or the minimum of the valid pixels (an empty set gives 0)."""
    if border_nan is True:
        return np.nan
    if border_nan == "min" and valid.size:
        return float(np.nanmin(valid))
    return 0.0


def _fill_rigid_border(img: np.ndarray, dy: float, dx: float, border_nan: BorderNan) -> None:
    """Overwrite in place the rows/columns whose source lay outside the frame."""
    h, w = img.shape
    top = min(h, max(0, int(np.ceil(dy - _TOL))))
    bottom = min(h, max(0, int(np.ceil(-dy - _TOL))))
    left = min(w, max(0, int(np.ceil(dx - _TOL))))
    right = min(w, max(0, int(np.ceil(-dx - _TOL))))
    if border_nan == "copy":  # nearest valid row/column (only the FFT path needs it)
        if top and top < h:
            img[:top] = img[top]
        if bottom and bottom < h:
            img[h - bottom :] = img[h - bottom - 1]
        if left and left < w:
            img[:, :left] = img[:, left, None]
        if right and right < w:
            img[:, w - right :] = img[:, w - right - 1, None]
        return
    value = _fill_value(img[top : h - bottom, left : w - right], border_nan)
    img[:top] = value
    img[h - bottom : h] = value
    img[:, :left] = value
    img[:, w - right : w] = value


def _fft_shift(stack: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Fourier-shift-theorem translation of each frame (exact for periodic band-limited data)."""
    t, h, w = stack.shape
    # The phase ramp is separable: two small vectors per frame instead of a full exp.
    ramp_y = np.exp(-2j * np.pi * np.outer(shifts[:, 0], np.fft.fftfreq(h))).astype(np.complex64)
    ramp_x = np.exp(-2j * np.pi * np.outer(shifts[:, 1], np.fft.rfftfreq(w))).astype(np.complex64)
    spec = scipy.fft.rfft2(stack, axes=(-2, -1), workers=1)
    spec *= ramp_y[:, :, None]
    spec *= ramp_x[:, None, :]
    return scipy.fft.irfft2(spec, s=(h, w), axes=(-2, -1), workers=1).astype(np.float32, copy=False)


def apply_shift(
    frames: np.ndarray,
    shifts: np.ndarray,
    *,
    border_nan: BorderNan = "copy",
    interpolation: str = "linear",
    method: Literal["opencv", "fft"] = "opencv",
) -> np.ndarray:
    """Translate each frame by a subpixel shift.

    Parameters
    ----------
    frames : ndarray, shape (H, W) or (T, H, W)
    shifts : ndarray, shape (2,) or (T, 2)
        (dy, dx) applied to each frame (content moves by this amount), e.g. the output of
        :func:`register_rigid`.
    border_nan : {'copy', True, False, 'min'}
        Fill of the pixels that came from outside the frame (see module docstring).
    interpolation : {'linear', 'cubic', 'nearest', 'lanczos'}
        OpenCV interpolation (``method='opencv'`` only).
    method : {'opencv', 'fft'}
        ``'opencv'``: ``cv2.warpAffine`` (CaImAn's ``shifts_opencv=True``; bicubic is
        computed as two 1-D passes with OpenCV's weights, ``_cubic.py``). ``'fft'``:
        multiply the spectrum by a phase ramp (Fourier shift theorem; CaImAn's
        ``shifts_opencv=False``), which does not smooth but wraps content around; the
        wrapped border is then filled as ``border_nan`` says.

    Returns
    -------
    ndarray, same shape as ``frames``, float32
    """
    border_nan = _check_border(border_nan)
    separable = method == "opencv" and interpolation == "cubic"
    stack, single = as_stack(frames, native=separable)  # the separable kernel reads integers
    sh = np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
    if len(sh) != len(stack):
        raise ValueError(f"got {len(sh)} shifts for {len(stack)} frames")
    if method == "fft":
        out = _fft_shift(stack, sh)
    elif separable:
        out = shift_cubic(stack, sh)  # warpAffine's bicubic, separably
    elif method == "opencv":
        flag = _interp_flag(interpolation)
        h, w = stack.shape[1:]
        out = np.empty_like(stack)
        for i, (dy, dx) in enumerate(sh):
            mat = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
            cv2.warpAffine(stack[i], mat, (w, h), dst=out[i], flags=flag, borderMode=cv2.BORDER_REPLICATE)
    else:
        raise ValueError(f"method must be 'opencv' or 'fft', got {method!r}")
    if not (border_nan == "copy" and method == "opencv"):
        for i, (dy, dx) in enumerate(sh):
            _fill_rigid_border(out[i], dy, dx, border_nan)
    return out[0] if single else out


def _remap(img: np.ndarray, fy: np.ndarray, fx: np.ndarray, grid: tuple, flag: int, border_nan: BorderNan,
           out: np.ndarray | None = None) -> np.ndarray:
    """``img`` warped by the field ``(fy, fx)``, written into ``out`` when given."""
    gy, gx = grid
    map_y = gy - fy
    map_x = gx - fx
    out = cv2.remap(img, map_x, map_y, flag, dst=out, borderMode=cv2.BORDER_REPLICATE)
    if border_nan != "copy":
        h, w = img.shape
        outside = (map_y < -_TOL) | (map_y > h - 1 + _TOL) | (map_x < -_TOL) | (map_x > w - 1 + _TOL)
        out[outside] = _fill_value(out[~outside], border_nan) if border_nan == "min" else _fill_value(out, border_nan)
    return out


def _pixel_grid(shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    gy = np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w))
    gx = np.broadcast_to(np.arange(w, dtype=np.float32)[None, :], (h, w))
    return gy, gx


def apply_field(
    frames: np.ndarray,
    field: np.ndarray,
    *,
    border_nan: BorderNan = "copy",
    interpolation: str = "linear",
) -> np.ndarray:
    """Warp each frame by a dense shift field with one ``cv2.remap`` per frame.

    Parameters
    ----------
    frames : ndarray, shape (H, W) or (T, H, W)
    field : ndarray, shape (H, W, 2) or (T, H, W, 2)
        (dy, dx) shift at every output pixel (a single field is used for all frames).
    border_nan : {'copy', True, False, 'min'}
    interpolation : {'linear', 'cubic', 'nearest', 'lanczos'}

    Returns
    -------
    ndarray, same shape as ``frames``, float32
        ``out[y, x] = frame[y - dy(y, x), x - dx(y, x)]``.
    """
    border_nan = _check_border(border_nan)
    flag = _interp_flag(interpolation)
    stack, single = as_stack(frames)
    fld = np.asarray(field, dtype=np.float32)
    if fld.shape[-3:] != stack.shape[1:] + (2,):
        raise ValueError(f"field has shape {fld.shape}; expected (..., {stack.shape[1]}, {stack.shape[2]}, 2)")
    fld = np.broadcast_to(fld.reshape(-1, *fld.shape[-3:]), stack.shape + (2,))
    grid = _pixel_grid(stack.shape[1:])
    out = np.empty_like(stack)
    for i in range(len(stack)):
        _remap(stack[i], fld[i, ..., 0], fld[i, ..., 1], grid, flag, border_nan, out=out[i])
    return out[0] if single else out
