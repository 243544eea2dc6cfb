"""Motion correction of one block of frames: the kernel the dask orchestration maps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._spectral import as_stack
from .cache import TemplateCache, prepare_template
from .field import mean_shift, warp_piecewise
from .filters import high_pass_filter
from .registration import register_piecewise, register_rigid, register_rigid_fit
from .temporal import fill_unreliable, smooth_frames
from .warp import BorderNan, apply_shift

__all__ = ["correct_frames"]


def _block_cache(
    template: np.ndarray | TemplateCache | None,
    template_cache: TemplateCache | None,
    *,
    pw_rigid: bool,
    strides: Sequence[int],
    overlaps: Sequence[int],
    gSig_filt: float | Sequence[float] | None,
    clip_quantile: float | None = None,
) -> TemplateCache:
    cache = template_cache if template_cache is not None else template
    if isinstance(cache, TemplateCache):
        want = None if gSig_filt is None else tuple(float(v) for v in np.broadcast_to(gSig_filt, 2))
        if want is not None and cache.gSig_filt != want:
            raise ValueError(f"template_cache was prepared with gSig_filt={cache.gSig_filt}, not {want}")
        if cache.clip_quantile != clip_quantile:
            raise ValueError(f"template_cache was prepared with clip_quantile={cache.clip_quantile}, "
                             f"not {clip_quantile}")
        return cache
    if cache is None:
        raise ValueError("pass a template or a template_cache")
    return prepare_template(
        cache,
        strides=strides if pw_rigid else None,
        overlaps=overlaps if pw_rigid else None,
        gSig_filt=gSig_filt,
        clip_quantile=clip_quantile,
    )


def correct_frames(
    frames: np.ndarray,
    template: np.ndarray | TemplateCache | None,
    *,
    pw_rigid: bool = True,
    max_shifts: Sequence[float] = (6, 6),
    strides: Sequence[int] = (48, 48),
    overlaps: Sequence[int] = (24, 24),
    max_deviation_rigid: float | None = 3,
    upsample_factor: int = 10,
    upsample_factor_grid: int = 4,
    border_nan: BorderNan = "copy",
    shifts_opencv: bool = True,
    interpolation: str = "cubic",
    gSig_filt: float | Sequence[float] | None = None,
    clip_quantile: float | None = 0.95,
    min_mov: float | None = None,
    nonneg_movie: bool = True,
    template_cache: TemplateCache | None = None,
    smooth_sigma_time: float = 0.0,
    snr_thresh: float | None = None,
    halo: tuple[int, int] = (0, 0),
) -> dict[str, Any]:
    """Register a block of frames to a template and warp them (rigid or piecewise rigid).

    Parameters
    ----------
    frames : ndarray, shape (T, H, W) or (H, W)
        Raw frames, any real dtype.
    template : ndarray, shape (H, W), or TemplateCache, or None
        Template in the same (raw) space as ``frames``; None when ``template_cache`` is
        given. Prepare it once with ``prepare_template(template, strides=..., overlaps=...,
        gSig_filt=..., clip_quantile=...)`` and pass it as ``template_cache`` to reuse it
        across blocks (its ``gSig_filt`` and ``clip_quantile`` must be those given here).
    pw_rigid : bool
        Piecewise-rigid correction (otherwise rigid only).
    max_shifts : (float, float)
        Bound of the rigid shifts, pixels.
    strides, overlaps : (int, int)
        Patch layout for ``pw_rigid``.
    max_deviation_rigid : float or None
        Bound of each patch shift around its frame's rigid shift.
    upsample_factor : int
        Subpixel resolution of the shift estimates.
    upsample_factor_grid : int
        Smoothness of the piecewise field (see :func:`field_weights`).
    border_nan : {'copy', True, False, 'min'}
        Fill of pixels that came from outside the frame.
    shifts_opencv : bool
        Rigid mode: True warps with OpenCV (``interpolation``), False with the Fourier
        shift theorem. Piecewise mode always warps with ``cv2.remap``.
    interpolation : {'cubic', 'linear', 'nearest', 'lanczos'}
        OpenCV interpolation; CaImAn uses cubic.
    gSig_filt : float or (float, float), optional
        When set, shifts are estimated on high-pass filtered copies of the frames and the
        template (:func:`high_pass_filter`), and applied to the raw frames (one-photon data).
    clip_quantile : float, optional
        Register frames and template clipped at this quantile of the template's pixels
        (:func:`prepare_template`), so that bright transients do not steer the shifts;
        the raw frames are warped. None registers raw intensities, as NoRMCorre does.
    min_mov : float, optional
        Estimated minimum of the whole movie (CaImAn takes the minimum of the first 400
        frames, high-pass filtered when ``gSig_filt`` is set). Must be the same for every
        block, so the orchestration computes it once; None means no offset.
    nonneg_movie : bool
        With ``min_mov`` given, subtract ``min_mov`` from the corrected frames (CaImAn adds
        ``add_to_movie = -min_mov`` to the saved movie), so the corrected movie's minimum is
        about 0: a negative ``min_mov`` raises the movie, a positive one lowers it. The
        template and the shifts are unaffected.
    template_cache : TemplateCache, optional
        Prepared template (see ``template``); takes precedence over ``template``.
    smooth_sigma_time : float
        Register frames smoothed in time by a Gaussian of this SD, frames
        (``motion.kernels.temporal.smooth_frames``, suite2p's name): for
        noisy frames (one-photon), whose single-frame correlation peak is unreliable. The
        raw frames are warped. 0: each frame on its own.
    snr_thresh : float, optional
        A frame whose correlation peak stands out of the correlation around it by less
        than this ratio (see ``motion.kernels.registration.register_rigid_fit``)
        takes the shift interpolated between its nearest significant neighbours in time
        (suite2p's name, there for the blocks of its non-rigid registration). None: every
        peak is trusted.
    halo : (int, int)
        Frames at the start and end of ``frames`` that only serve the smoothing and the
        interpolation of their neighbours (copied from the adjacent blocks): they are
        registered but neither warped nor returned.

    Returns
    -------
    dict
        ``corrected`` (T, H, W) float32; ``shifts`` (T, 2) float32, the rigid shift
        (dy, dx) applied to each raw frame: in piecewise mode the frame average of the
        applied field (:func:`mean_shift`); ``shifts_rig`` (T, 2) float32, the rigid
        stage's estimate the patches were bounded around, or None in rigid mode;
        ``patch_shifts`` (T, ny, nx, 2) float32 or None in rigid mode; ``peak`` (T,)
        float32, the rigid correlation coefficient with the template; ``peak_snr`` (T,)
        float32, how far that peak stands out (see ``snr_thresh``; None without). A single (H, W) frame
        gives arrays without the T axis. ``T`` counts the frames without the ``halo``.

    Notes
    -----
    NoRMCorre (Pnevmatikakis & Giovannucci 2017, doi:10.1016/j.jneumeth.2017.07.016): in
    piecewise mode the frame is warped only by the smooth field interpolated from the
    patch shifts (which are bounded around the rigid shift), never by the rigid shift too.
    """
    stack, single = as_stack(frames, native=True)  # integers are converted frame by frame
    cache = _block_cache(
        template, template_cache, pw_rigid=pw_rigid, strides=strides, overlaps=overlaps, gSig_filt=gSig_filt,
        clip_quantile=clip_quantile
    )
    reg = stack if cache.gSig_filt is None else high_pass_filter(stack, cache.gSig_filt)
    reg = smooth_frames(reg, smooth_sigma_time) if smooth_sigma_time > 0 else reg
    snr = None
    if snr_thresh is None:
        shifts, peak = register_rigid(reg, cache, max_shifts=max_shifts, upsample_factor=upsample_factor)
    else:
        fit = register_rigid_fit(reg, cache, max_shifts=max_shifts, upsample_factor=upsample_factor)
        shifts, peak, snr = fill_unreliable(fit.shifts, fit.snr >= snr_thresh), fit.peak, fit.snr
    core = slice(int(halo[0]), len(stack) - int(halo[1]))
    if halo != (0, 0):
        stack, reg, shifts, peak = stack[core], reg[core], shifts[core], peak[core]
    patch_shifts = None
    if pw_rigid:
        patch_shifts = register_piecewise(
            reg,
            cache,
            strides=strides,
            overlaps=overlaps,
            max_shifts=max_shifts,
            max_deviation_rigid=max_deviation_rigid,
            rigid_shifts=shifts,
            upsample_factor=upsample_factor,
        )
        corrected = warp_piecewise(
            stack,
            patch_shifts,
            strides=strides,
            overlaps=overlaps,
            upsample_factor_grid=upsample_factor_grid,
            border_nan=border_nan,
            interpolation=interpolation,
        )
    else:
        method = "opencv" if shifts_opencv else "fft"
        corrected = apply_shift(stack, shifts, border_nan=border_nan, interpolation=interpolation, method=method)
    if nonneg_movie and min_mov is not None:
        corrected -= np.float32(min_mov)
    result = {"corrected": corrected, "shifts": shifts, "patch_shifts": patch_shifts, "peak": peak,
              "shifts_rig": None, "peak_snr": None if snr is None else snr[core]}
    if pw_rigid:
        result["shifts_rig"] = shifts
        result["shifts"] = mean_shift(patch_shifts, stack.shape[1:], strides=strides, overlaps=overlaps,
                                      upsample_factor_grid=upsample_factor_grid)
    if single:
        result = {k: (v[0] if v is not None else None) for k, v in result.items()}
    return result
