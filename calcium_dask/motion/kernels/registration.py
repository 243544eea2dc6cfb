"""Rigid and piecewise-rigid registration of frames to a template (NoRMCorre's estimation)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._envelope import Envelope, taper_width
from ._peak import find_peak, find_peak_contrast
from ._spectral import as_stack, cross_power, rfft2, taper, taper_1d, tapered, tapered_windows
from .cache import TemplateCache, prepare_template

__all__ = ["RigidFit", "register_piecewise", "register_rigid", "register_rigid_fit"]

# Pixels per FFT batch: large enough to amortise Python overhead, small enough that a
# batch's images and spectra stay in a core's cache (2 frames of 512x512, or one frame's
# patches: 5-10 % faster per frame than batches of 16 frames, measured with 1 and 2 processes).
_BATCH_PIXELS = 1 << 19


SMALL_FRAME = 128  # frames with a side below this are registered twice (see register_rigid)
# A frame or patch whose tapered, centred norm is below this fraction of the template's is
# featureless (constant up to rounding): its correlation has no peak to follow.
FLAT = 1e-6


def _batches(n_frames: int, pixels_per_frame: int) -> list[slice]:
    size = max(1, _BATCH_PIXELS // max(pixels_per_frame, 1))
    return [slice(i, min(i + size, n_frames)) for i in range(0, n_frames, size)]


def _rigid_cache(template: np.ndarray | TemplateCache, template_fft: TemplateCache | None) -> TemplateCache:
    if isinstance(template, TemplateCache):
        return template
    if isinstance(template_fft, TemplateCache):
        return template_fft
    if template_fft is not None:
        raise TypeError("template_fft must be a TemplateCache from prepare_template(template)")
    return prepare_template(template)


def _check_shape(stack: np.ndarray, cache: TemplateCache) -> None:
    if stack.shape[1:] != cache.shape:
        raise ValueError(f"frames have shape {stack.shape[1:]} but the template has shape {cache.shape}")


def _search_bound(bound: Sequence[float] | float, size: Sequence[int]) -> np.ndarray:
    """|shift| bound per axis, limited to a quarter of the image (a circular correlation
    cannot tell s from s - n, and the taper needs room)."""
    limit = np.array([max(1, n // 4) for n in size], dtype=np.float64)
    return np.minimum(np.abs(np.broadcast_to(np.asarray(bound, dtype=np.float64), (2,))), limit)


def _envelope(shape: Sequence[int], width: int) -> Envelope:
    return Envelope(tuple(taper_1d(shape[0], width)), tuple(taper_1d(shape[1], width)))


def _clipped(frames: np.ndarray, ceiling: float | None) -> np.ndarray:
    """Frames clipped at ``ceiling`` (float32) for registration, or unchanged when None."""
    return frames if ceiling is None else np.minimum(frames, np.float32(ceiling), dtype=np.float32)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def register_rigid(
    frames: np.ndarray,
    template: np.ndarray | TemplateCache,
    *,
    max_shifts: Sequence[float] = (6, 6),
    upsample_factor: int = 10,
    template_fft: TemplateCache | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rigid subpixel shift of each frame relative to a template.

    Parameters
    ----------
    frames : ndarray, shape (H, W) or (T, H, W)
        Frames to register (any real dtype).
    template : ndarray, shape (H, W), or TemplateCache
        Reference image, or its prepared form (:func:`prepare_template`).
    max_shifts : (float, float)
        Largest allowed ``|dy|, |dx|`` in pixels (also limited to a quarter of the frame).
    upsample_factor : int
        Subpixel resolution of the upsampled-DFT refinement (1: integer shifts).
    template_fft : TemplateCache, optional
        The template's precomputed spectra (``prepare_template(template)``), so that a
        block of frames does not recompute them; same as passing it as ``template``.

    Returns
    -------
    shifts : ndarray, shape (T, 2) or (2,), float32
        (dy, dx) to APPLY to each frame to align it to the template: content that moved
        by +d gives -d.
    peak : ndarray, shape (T,) or scalar, float32
        Correlation coefficient of the tapered, mean-removed frame and template at that
        shift (1 for a perfect match).

    Notes
    -----
    As in NoRMCorre (Pnevmatikakis & Giovannucci 2017, doi:10.1016/j.jneumeth.2017.07.016):
    the integer peak of an FFT cross-correlation within ``max_shifts``, refined by a local
    upsampled DFT computed with small matrix products (Guizar-Sicairos, Thurman & Fienup
    2008, doi:10.1364/OL.33.000156), batched over frames. NoRMCorre's circular correlation
    wraps the images around, and the seam (at the same place in frame and template) pulls
    shifts towards 0; here both images are tapered by the same raised-cosine window
    (``max(8, max_shifts + 2)`` pixels wide) and the correlation is divided by the
    window's autocorrelation (``_envelope.py``). On textured frames this brings the
    error on planted shifts from ~0.05 to ~0.001 pixel. A very bright object inside the
    taper can still bias large shifts (it is weighted differently in frame and template).
    """
    stack, single = as_stack(frames, native=True)
    shifts, peaks, _ = _register_rigid(stack, template, max_shifts, upsample_factor, template_fft, False)
    if single:
        return shifts[0], peaks[0]
    return shifts, peaks


@dataclass
class RigidFit:
    """Rigid registration of a stack of frames (see :func:`register_rigid_fit`).

    Attributes
    ----------
    shifts : ndarray (T, 2) float32
        (dy, dx) to apply to each frame.
    peak : ndarray (T,) float32
        Correlation coefficient with the template at that shift.
    snr : ndarray (T,) float32
        How far the peak stands out: its score over that of the best integer shift
        outside the main lobe of the template's autocorrelation (near 1: noise made it).
    """

    shifts: np.ndarray
    peak: np.ndarray
    snr: np.ndarray


def register_rigid_fit(
    frames: np.ndarray,
    template: np.ndarray | TemplateCache,
    *,
    max_shifts: Sequence[float] = (6, 6),
    upsample_factor: int = 10,
    template_fft: TemplateCache | None = None,
) -> RigidFit:
    """:func:`register_rigid` of a (T, H, W) stack, with the significance of each peak.

    Returns
    -------
    RigidFit

    Notes
    -----
    The significance is suite2p's test of a block's phase-correlation peak (Pachitariu et
    al. 2017, doi:10.1101/061507) applied to the tapered correlation: the peak's score
    over the best score found beyond the main lobe of the template's autocorrelation
    (:meth:`TemplateCache.lobe_radius`), which a correct peak spreads over even without
    noise. On a frame whose correlation noise made the peak, a rival of about the same
    height lies elsewhere in the search window and the ratio is near 1.
    """
    stack, _ = as_stack(frames, native=True)
    shifts, peaks, snr = _register_rigid(stack, template, max_shifts, upsample_factor, template_fft, True)
    return RigidFit(shifts, peaks, snr)


def _register_rigid(stack: np.ndarray, template: np.ndarray | TemplateCache, max_shifts: Sequence[float] | float,
                    upsample_factor: int, template_fft: TemplateCache | None,
                    with_snr: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    cache = _rigid_cache(template, template_fft)
    _check_shape(stack, cache)
    bound = _search_bound(max_shifts, cache.shape)
    width = taper_width(bound.max(), min(cache.shape))
    shifts, peaks, snr = _rigid_pass(stack, cache, bound, width, upsample_factor, with_snr)
    if min(cache.shape) < SMALL_FRAME and len(stack):
        # The taper weighs frame and template alike, which pulls shifts of small frames
        # towards 0. Registered again on the region they share at the integer shift found,
        # both crops hold the same content under the same taper: the residual is unbiased.
        base = np.full(shifts.shape, np.iinfo(np.int64).max)
        for _ in range(3):  # a base 1 px off leaves a biased residual: move it and register again
            if (np.rint(shifts) == base).all():
                break
            base = np.rint(shifts).astype(np.int64)
            shifts, peaks = _overlap_pass(stack, cache, base, upsample_factor)
        shifts = np.clip(shifts, -bound, bound).astype(np.float32)
    return shifts, peaks, snr


def _rigid_pass(stack: np.ndarray, cache: TemplateCache, bound: np.ndarray, width: int,
                upsample_factor: int, with_snr: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One FFT registration of every frame within ``bound`` (taper ``width``): shifts,
    peaks and, ``with_snr``, their significance (see :class:`RigidFit`)."""
    shape = cache.shape
    window = taper(shape, width)
    envelope = _envelope(shape, width)
    tspec, tnorm = cache.spectra(False, width)
    shifts = np.empty((stack.shape[0], 2), dtype=np.float32)
    peaks = np.empty(stack.shape[0], dtype=np.float32)
    snr = np.empty(stack.shape[0], dtype=np.float32) if with_snr else None
    search = np.stack([-np.ceil(bound - 1e-9), np.floor(bound + 1e-9)]).astype(np.int64)
    if with_snr:
        # rivals of a peak are looked for beyond its lobe, also past the bounds: room enough
        # that noise has several chances to rival it even when max_shifts is small
        radius = cache.lobe_radius(width)
        reach = _search_bound(np.maximum(bound, 2 * radius + 2), shape)
        search = np.stack([-np.ceil(reach - 1e-9), np.floor(reach + 1e-9)]).astype(np.int64)
    for sl in _batches(stack.shape[0], shape[0] * shape[1]):
        centred, fnorm = tapered(_clipped(stack[sl], cache.ceiling), window, norm=True)
        prod = cross_power(tspec, rfft2(centred))
        lo = np.broadcast_to(-bound, (len(fnorm), 2))
        hi = np.broadcast_to(bound, (len(fnorm), 2))
        if with_snr:
            found, score, contrast = find_peak_contrast(prod, lo, hi, shape=shape, radius=radius,
                                                        upsample_factor=upsample_factor, envelope=envelope,
                                                        window=search)
        else:
            found, score = find_peak(prod, lo, hi, shape=shape, upsample_factor=upsample_factor,
                                     envelope=envelope, window=search)
        # a featureless (constant) frame has no correlation peak: no evidence of motion
        flat = fnorm <= FLAT * tnorm[0]
        shifts[sl] = np.where(~flat[:, None], found, 0)
        if with_snr:
            snr[sl] = np.where(flat, 0.0, contrast)
        # back from score = c / A(s) to the correlation coefficient c / (|f| |t|)
        peaks[sl] = _safe_ratio(score * envelope.autocorr(found), fnorm * tnorm[0])
    return shifts, peaks, snr


def _overlap_pass(stack: np.ndarray, cache: TemplateCache, base: np.ndarray,
                  upsample_factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Shifts ``base + residual``: each frame registered (within 2 px) on the crop that its
    integer shift ``base`` lines up with the same crop of the template."""
    h, w = cache.shape
    shifts = np.empty((len(stack), 2), np.float32)
    peaks = np.empty(len(stack), np.float32)
    for dy, dx in np.unique(base, axis=0):
        rows = np.flatnonzero((base == (dy, dx)).all(axis=1))
        # applying (dy, dx) puts frame pixel y - dy at template pixel y
        ty, tx = slice(max(0, dy), h + min(0, dy)), slice(max(0, dx), w + min(0, dx))
        fy, fx = slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx))
        sub = TemplateCache(template=np.ascontiguousarray(cache.template[ty, tx]), gSig_filt=cache.gSig_filt,
                            clip_quantile=cache.clip_quantile, ceiling=cache.ceiling)
        crop = sub.shape
        res, peaks[rows], _ = _rigid_pass(stack[rows][:, fy, fx], sub, _search_bound(2.0, crop),
                                          taper_width(2.0, min(crop)), upsample_factor)
        shifts[rows] = res + np.array([dy, dx], np.float32)
    return shifts, peaks


def _patch_cache(
    template: np.ndarray | TemplateCache, strides: Sequence[int], overlaps: Sequence[int]
) -> TemplateCache:
    if not isinstance(template, TemplateCache):
        return prepare_template(template, strides=strides, overlaps=overlaps)
    if template.has_patches(strides, overlaps):
        return template
    # Another layout: the cached template is already filtered, so do not filter again.
    fresh = prepare_template(template.template, strides=strides, overlaps=overlaps)
    return dataclasses.replace(fresh, gSig_filt=template.gSig_filt, clip_quantile=template.clip_quantile,
                               ceiling=template.ceiling)


def _patch_bounds(
    rigid: np.ndarray, max_shifts: Sequence[float], max_deviation_rigid: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame allowed patch shifts: within max_deviation_rigid of the rigid shift."""
    if max_deviation_rigid is None:
        m = np.abs(np.asarray(max_shifts, dtype=np.float64))
        return np.broadcast_to(-m, rigid.shape), np.broadcast_to(m, rigid.shape)
    return rigid - float(max_deviation_rigid), rigid + float(max_deviation_rigid)


def _residual_search(
    rigid: np.ndarray, max_shifts: Sequence[float], max_deviation_rigid: float | None, size: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where to read each frame's patches and the residual shifts left to search.

    Each patch is read where the rounded rigid shift puts it, leaving a residual of at
    most ``max_deviation_rigid + 1/2``. The search radius follows the parameters only, so
    a frame's result never depends on the other frames of its block.

    Returns
    -------
    base : (T, 2) int, lo, hi : (T, 2) residual bounds, reach : (2,) search radius
    """
    lo, hi = _patch_bounds(rigid, max_shifts, max_deviation_rigid)
    if max_deviation_rigid is None:
        base = np.zeros(rigid.shape, np.int64)
        radius = np.abs(np.asarray(max_shifts, dtype=np.float64)).max()
    else:
        base = np.rint(rigid).astype(np.int64)
        radius = float(max_deviation_rigid) + 0.5
    reach = _search_bound(radius, size)
    return base, np.maximum(lo - base, -reach), np.minimum(hi - base, reach), reach


def _tapered_patches(stack: np.ndarray, cache: TemplateCache, base: np.ndarray,
                     weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, ny, nx, ph, pw) tapered patches of each frame, read at the patch start minus
    ``base[t]``, and their (T, ny, nx) norms.

    Border patches moved outside the frame get its edge pixels repeated; they fall in the
    taper, where they weigh little.
    """
    pad = int(max(base.max(), -base.min(), 0)) if len(base) else 0
    if pad:
        stack = np.pad(stack, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    rows = cache.ys[None, :] - base[:, :1] + pad  # (T, ny)
    cols = cache.xs[None, :] - base[:, 1:] + pad  # (T, nx)
    return tapered_windows(stack, rows, cols, weights)


def register_piecewise(
    frames: np.ndarray,
    template: np.ndarray | TemplateCache,
    *,
    strides: Sequence[int] = (48, 48),
    overlaps: Sequence[int] = (24, 24),
    max_shifts: Sequence[float] = (6, 6),
    max_deviation_rigid: float | None = 3,
    rigid_shifts: np.ndarray | None = None,
    upsample_factor: int = 10,
) -> np.ndarray:
    """Shift of every patch of every frame relative to the same patch of the template.

    Parameters
    ----------
    frames : ndarray, shape (H, W) or (T, H, W)
    template : ndarray, shape (H, W), or TemplateCache
        Reference image, or its prepared form (``prepare_template(template,
        strides=..., overlaps=...)``, to reuse the template patches' spectra).
    strides, overlaps : (int, int)
        Patch layout (:func:`~calcium_dask.motion.kernels.grid.patch_grid`); patches are
        ``strides + overlaps`` pixels wide.
    max_shifts : (float, float)
        Bound of the rigid shifts (computed when ``rigid_shifts`` is None); also bounds
        the patch shifts when ``max_deviation_rigid`` is None.
    max_deviation_rigid : float or None
        Largest deviation of a patch's shift from its frame's rigid shift; 0 returns the
        rigid shift for every patch.
    rigid_shifts : ndarray, shape (T, 2) or (2,), optional
        Rigid shifts of the frames, if already known.
    upsample_factor : int
        Subpixel resolution of the refinement.

    Returns
    -------
    ndarray, shape (T, ny, nx, 2) or (ny, nx, 2), float32
        (dy, dx) to apply to each patch (same convention as :func:`register_rigid`).

    Notes
    -----
    As in NoRMCorre (Pnevmatikakis & Giovannucci 2017, doi:10.1016/j.jneumeth.2017.07.016)
    the deviation bound restricts the search window of each patch's correlation peak to
    ``[rigid - max_deviation_rigid, rigid + max_deviation_rigid]``, which keeps patches with
    little texture from locking onto a spurious peak; the subpixel result never leaves it.
    Each frame patch is read where its frame's rounded rigid shift puts the template
    patch's content, so only a residual of at most ``max_deviation_rigid + 1/2`` is
    searched, with the tapered correlation of :func:`register_rigid`. All patches of a
    batch of frames go through one batched rfft2; the template patches' spectra come from
    the cache.
    """
    stack, single = as_stack(frames, native=True)
    cache = _patch_cache(template, strides, overlaps)
    _check_shape(stack, cache)
    if rigid_shifts is None:
        rigid_shifts, _ = register_rigid(stack, cache, max_shifts=max_shifts, upsample_factor=upsample_factor)
    rigid = np.asarray(rigid_shifts, dtype=np.float64).reshape(stack.shape[0], 2)
    ny, nx = cache.grid_shape
    if max_deviation_rigid is not None and max_deviation_rigid <= 0:
        out = np.broadcast_to(rigid[:, None, None, :], (len(rigid), ny, nx, 2)).astype(np.float32)
        return out[0] if single else out
    size = cache.patch_shape
    base, lo, hi, reach = _residual_search(rigid, max_shifts, max_deviation_rigid, size)
    width = taper_width(reach.max(), min(size))
    weights, envelope = taper(size, width), _envelope(size, width)
    edge = np.ceil(reach - 1e-9).astype(np.int64)
    window = np.stack([-edge, edge])  # fixed integer search window, shared by all patches
    tspec, tnorm = cache.spectra(True, width)
    tspec = tspec.reshape(ny, nx, size[0], -1)
    out = np.empty((stack.shape[0], ny * nx, 2), dtype=np.float32)
    for sl in _batches(stack.shape[0], ny * nx * size[0] * size[1]):
        nb = sl.stop - sl.start
        centred, norms = _tapered_patches(_clipped(stack[sl], cache.ceiling), cache, base[sl], weights)
        prod = cross_power(tspec, rfft2(centred)).reshape(nb * ny * nx, size[0], -1)
        found, _ = find_peak(
            prod, np.repeat(lo[sl], ny * nx, axis=0), np.repeat(hi[sl], ny * nx, axis=0),
            shape=size, upsample_factor=upsample_factor, envelope=envelope, window=window,
        )
        # a featureless patch (nothing left after its mean) follows its frame's rigid shift
        flat = (norms <= FLAT * tnorm.reshape(ny, nx)).ravel()
        found[flat] = np.repeat(rigid[sl] - base[sl], ny * nx, axis=0)[flat]
        out[sl] = found.reshape(nb, ny * nx, 2) + base[sl, None, :]
    out = out.reshape(stack.shape[0], ny, nx, 2)
    return out[0] if single else out
