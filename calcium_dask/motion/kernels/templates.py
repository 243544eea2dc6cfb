"""Templates: an initial estimate from raw frames, and refinement by registration."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from ._spectral import as_stack
from .filters import high_pass_filter
from .frames import correct_frames

__all__ = ["alike_template", "corrected_sums", "group_means", "make_template", "mean_from_sums",
           "merge_templates", "refine_template"]


def _quiet(func, *args, **kwargs) -> np.ndarray:
    # All-NaN pixels (never covered with border_nan=True) are expected; _fill_nan fills them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return func(*args, **kwargs)


def _nanmean(stack: np.ndarray, axis: int) -> np.ndarray:
    # np.nanmean copies the whole stack to replace NaNs; most stacks have none
    if np.isnan(stack).any():
        return _quiet(np.nanmean, stack, axis=axis)
    return stack.mean(axis=axis)


def _nanmedian(stack: np.ndarray, axis: int) -> np.ndarray:
    # np.nanmedian of a few images goes through masked arrays (3x slower than np.median)
    if np.isnan(stack).any():
        return _quiet(np.nanmedian, stack, axis=axis)
    return np.median(stack, axis=axis)


def _fill_nan(img: np.ndarray) -> np.ndarray:
    # Pixels never covered by any frame (NaN borders) get the template's minimum.
    if np.isnan(img).any():
        img = np.where(np.isnan(img), np.nanmin(img) if np.isfinite(img).any() else 0.0, img)
    return img.astype(np.float32, copy=False)


def make_template(
    frames: np.ndarray,
    *,
    method: Literal["median_of_means", "mean", "median"] = "median_of_means",
    n_groups: int | None = None,
    group_size: int = 10,
) -> np.ndarray:
    """Template from a stack of frames, robust to outlier frames.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W)
        NaNs (e.g. from ``border_nan=True``) are ignored.
    method : {'median_of_means', 'mean', 'median'}
        ``'median_of_means'``: the pixel-wise median of the means of consecutive groups of
        frames (CaImAn's ``bin_median``); averaging first removes shot noise, the median
        then discards groups spoiled by motion or transients.
    n_groups : int, optional
        Number of groups; by default ``T // group_size`` (at least 1).
    group_size : int
        Frames per group when ``n_groups`` is not given (CaImAn uses 10).

    Returns
    -------
    ndarray, shape (H, W), float32

    Notes
    -----
    Giovannucci et al. 2019, doi:10.7554/eLife.38173. Frames left over after the last
    full group are not used by ``'median_of_means'``.
    """
    stack, _ = as_stack(frames)
    t = len(stack)
    if method == "mean":
        return _fill_nan(_nanmean(stack, axis=0))
    if method == "median":
        return _fill_nan(_nanmedian(stack, axis=0))
    if method != "median_of_means":
        raise ValueError(f"method must be 'median_of_means', 'mean' or 'median', got {method!r}")
    groups = n_groups if n_groups is not None else max(1, t // max(1, int(group_size)))
    groups = int(min(max(1, groups), t))
    size = t // groups
    return merge_templates(group_means(stack[: groups * size], size))


def group_means(frames: np.ndarray, group_size: int = 10, *, partial: bool = True) -> np.ndarray:
    """NaN-aware means of consecutive groups of ``group_size`` frames, ``(G, H, W)`` float32.

    Frames after the last full group are left out; ``partial=True`` makes one group of
    all the frames when there are fewer than ``group_size``, ``False`` returns no group
    (a later part of a longer stack, split as :func:`make_template` would group it).
    """
    stack, _ = as_stack(frames, native=True)
    size = max(1, int(group_size))
    groups = len(stack) // size
    if groups == 0:
        if not (partial and len(stack)):
            return np.zeros((0, *stack.shape[1:]), np.float32)
        groups, size = 1, len(stack)
    grouped = stack[: groups * size].reshape(groups, size, *stack.shape[1:])
    if stack.dtype.kind != "f":  # integers: no NaN, and no float32 copy of the frames
        return grouped.mean(axis=1, dtype=np.float32)
    return _nanmean(grouped, axis=1)


def corrected_sums(frames: np.ndarray, template: np.ndarray, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-wise sum (float64) and count of the finite values of the frames registered to
    ``template`` (:func:`correct_frames` ``**options``); :func:`mean_from_sums` of the
    sums of all parts of a stack is :func:`refine_template` of the stack."""
    corrected = correct_frames(frames, template, **{**options, "min_mov": None})["corrected"]
    finite = np.isfinite(corrected)
    return np.where(finite, corrected, 0).sum(axis=0, dtype=np.float64), finite.sum(axis=0)


def mean_from_sums(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The template (mean, uncovered pixels filled) from the :func:`corrected_sums` of parts."""
    total = np.sum([p[0] for p in parts], axis=0)
    count = np.sum([p[1] for p in parts], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _fill_nan(np.where(count > 0, total / np.maximum(count, 1), np.nan))


def refine_template(
    frames: np.ndarray,
    template: np.ndarray,
    *,
    method: Literal["mean", "median", "median_of_means"] = "mean",
    **options: Any,
) -> np.ndarray:
    """Register frames to a template and average the corrected frames into a new template.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W)
    template : ndarray, shape (H, W), or TemplateCache
    method : {'mean', 'median', 'median_of_means'}
        How the corrected frames are combined (NaN-aware); CaImAn takes the mean of each
        block and the median across blocks (:func:`merge_templates`).
    **options
        Passed to :func:`correct_frames` (``pw_rigid``, ``max_shifts``, ``strides``, ...).
        ``min_mov`` is ignored so that the template stays in the frames' units.

    Returns
    -------
    ndarray, shape (H, W), float32
        NaN pixels (never covered, with ``border_nan=True``) take the template's minimum.
    """
    options = {**options, "min_mov": None}
    corrected = correct_frames(frames, template, **options)["corrected"]
    return make_template(corrected, method=method)


def merge_templates(
    templates: Sequence[np.ndarray] | np.ndarray, *, method: Literal["median", "mean"] = "median"
) -> np.ndarray:
    """Combine per-block templates into one (NaN-aware median, as CaImAn does, or mean).

    Parameters
    ----------
    templates : sequence of ndarray (H, W), or ndarray (B, H, W)
    method : {'median', 'mean'}

    Returns
    -------
    ndarray, shape (H, W), float32
    """
    stack = np.asarray(templates, dtype=np.float32)
    if stack.ndim == 2:
        stack = stack[None]
    if method == "median":
        return _fill_nan(_nanmedian(stack, axis=0))
    if method == "mean":
        return _fill_nan(_nanmean(stack, axis=0))
    raise ValueError(f"method must be 'median' or 'mean', got {method!r}")


def alike_template(means: np.ndarray, gSig_filt: float | Sequence[float] | None = None, *,
                   share: float = 0.25, min_groups: int = 3) -> np.ndarray:
    """A first template from the groups of frames most alike: sharp where the median of all
    groups is smeared by the motion between them.

    Parameters
    ----------
    means : ndarray (G, H, W)
        Means of groups of consecutive frames (:func:`group_means`).
    gSig_filt : float or (float, float), optional
        Groups are compared after this high-pass filter (what registration will see).
    share : float
        Fraction of the groups averaged (at least ``min_groups``).

    Returns
    -------
    ndarray (H, W) float32
        The mean of the group most correlated with its ``k`` best matches and of those
        ``k`` groups, in the frames' (unfiltered) units.

    Notes
    -----
    suite2p's initial reference (Pachitariu et al. 2017, doi:10.1101/061507): the frames
    most correlated with each other are nearly at the same place, so their mean keeps the
    detail that registration needs, which matters when each frame holds little of it.
    """
    stack = np.asarray(means, dtype=np.float32)
    G = len(stack)
    k = int(min(G, max(min_groups, round(share * G))))
    if G <= 2 or k >= G:
        return merge_templates(stack, method="mean")
    view = stack if gSig_filt is None else high_pass_filter(stack, gSig_filt)
    flat = view.reshape(G, -1).astype(np.float64)
    flat -= flat.mean(1, keepdims=True)
    flat /= np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
    corr = flat @ flat.T
    best = np.sort(corr, axis=1)[:, -k:].mean(1)  # each group's k best matches (itself included)
    seed = int(np.argmax(best))
    members = np.argsort(corr[seed])[-k:]
    return merge_templates(stack[members], method="mean")
