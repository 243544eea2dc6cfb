"""Warping: shifts move content by the shift, round trips, borders, smooth shift fields."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from calcium_dask.motion.kernels import (
    apply_field,
    apply_shift,
    field_weights,
    mean_shift,
    patch_centers,
    patch_grid,
    shift_field,
    warp_piecewise,
)

from .motion_synth import PAD, fourier_shift, smooth_image

IMG = smooth_image((64, 80), sigma=3.0, blob_sigma=3.0, seed=2)[PAD:-PAD, PAD:-PAD].astype(np.float32)
ODD = {"strides": (24, 24), "overlaps": (11, 11)}  # odd patches: centres on whole pixels


@pytest.mark.parametrize("method", ["opencv", "fft"])
def test_shift_moves_content_by_the_shift(method):
    frame = np.zeros((32, 40), np.float32)
    frame[10, 12] = 1.0
    out = apply_shift(frame, (3, -4), method=method, border_nan=False)
    assert np.unravel_index(np.argmax(out), out.shape) == (13, 8)
    assert out[13, 8] == pytest.approx(1.0, abs=1e-5)


def test_integer_shift_is_an_exact_translation_with_copied_borders():
    out = apply_shift(IMG, (2, -3), interpolation="cubic")
    assert_allclose(out[2:, :-3], IMG[:-2, 3:], atol=1e-4)
    assert_allclose(out[:2, :-3], np.broadcast_to(IMG[0, 3:], (2, IMG.shape[1] - 3)), atol=1e-4)
    assert_allclose(out[2:, -3:], np.broadcast_to(IMG[:-2, -1:], (IMG.shape[0] - 2, 3)), atol=1e-4)


def _rel_rms(a: np.ndarray, b: np.ndarray, margin: int = 4) -> float:
    d = (a - b)[margin:-margin, margin:-margin]
    return float(np.sqrt(np.mean(d**2)) / b.std())


@pytest.mark.parametrize("interpolation, tol", [("linear", 0.05), ("cubic", 0.025)])
def test_subpixel_round_trip_recovers_the_interior(interpolation, tol):
    moved = apply_shift(IMG, (1.37, -2.61), interpolation=interpolation)
    back = apply_shift(moved, (-1.37, 2.61), interpolation=interpolation)
    assert _rel_rms(moved, IMG) > 0.3  # the shift itself is a large change
    assert _rel_rms(back, IMG) < tol


def test_fft_shift_is_exact_for_periodic_images():
    periodic = fourier_shift(IMG.astype(np.float64), (0, 0)).astype(np.float32)
    moved = apply_shift(periodic, (2.3, -1.8), method="fft", border_nan="copy")
    expected = fourier_shift(periodic.astype(np.float64), (2.3, -1.8))
    assert_allclose(moved[3:, :-2], expected[3:, :-2], atol=1e-3)


@pytest.mark.parametrize("method", ["opencv", "fft"])
def test_border_nan_semantics(method):
    shift = (2.4, -1.5)  # rows 0..2 and the last 2 columns came from outside
    nan = apply_shift(IMG, shift, border_nan=True, method=method)
    bad = np.zeros(IMG.shape, bool)
    bad[:3] = True
    bad[:, -2:] = True
    assert_array_equal(np.isnan(nan), bad)
    zero = apply_shift(IMG, shift, border_nan=False, method=method)
    assert np.all(zero[bad] == 0) and np.all(np.isfinite(zero))
    low = apply_shift(IMG, shift, border_nan="min", method=method)
    assert_allclose(low[bad], np.nanmin(nan), atol=0.5)
    copy = apply_shift(IMG, shift, border_nan="copy", method=method)
    assert_allclose(copy[~bad], nan[~bad], atol=1e-4)
    assert_allclose(copy[:3, 0], copy[3, 0], atol=0.5)  # edge value replicated


def test_shift_stack_one_frame_and_dtypes():
    stack = np.stack([IMG, IMG * 2])
    out = apply_shift(stack, [[1.5, 0.5], [-0.5, 2.0]])
    assert out.shape == stack.shape and out.dtype == np.float32
    assert_allclose(out[1], apply_shift(IMG * 2, (-0.5, 2.0)), atol=1e-4)
    as_int = apply_shift(np.round(IMG).astype(np.uint16), (1, 1))
    assert as_int.dtype == np.float32
    with pytest.raises(ValueError, match="border_nan"):
        apply_shift(IMG, (1, 1), border_nan="zero")


def test_constant_field_equals_rigid_shift():
    field = np.broadcast_to(np.array([1.3, -0.7], np.float32), IMG.shape + (2,))
    for border in ("copy", True):
        a = apply_field(IMG, field, border_nan=border)
        b = apply_shift(IMG, (1.3, -0.7), border_nan=border)
        assert_array_equal(np.isnan(a), np.isnan(b))
        assert_allclose(a[~np.isnan(a)], b[~np.isnan(b)], atol=1e-3)


def test_field_border_marks_pixels_sourced_outside():
    field = np.zeros(IMG.shape + (2,), np.float32)
    field[:, :40, 1] = 3.0  # left half moves right by 3 px: its first 3 columns are new
    out = apply_field(IMG, field, border_nan=True)
    assert np.isnan(out[:, :3]).all() and not np.isnan(out[:, 3:]).any()


def test_shift_field_passes_through_patch_values_and_extends_edges():
    shape = (90, 101)
    ys, xs = patch_grid(shape, **ODD)
    rng = np.random.default_rng(1)
    ps = rng.normal(size=(len(ys), len(xs), 2)).astype(np.float32)
    cy, cx = patch_centers(shape, **ODD)
    iy, ix = cy.astype(int), cx.astype(int)
    for ufg in (1, 4):
        field = shift_field(ps, shape, upsample_factor_grid=ufg, **ODD)
        assert field.shape == shape + (2,)
        assert_allclose(field[np.ix_(iy, ix)], ps, atol=1e-5)
        # beyond the outermost centres the field is constant
        assert_allclose(field[: iy[0], ix[0]], np.broadcast_to(ps[0, 0], (iy[0], 2)), atol=1e-5)
        assert_allclose(field[iy[-1]:, -1], np.broadcast_to(field[iy[-1], -1], (shape[0] - iy[-1], 2)), atol=1e-5)


def test_shift_field_reproduces_a_linear_ramp():
    shape = (90, 101)
    cy, cx = patch_centers(shape, **ODD)
    ps = np.stack(np.broadcast_arrays(0.02 * cy[:, None], -0.01 * cx[None, :]), axis=-1)
    field = shift_field(ps, shape, upsample_factor_grid=1, **ODD)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    inside = (slice(int(cy[0]), int(cy[-1]) + 1), slice(int(cx[0]), int(cx[-1]) + 1))
    assert_allclose(field[inside][..., 0], 0.02 * yy[inside], atol=1e-5)
    assert_allclose(field[inside][..., 1], -0.01 * xx[inside], atol=1e-5)


@pytest.mark.parametrize("ufg", [1, 4])
def test_mean_shift_is_the_frame_average_of_the_field(ufg):
    shape = (90, 101)
    ys, xs = patch_grid(shape, **ODD)
    ps = np.random.default_rng(3).normal(size=(3, len(ys), len(xs), 2)).astype(np.float32)
    field = shift_field(ps, shape, upsample_factor_grid=ufg, **ODD)
    assert_allclose(mean_shift(ps, shape, upsample_factor_grid=ufg, **ODD), field.mean(axis=(1, 2)), atol=1e-5)
    # equal patch shifts: a rigid shift, reported as itself
    same = np.broadcast_to(np.float32([1.25, -0.5]), ps.shape)
    assert_allclose(mean_shift(same, shape, **ODD), np.broadcast_to([1.25, -0.5], (3, 2)), atol=1e-6)
    with pytest.raises(ValueError, match="does not match"):  # shifts of another layout
        mean_shift(ps[:, :-1], shape, **ODD)


@settings(max_examples=20, deadline=None)
@given(st.integers(20, 200), st.integers(8, 64), st.integers(0, 32), st.integers(1, 8))
def test_field_weights_are_a_partition_of_unity(n, stride, overlap, ufg):
    wy, wx = field_weights((n, n + 7), strides=(stride, stride), overlaps=(overlap, overlap), upsample_factor_grid=ufg)
    assert wy.shape[0] == n and wx.shape[0] == n + 7
    assert_allclose(wy.sum(axis=1), 1.0, atol=1e-5)
    assert_allclose(wx.sum(axis=1), 1.0, atol=1e-5)


def test_warp_piecewise_equals_apply_field_of_shift_field():
    stack = np.stack([IMG, IMG[::-1].copy()])
    ys, xs = patch_grid(IMG.shape, **ODD)
    ps = np.random.default_rng(2).uniform(-2, 2, (2, len(ys), len(xs), 2)).astype(np.float32)
    direct = warp_piecewise(stack, ps, border_nan=True, interpolation="cubic", **ODD)
    via_field = apply_field(stack, shift_field(ps, IMG.shape, **ODD), border_nan=True, interpolation="cubic")
    assert_allclose(direct, via_field, atol=1e-4)
    one = warp_piecewise(IMG, ps[0], **ODD)
    assert one.shape == IMG.shape


@pytest.mark.parametrize("shift", [(0.3, -1.7), (2.0, 3.0), (-5.55, 0.02), (0.5, 0.5), (40.2, -90.7)])
def test_separable_bicubic_shift_is_opencvs_warp(shift):
    """The two-pass bicubic shift equals cv2.warpAffine(INTER_CUBIC, BORDER_REPLICATE) up to
    OpenCV's 1/32-pixel rounding of the fraction, borders and far shifts included."""
    import cv2

    from calcium_dask.motion.kernels._cubic import shift_cubic

    dy, dx = shift
    expected = cv2.warpAffine(IMG, np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]]), IMG.shape[::-1],
                              flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    got = shift_cubic(IMG[None].copy(), np.array([shift]))[0]
    assert_allclose(got, expected, atol=2e-3 * float(np.ptp(IMG)))
    assert_array_equal(apply_shift(IMG, shift, interpolation="cubic"), got)


def test_separable_bicubic_whole_pixel_shift_is_exact():
    from calcium_dask.motion.kernels._cubic import shift_cubic

    got = shift_cubic(IMG[None].copy(), np.array([[2.0, -3.0]]))[0]
    assert_array_equal(got[2:, :-3], IMG[:-2, 3:])
    assert_array_equal(got[:2, :-3], np.broadcast_to(IMG[0, 3:], (2, IMG.shape[1] - 3)))  # replicated edge
