"""Template spectra, prepared once per template and reused for every frame."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ._spectral import rfft2, taper, tapered
from .filters import high_pass_filter
from .grid import extract_patches, patch_grid, patch_size

__all__ = ["TemplateCache", "prepare_template"]


@dataclass(frozen=True, eq=False)
class TemplateCache:
    """A template, ready for registration, with its spectra computed once.

    Build it with :func:`prepare_template`. The spectra depend on the taper each call
    uses (which follows ``max_shifts``), so they are computed on first use and kept in a
    private memo; pickling the cache (e.g. to dask workers) carries them along.

    Attributes
    ----------
    template : ndarray, shape (H, W), float32
        The template in registration space (high-pass filtered when ``gSig_filt`` is set).
    gSig_filt : tuple of float or None
        High-pass filter width the template was filtered with.
    strides, overlaps : tuple of int or None
        Patch layout (None when the cache serves rigid registration only).
    ys, xs : ndarray or None
        Patch starts (:func:`~calcium_dask.motion.kernels.grid.patch_grid`).
    clip_quantile, ceiling : float or None
        The template was clipped at ``ceiling``, its ``clip_quantile`` quantile, and frames
        are clipped there too before they are registered (None: raw intensities).
    """

    template: np.ndarray
    gSig_filt: tuple[float, float] | None = None
    strides: tuple[int, int] | None = None
    overlaps: tuple[int, int] | None = None
    ys: np.ndarray | None = None
    xs: np.ndarray | None = None
    clip_quantile: float | None = None
    ceiling: float | None = None
    _memo: dict = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """Frame shape (H, W)."""
        return self.template.shape  # type: ignore[return-value]

    @property
    def patch_shape(self) -> tuple[int, int]:
        """Patch size (ph, pw); requires a patch layout."""
        self._need_patches()
        return patch_size(self.shape, strides=self.strides, overlaps=self.overlaps)  # type: ignore[arg-type]

    @property
    def grid_shape(self) -> tuple[int, int]:
        """Number of patches (ny, nx); requires a patch layout."""
        self._need_patches()
        return len(self.ys), len(self.xs)  # type: ignore[arg-type]

    def has_patches(self, strides: Sequence[int], overlaps: Sequence[int]) -> bool:
        """True when the cache was prepared for this patch layout."""
        return self.strides == tuple(int(s) for s in strides) and self.overlaps == tuple(int(o) for o in overlaps)

    def _need_patches(self) -> None:
        if self.strides is None:
            raise ValueError("this TemplateCache has no patch layout; pass strides and overlaps to prepare_template")

    def images(self, patches: bool) -> np.ndarray:
        """The template (1, H, W), or its patches (ny*nx, ph, pw), float32."""
        if not patches:
            return self.template[None]
        size = self.patch_shape
        return extract_patches(self.template[None], self.ys, self.xs, size).reshape(-1, *size)

    def spectra(self, patches: bool, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Conjugated rfft2 of the tapered, centred template (patches) and their norms.

        Returns
        -------
        spectra : ndarray, shape (P, h, w//2+1), complex64
        norms : ndarray, shape (P,), float64
        """
        key = ("spectra", patches, int(width))
        if key not in self._memo:
            imgs = self.images(patches)
            centred, norms = tapered(imgs, taper(imgs.shape[-2:], width), norm=True)
            self._memo[key] = (np.conjugate(rfft2(centred)), norms)
        return self._memo[key]


    def lobe_radius(self, width: int, level: float = 0.2) -> int:
        """Half-width, pixels, of the main lobe of the template's autocorrelation (taper
        ``width``): the Chebyshev distance at which its largest value falls below ``level``
        times its value at 0, or stops falling. A correlation peak spreads this far even
        without noise; what lies beyond competes with it only by chance."""
        key = ("lobe", int(width), float(level))
        if key not in self._memo:
            spec, _ = self.spectra(False, width)
            acf = np.fft.fftshift(np.fft.irfft2(np.abs(spec[0]) ** 2, s=self.shape))
            acf /= max(float(acf.max()), np.finfo(np.float64).tiny)
            cy, cx = self.shape[0] // 2, self.shape[1] // 2
            yy, xx = np.indices(self.shape)
            ring = np.maximum(np.abs(yy - cy), np.abs(xx - cx)).ravel()
            profile = np.full(ring.max() + 1, -np.inf)
            np.maximum.at(profile, ring, acf.ravel())
            r = 1
            while r + 1 < len(profile) and profile[r] >= level and profile[r + 1] < profile[r]:
                r += 1
            self._memo[key] = r
        return self._memo[key]


def _pair_or_none(value: float | Sequence[float] | None) -> tuple[float, float] | None:
    if value is None:
        return None
    if np.ndim(value) == 0:
        return float(value), float(value)  # type: ignore[arg-type]
    vy, vx = value  # type: ignore[misc]
    return float(vy), float(vx)


def prepare_template(
    template: np.ndarray,
    *,
    strides: Sequence[int] | None = None,
    overlaps: Sequence[int] | None = None,
    gSig_filt: float | Sequence[float] | None = None,
    clip_quantile: float | None = None,
) -> TemplateCache:
    """Prepare a template for registration (filtering, patch layout, spectra on first use).

    Parameters
    ----------
    template : ndarray, shape (H, W)
        Template in the same space as the raw frames (any real dtype, finite).
    strides, overlaps : (int, int), optional
        Patch layout for piecewise-rigid registration.
    gSig_filt : float or (float, float), optional
        When set the template is high-pass filtered (frames must then be registered after
        the same filtering, as :func:`correct_frames` does).
    clip_quantile : float, optional
        Clip the (filtered) template at this quantile of its pixels; frames registered to
        the cache are clipped at the same value. The brightest pixels are mostly cells,
        whose activity differs between a frame and the template: clipped, a bright
        transient (above all in the edge taper) no longer pulls the shift towards itself.

    Returns
    -------
    TemplateCache
    """
    tmpl = np.ascontiguousarray(template, dtype=np.float32)
    if tmpl.ndim != 2:
        raise ValueError(f"template must be 2-D (H, W), got shape {tmpl.shape}")
    if not np.all(np.isfinite(tmpl)):
        raise ValueError("template contains NaN or inf; fill them before registering")
    filt = _pair_or_none(gSig_filt)
    if filt is not None:
        tmpl = high_pass_filter(tmpl, filt)
    clip = {"clip_quantile": None, "ceiling": None}
    if clip_quantile is not None:
        ceiling = float(np.quantile(tmpl, clip_quantile))
        tmpl = np.minimum(tmpl, np.float32(ceiling))
        clip = {"clip_quantile": float(clip_quantile), "ceiling": ceiling}
    if strides is None or overlaps is None:
        return TemplateCache(template=tmpl, gSig_filt=filt, **clip)
    strides_t = (int(strides[0]), int(strides[1]))
    overlaps_t = (int(overlaps[0]), int(overlaps[1]))
    ys, xs = patch_grid(tmpl.shape, strides=strides_t, overlaps=overlaps_t)
    return TemplateCache(template=tmpl, gSig_filt=filt, strides=strides_t, overlaps=overlaps_t, ys=ys, xs=xs,
                         **clip)
