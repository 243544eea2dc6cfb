"""Aligning one session's field of view to a reference session's, on their summary images.

An alignment says, for each pixel ``p`` of the reference, where that point of tissue lies
in the session's image: ``q = L @ (p + flow(p)) + t`` with ``(y, x)`` coordinates, ``L`` a
scaled rotation and ``flow`` a smooth non-rigid field in reference pixels (zero when the
alignment is rigid). It is found in three steps:

1. the session's image is resampled to the reference's pixel size (``scale``, from the
   sessions' ``dxy``) about the centres of the two images;
2. rigid: the rotation that maximises the phase correlation's peak over a grid of angles,
   with the translation at that peak, refined by ECC maximisation (Evangelidis & Psarakis
   2008) of a Euclidean transform;
3. non-rigid: dense optical flow (DIS, Kroeger et al. 2016) from the reference to the
   rigidly aligned image, fitted by a smooth cubic-spline surface (robust least squares)
   and bounded, and kept only when it raises the images' correlation.

References
----------
Evangelidis & Psarakis 2008, Parametric image alignment using enhanced correlation
coefficient maximization, IEEE TPAMI 30:1858-1865, doi:10.1109/TPAMI.2008.113.
Kroeger, Timofte, Dai & Van Gool 2016, Fast optical flow using dense inverse search,
ECCV, doi:10.1007/978-3-319-46493-0_29.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from scipy import fft as sfft
from scipy import ndimage
from scipy.interpolate import CubicSpline

__all__ = ["Alignment", "AlignmentError", "registration_image", "align_images", "rigid_alignment",
           "nonrigid_flow", "warp_image", "image_correlation", "map_coordinates_of", "spline_basis"]


class AlignmentError(ValueError):
    """The session's image cannot be aligned to the reference (too little overlap or match)."""


@dataclass(frozen=True)
class Alignment:
    """Where each reference pixel lies in a session's image.

    Attributes
    ----------
    affine : ndarray (2, 3) float64
        ``q = affine[:, :2] @ p' + affine[:, 2]`` with ``p' = p + flow(p)``, all ``(y, x)``:
        reference pixel ``p`` to the session's pixel ``q``.
    flow : ndarray (2, H, W) float32 or None
        Non-rigid displacement ``(y, x)`` in reference pixels (None: rigid).
    corr : float
        Correlation of the reference and the aligned image over their overlap.
    overlap : float
        Fraction of the reference's pixels that lie inside the session's image.
    rigid_corr : float
        The correlation after the rigid alignment alone (the non-rigid field can raise the
        correlation of unrelated images too: this one says whether the fields match).
    """

    affine: np.ndarray
    flow: np.ndarray | None
    corr: float
    overlap: float
    rigid_corr: float

    @property
    def scale(self) -> tuple[float, float]:
        """Session pixels per reference pixel along ``y`` and ``x`` (columns of the affine)."""
        L = self.affine[:, :2]
        return float(np.hypot(*L[:, 0])), float(np.hypot(*L[:, 1]))

    @property
    def rotation_deg(self) -> float:
        """Rotation of the session's image relative to the reference, degrees (positive: the
        session sees the reference turned clockwise on screen, rows growing downwards)."""
        L = self.affine[:, :2] / np.asarray(self.scale)[None, :]
        return float(np.degrees(np.arctan2(L[0, 1], L[0, 0])))

    def coordinates(self, shape: Sequence[int]) -> np.ndarray:
        """``(2, H, W)`` float32: the session's ``(y, x)`` position of every reference pixel."""
        return map_coordinates_of(self.affine, self.flow, shape)


def map_coordinates_of(affine: np.ndarray, flow: np.ndarray | None, shape: Sequence[int]) -> np.ndarray:
    """The ``(2, H, W)`` map ``q(p) = L (p + flow(p)) + t`` (see :class:`Alignment`)."""
    H, W = int(shape[0]), int(shape[1])
    p = np.mgrid[0:H, 0:W].astype(np.float64)
    if flow is not None:
        p += flow
    q = np.einsum("ij,jhw->ihw", np.asarray(affine[:, :2], np.float64), p) + affine[:, 2, None, None]
    return q.astype(np.float32)


# -- images ---------------------------------------------------------------------------------
def _standardised(img: np.ndarray, highpass_sigma: float) -> np.ndarray:
    img = np.nan_to_num(np.asarray(img, np.float32))
    if highpass_sigma > 0:
        img = img - ndimage.gaussian_filter(img, highpass_sigma, mode="nearest")
    med = float(np.median(img))
    mad = float(np.median(np.abs(img - med))) * 1.4826
    scale = mad if mad > 0 else float(img.std()) or 1.0
    return np.clip((img - med) / scale, -4.0, 10.0).astype(np.float32)


def registration_image(mean: np.ndarray | None, correlation: np.ndarray | None = None, *,
                       use: Literal["mean", "correlation", "both"] = "both",
                       highpass_sigma: float = 10.0) -> np.ndarray:
    """The image a session is aligned on: its summary images, high-passed and standardised.

    Parameters
    ----------
    mean, correlation : ndarray (H, W) or None
        The session's mean and local-correlation images.
    use : {'mean', 'correlation', 'both'}
        Which image(s); ``both`` sums the two standardised images (the mean image shows
        every cell and the vessels, the correlation image the active cells sharply).
        A missing image is left out.
    highpass_sigma : float
        Gaussian SD of the background subtracted first, pixels (0: none).

    Returns
    -------
    ndarray (H, W) float32
        Robustly standardised (median 0, MAD-scaled), clipped to [-4, 10].
    """
    wanted = {"mean": (mean,), "correlation": (correlation,), "both": (mean, correlation)}[use]
    parts = [_standardised(im, highpass_sigma) for im in wanted if im is not None]
    if not parts:
        raise ValueError(f"no {use} summary image to align on")
    return np.sum(parts, axis=0, dtype=np.float32) if len(parts) > 1 else parts[0]


def _cv_matrix(affine: np.ndarray) -> np.ndarray:
    """A ``(y, x)`` affine as OpenCV's ``(x, y)`` 2x3 matrix (the same swap converts back)."""
    a = np.asarray(affine, np.float64)
    return np.array([[a[1, 1], a[1, 0], a[1, 2]], [a[0, 1], a[0, 0], a[0, 2]]])


def warp_image(image: np.ndarray, affine: np.ndarray, flow: np.ndarray | None, shape: Sequence[int],
               *, fill: float = np.nan) -> np.ndarray:
    """The session's ``image`` resampled on the reference grid (``shape``), bilinearly.

    Reference pixels that fall outside the session's image get ``fill``.
    """
    img = np.asarray(image, np.float32)
    H, W = int(shape[0]), int(shape[1])
    if flow is None:
        out = cv2.warpAffine(img, _cv_matrix(affine), (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
    else:
        q = map_coordinates_of(affine, flow, shape)
        out = cv2.remap(img, q[1], q[0], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
    if not np.isnan(fill):
        out[np.isnan(out)] = fill
    return out


def image_correlation(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Pearson correlation of two images over the pixels where both are finite, and that
    overlap as a fraction of the pixels."""
    ok = np.isfinite(a) & np.isfinite(b)
    frac = float(ok.mean())
    if ok.sum() < 16:
        return float("nan"), frac
    x, y = a[ok].astype(np.float64), b[ok].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return (float((x * y).sum() / den) if den > 0 else float("nan")), frac


# -- rigid ---------------------------------------------------------------------------------
def _centre(shape: Sequence[int]) -> np.ndarray:
    return (np.asarray(shape[:2], np.float64) - 1.0) / 2.0


def _about_centre(L: np.ndarray, shift: np.ndarray, c_ref: np.ndarray, c_mov: np.ndarray) -> np.ndarray:
    """The affine ``q = c_mov + L (p - c_ref) + shift``."""
    return np.column_stack([L, c_mov + shift - L @ c_ref])


def _rotation(theta: float) -> np.ndarray:
    """The ``(y, x)`` rotation matrix of :attr:`Alignment.rotation_deg` ``theta`` (radians)."""
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, s], [-s, c]])


def _cross_correlation(ref: np.ndarray, mov: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, float]:
    """Integer ``d`` maximising ``sum_p ref(p) mov(p + d)`` (tapered, zero-padded: no wrap
    around), and that maximum over the images' norms.

    Plain rather than phase correlation: whitening the spectrum lifts the frequencies where
    smooth summary images hold only noise and interpolation error, and the peak is lost."""
    a, b = ref * window, mov * window
    a = a - window * (a.sum() / window.sum())
    b = b - window * (b.sum() / window.sum())
    shape = (2 * a.shape[0], 2 * a.shape[1])
    xc = sfft.irfft2(np.conj(sfft.rfft2(a, shape, workers=1)) * sfft.rfft2(b, shape, workers=1), shape, workers=1)
    i, j = np.unravel_index(int(np.argmax(xc)), shape)
    d = np.array([i if i < shape[0] // 2 else i - shape[0], j if j < shape[1] // 2 else j - shape[1]], np.float64)
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return d, float(xc[i, j] / norm) if norm > 0 else 0.0


def _coarse_rigid(ref: np.ndarray, mov: np.ndarray, angles: np.ndarray) -> tuple[float, np.ndarray, float]:
    """Best angle on the grid: rotate, cross-correlate, keep the highest peak."""
    window = cv2.createHanningWindow(ref.shape[::-1], cv2.CV_32F) ** 0.5
    c = _centre(ref.shape)
    best = (-np.inf, 0.0, np.zeros(2))
    for theta in angles:
        A = _about_centre(_rotation(theta), np.zeros(2), c, c)
        d, peak = _cross_correlation(ref, warp_image(mov, A, None, ref.shape, fill=0.0), window)
        if peak > best[0]:
            best = (peak, float(theta), d)
    peak, theta, d = best
    # rotated(p + d) = ref(p) and rotated(p) = mov(R (p - c) + c): mov(R (p + d - c) + c)
    return theta, _rotation(theta) @ d, peak


def _ecc(ref: np.ndarray, mov: np.ndarray, affine: np.ndarray, iterations: int) -> np.ndarray | None:
    """ECC refinement of a Euclidean (y, x) affine, or None when it does not converge."""
    warp = _cv_matrix(affine).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-6)
    try:
        _, warp = cv2.findTransformECC(ref, mov, warp, cv2.MOTION_EUCLIDEAN, criteria, None, 5)
    except cv2.error:
        return None
    return _cv_matrix(warp.astype(np.float64))


def rigid_alignment(reference: np.ndarray, moving: np.ndarray, *, max_rotation: float = 10.0,
                    rotation_step: float = 1.0, ecc_iterations: int = 200) -> np.ndarray:
    """Rotation and translation that align ``moving`` to ``reference`` (same shape).

    Parameters
    ----------
    reference, moving : ndarray (H, W)
        Registration images (:func:`registration_image`), NaN where undefined.
    max_rotation : float
        Largest rotation searched, degrees (0: translation only).
    rotation_step : float
        Spacing of the angles tried before the ECC refinement, degrees.
    ecc_iterations : int
        Largest number of ECC iterations.

    Returns
    -------
    ndarray (2, 3)
        The ``(y, x)`` affine from reference pixels to ``moving``'s (see :class:`Alignment`).
    """
    ref = np.nan_to_num(np.asarray(reference, np.float32))
    mov = np.nan_to_num(np.asarray(moving, np.float32))
    n = int(np.ceil(max_rotation / rotation_step)) if max_rotation > 0 else 0
    angles = np.radians(np.linspace(-n * rotation_step, n * rotation_step, 2 * n + 1))
    theta, shift, _ = _coarse_rigid(ref, mov, angles)
    c = _centre(ref.shape)
    coarse = _about_centre(_rotation(theta), shift, c, c)
    smooth = (ndimage.gaussian_filter(ref, 1.0), ndimage.gaussian_filter(mov, 1.0))
    fine = _ecc(*smooth, coarse, ecc_iterations)
    if fine is None or np.degrees(abs(np.arctan2(fine[1, 0], fine[0, 0]))) > max_rotation + rotation_step:
        return coarse
    return fine


# -- non-rigid -----------------------------------------------------------------------------
def _to_uint8(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((np.nan_to_num(a, nan=lo) - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)


def spline_basis(n: int, spacing: float) -> np.ndarray:
    """Natural cubic-spline interpolation from evenly spaced nodes (about ``spacing`` pixels
    apart, at least 2, the first and last on the edge pixels) to ``n`` pixels: (n, nodes)."""
    nodes = max(2, int(np.ceil((n - 1) / max(spacing, 1.0))) + 1)
    return CubicSpline(np.linspace(0.0, n - 1.0, nodes), np.eye(nodes), bc_type="natural")(np.arange(n, dtype=float))


def _dense_flow(reference: np.ndarray, aligned: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """DIS optical flow ``(H, W, 2)`` as ``(x, y)``: ``reference(p) ~ aligned(p + f(p))``."""
    both = np.concatenate([reference[valid], aligned[valid]])
    lo, hi = (np.percentile(both, [1, 99.5]) if both.size else (0.0, 1.0))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(_to_uint8(reference, lo, hi), _to_uint8(aligned, lo, hi), None)


def _robust_fit(design: np.ndarray, target: np.ndarray, weight: np.ndarray, iterations: int = 4) -> np.ndarray:
    """Weighted least squares, re-weighted by Tukey's biweight of the residuals."""
    w = weight.copy()
    coef = np.zeros(design.shape[1])
    for _ in range(iterations):
        # normal equations: the design has few columns (spline nodes) and many rows
        gram = design.T @ (design * w[:, None])
        ridge = 1e-9 * max(float(np.trace(gram)), 1e-12) / len(gram)
        coef = np.linalg.solve(gram + ridge * np.eye(len(gram)), design.T @ (w * target))
        res = target - design @ coef
        scale = 1.4826 * float(np.median(np.abs(res[w > 0]))) + 1e-6 if np.any(w > 0) else 1.0
        w = weight * np.clip(1 - (res / (4.685 * scale)) ** 2, 0, None) ** 2
    return coef


def nonrigid_flow(reference: np.ndarray, aligned: np.ndarray, *, spacing: float = 48.0,
                  max_deformation: float = 6.0) -> np.ndarray:
    """Smooth displacement ``f`` with ``reference(p) ~ aligned(p + f(p))``.

    Dense optical flow (DIS) follows every local difference between two days' images (a
    cell active on one day only, a change of brightness); tissue deforms smoothly. The
    flow is therefore fitted by a cubic spline surface with nodes ``spacing`` pixels
    apart, by robust (Tukey biweight) least squares weighted by the reference's local
    structure (its smoothed squared gradient), so flat or disagreeing regions count little.

    Parameters
    ----------
    reference, aligned : ndarray (H, W)
        Registration images, ``aligned`` already rigidly aligned (NaN outside its field).
    spacing : float
        Distance between the spline's nodes, pixels: the smallest scale of deformation.
    max_deformation : float
        Longer displacements are shortened to this, pixels.

    Returns
    -------
    ndarray (2, H, W) float32
        ``(y, x)`` displacement in reference pixels.
    """
    valid = np.isfinite(aligned) & np.isfinite(reference)
    f = _dense_flow(reference, aligned, valid)
    H, W = reference.shape
    gy, gx = np.gradient(ndimage.gaussian_filter(np.nan_to_num(reference), 1.0))
    weight = ndimage.binary_erosion(valid, iterations=3) * ndimage.gaussian_filter(gy * gy + gx * gx, 3.0)
    step = max(1, int(min(H, W) // 128))  # about 128 x 128 samples fit the surface
    By, Bx = spline_basis(H, spacing), spline_basis(W, spacing)
    design = np.einsum("yi,xj->yxij", By[::step], Bx[::step]).reshape(-1, By.shape[1] * Bx.shape[1])
    w = weight[::step, ::step].ravel()
    out = np.empty((2, H, W), np.float32)
    for axis, comp in ((0, 1), (1, 0)):
        coef = _robust_fit(design, f[::step, ::step, comp].ravel().astype(np.float64), w)
        out[axis] = By @ coef.reshape(By.shape[1], Bx.shape[1]) @ Bx.T
    length = np.hypot(out[0], out[1])
    too_long = length > max_deformation
    out[:, too_long] *= max_deformation / length[too_long]
    return out


# -- both ------------------------------------------------------------------------------------
def _rescaled(shape_ref: Sequence[int], shape_mov: Sequence[int], scale: Sequence[float]) -> np.ndarray:
    """The affine of step 1: the two images' centres together, ``scale`` session pixels per
    reference pixel."""
    return _about_centre(np.diag(np.asarray(scale, np.float64)), np.zeros(2), _centre(shape_ref),
                         _centre(shape_mov))


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``outer(inner(p))`` for two (y, x) affines."""
    L = outer[:, :2] @ inner[:, :2]
    return np.column_stack([L, outer[:, :2] @ inner[:, 2] + outer[:, 2]])


def align_images(reference: np.ndarray, moving: np.ndarray, *, scale: Sequence[float] = (1.0, 1.0),
                 max_rotation: float = 10.0, nonrigid: bool = True, spacing: float = 48.0,
                 max_deformation: float = 6.0, min_overlap: float = 0.3,
                 min_corr: float = 0.55) -> Alignment:
    """Align a session's registration image to the reference's (see the module docstring).

    Parameters
    ----------
    reference : ndarray (H, W)
    moving : ndarray (Hm, Wm)
        Registration images (:func:`registration_image`).
    scale : (float, float)
        Session pixels per reference pixel (``dxy_reference / dxy_session``).
    max_rotation : float
        Largest rotation searched, degrees.
    nonrigid : bool
        Add the smooth non-rigid field.
    spacing, max_deformation : float
        See :func:`nonrigid_flow`.
    min_overlap, min_corr : float
        The alignment fails when the rigidly aligned images overlap on less than
        ``min_overlap`` of the reference or correlate less than ``min_corr`` there.

    Returns
    -------
    Alignment

    Raises
    ------
    AlignmentError
        Too little overlap or correlation (the message says which).
    """
    ref = np.asarray(reference, np.float32)
    first = _rescaled(ref.shape, np.shape(moving), scale)
    resampled = warp_image(moving, first, None, ref.shape)
    rigid = _compose(first, rigid_alignment(ref, resampled, max_rotation=max_rotation))
    aligned = warp_image(moving, rigid, None, ref.shape)
    corr, overlap = image_correlation(ref, aligned)
    if not overlap >= min_overlap:
        raise AlignmentError(f"aligned, it covers {100 * overlap:.0f}% of the reference's field "
                             f"(min_overlap {100 * min_overlap:.0f}%)")
    if not corr >= min_corr:
        raise AlignmentError(f"its summary image does not match the reference's (correlation {corr:.2f} "
                             f"after rigid alignment, min_align_corr {min_corr:g})")
    result = Alignment(rigid, None, corr, overlap, corr)
    if nonrigid:
        flow = nonrigid_flow(ref, aligned, spacing=spacing, max_deformation=max_deformation)
        corr_nr, overlap_nr = image_correlation(ref, warp_image(moving, rigid, flow, ref.shape))
        if corr_nr > corr:
            result = Alignment(rigid, flow, corr_nr, overlap_nr, corr)
    return result
