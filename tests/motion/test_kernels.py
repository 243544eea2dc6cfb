"""Registration kernels find planted rigid and piecewise shifts, within their bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from calcium_dask.motion.kernels import (
    patch_centers,
    patch_grid,
    prepare_template,
    register_piecewise,
    register_rigid,
)

from .motion_synth import PAD, deform, field_fn, moved_frames, smooth_image

BIG = smooth_image((96, 112), seed=1)
TEMPLATE = BIG[PAD:-PAD, PAD:-PAD].astype(np.float32)
PW = {"strides": (32, 32), "overlaps": (16, 16)}


@pytest.mark.parametrize("upsample, atol", [(20, 0.02), (10, 0.03)])
def test_rigid_recovers_planted_subpixel_shifts(upsample, atol):
    moves = np.array([[0, 0], [3, -2], [-5, 4], [1.25, -0.5], [-2.6, 3.3], [5.9, -5.7], [-0.35, 0.8]])
    frames = moved_frames(BIG, moves)
    shifts, peak = register_rigid(frames, TEMPLATE, max_shifts=(6, 6), upsample_factor=upsample)
    assert shifts.shape == (len(moves), 2) and shifts.dtype == np.float32
    assert_allclose(shifts, -moves, atol=atol)  # the correction is minus the motion
    # new content enters at the edges, so large shifts correlate a little less
    assert peak.shape == (len(moves),) and np.all(peak > 0.93) and peak[0] == pytest.approx(1, abs=1e-5)


def test_rigid_integer_search_returns_integers():
    frames = moved_frames(BIG, [[2, -3], [-1.4, 0.6]])
    shifts, _ = register_rigid(frames, TEMPLATE, upsample_factor=1)
    assert_allclose(shifts, [[-2, 3], [1, -1]])


def test_rigid_shifts_never_exceed_max_shifts():
    frames = moved_frames(BIG, [[9, -8], [-7.5, 2]])
    shifts, _ = register_rigid(frames, TEMPLATE, max_shifts=(4, 5), upsample_factor=10)
    assert np.all(np.abs(shifts) <= np.array([4, 5]) + 1e-6)
    within, _ = register_rigid(frames, TEMPLATE, max_shifts=(10, 10), upsample_factor=10)
    assert_allclose(within, [[-9, 8], [7.5, -2]], atol=0.06)  # the same frames, bounds wide enough


def test_rigid_large_window_uses_inverse_fft_path():
    frames = moved_frames(BIG, [[12.3, -11.6]])
    shifts, _ = register_rigid(frames, TEMPLATE, max_shifts=(15, 15), upsample_factor=20)
    assert_allclose(shifts, [[-12.3, 11.6]], atol=0.03)


def test_rigid_one_frame_equals_stack_and_dtypes_do_not_matter():
    frame = moved_frames(BIG, [[2.4, -1.7]])[0]
    one, peak_one = register_rigid(frame, TEMPLATE)
    stack, peak_stack = register_rigid(np.stack([frame, frame]), TEMPLATE)
    assert one.shape == (2,) and np.ndim(peak_one) == 0
    assert_allclose(stack, [one, one], atol=1e-5)
    for dtype in (np.uint16, np.int16, np.float64):
        found, _ = register_rigid(np.round(frame * 20).astype(dtype), (TEMPLATE * 20).astype(dtype))
        assert found.dtype == np.float32
        assert_allclose(found, [-2.4, 1.7], atol=0.03)


def test_rigid_odd_frame_size():
    big = smooth_image((127, 93), seed=3)
    frames = moved_frames(big, [[-3.3, 2.2], [4.1, 0.4]])
    shifts, _ = register_rigid(frames, big[PAD:-PAD, PAD:-PAD], upsample_factor=20)
    assert_allclose(shifts, [[3.3, -2.2], [-4.1, -0.4]], atol=0.03)


def test_rigid_accepts_precomputed_template_spectra():
    frames = moved_frames(BIG, [[1.5, -2.5]])
    direct, _ = register_rigid(frames, TEMPLATE)
    cache = prepare_template(TEMPLATE)
    via_cache, _ = register_rigid(frames, cache)
    via_fft, _ = register_rigid(frames, TEMPLATE, template_fft=cache)
    assert_allclose(via_cache, direct, atol=1e-5)
    assert_allclose(via_fft, direct, atol=1e-5)
    with pytest.raises(TypeError, match="prepare_template"):
        register_rigid(frames, TEMPLATE, template_fft=np.zeros((96, 57), np.complex64))


def test_rigid_peak_is_a_correlation_coefficient():
    rng = np.random.default_rng(0)
    _, same = register_rigid(TEMPLATE * 3 + 7, TEMPLATE)  # affine intensity change
    _, noise = register_rigid(rng.standard_normal(TEMPLATE.shape), TEMPLATE)
    assert same == pytest.approx(1.0, abs=1e-4)
    assert abs(noise) < 0.2


@settings(max_examples=15, deadline=None)
@given(st.floats(-5.5, 5.5), st.floats(-5.5, 5.5))
def test_rigid_finds_any_shift_within_bounds(dy, dx):
    frames = moved_frames(BIG, [[dy, dx]])
    shifts, _ = register_rigid(frames, TEMPLATE, max_shifts=(6, 6), upsample_factor=20)
    assert_allclose(shifts[0], [-dy, -dx], atol=0.02)


def test_patch_grid_matches_normcorre_layout():
    ys, xs = patch_grid((512, 500), strides=(48, 48), overlaps=(24, 24))
    assert ys.tolist() == [0, 48, 96, 144, 192, 240, 288, 336, 384, 432, 440]
    assert xs.tolist() == [0, 48, 96, 144, 192, 240, 288, 336, 384, 428]
    cy, cx = patch_centers((512, 500), strides=(48, 48), overlaps=(24, 24))
    assert_allclose(cy[:2], [35.5, 83.5]) and cx[-1] == pytest.approx(463.5)
    assert patch_grid((50, 60), strides=(48, 48), overlaps=(24, 24)) == ([0], [0])


@settings(max_examples=40, deadline=None)
@given(st.integers(8, 300), st.integers(4, 80), st.integers(0, 40))
def test_patch_grid_tiles_the_axis(n, stride, overlap):
    ys, _ = patch_grid((n, n), strides=(stride, stride), overlaps=(overlap, overlap))
    size = min(stride + overlap, n)
    assert ys[0] == 0 and ys[-1] == n - size  # first at 0, last flush with the border
    assert np.all(np.diff(ys) > 0) and np.all(np.diff(ys) <= stride)
    covered = np.zeros(n, bool)
    for y in ys:
        covered[y : y + size] = True
    assert covered.all()


def test_piecewise_recovers_a_translation_in_every_patch():
    frames = moved_frames(BIG, [[2, -3], [-1.6, 2.3]])
    ps = register_piecewise(frames, TEMPLATE, max_shifts=(6, 6), max_deviation_rigid=3, upsample_factor=20, **PW)
    ny, nx = len(patch_grid(TEMPLATE.shape, **PW)[0]), len(patch_grid(TEMPLATE.shape, **PW)[1])
    assert ps.shape == (2, ny, nx, 2) and ps.dtype == np.float32
    assert_allclose(ps[0], np.broadcast_to([-2, 3], ps[0].shape), atol=0.03)
    assert_allclose(ps[1], np.broadcast_to([1.6, -2.3], ps[1].shape), atol=0.03)


def test_piecewise_recovers_a_planted_smooth_deformation():
    big = smooth_image((160, 192), seed=4)
    fn = field_fn(amp=1.0, length=800.0, offset=(1.0, -0.7))
    frame = deform(big, fn)
    template = big[PAD:-PAD, PAD:-PAD]
    ps = register_piecewise(frame, template, strides=(48, 48), overlaps=(24, 24), max_deviation_rigid=3)
    cy, cx = patch_centers(template.shape, strides=(48, 48), overlaps=(24, 24))
    ty, tx = np.broadcast_arrays(*fn(cy[:, None], cx[None, :]))
    assert np.ptp(ty) > 0.5 and np.ptp(tx) > 0.3  # the field really varies across patches
    assert_allclose(ps[..., 0], ty, atol=0.1)
    assert_allclose(ps[..., 1], tx, atol=0.1)


def test_piecewise_shifts_stay_within_max_deviation_of_rigid():
    frames = moved_frames(BIG, [[0, 0]])  # true shift 0 everywhere
    rigid = np.array([[3.2, -2.6]])  # a wrong rigid estimate: the bound must hold anyway
    ps = register_piecewise(frames, TEMPLATE, rigid_shifts=rigid, max_deviation_rigid=1.5, **PW)
    dev = ps[0] - rigid[0]
    assert np.all(np.abs(dev) <= 1.5 + 1e-5)
    # the best allowed shift is the bound closest to the truth
    assert_allclose(ps[0], np.broadcast_to([1.7, -1.1], ps[0].shape), atol=0.05)


def test_featureless_frames_and_patches_carry_no_motion():
    """A constant frame has no correlation peak: its shift is 0 (it was the search's corner),
    and a constant patch takes its frame's rigid shift."""
    frames = moved_frames(BIG, [[1.3, -0.4], [0, 0]])
    frames[1] = 0.1  # a float that is not a binary fraction: the centring leaves rounding
    frames[0, :, 40:] = 500.0  # the patches entirely in the right part have no texture
    shifts, _ = register_rigid(frames, TEMPLATE, max_shifts=(6, 6))
    assert_allclose(shifts[1], [0, 0])
    ps = register_piecewise(frames, TEMPLATE, rigid_shifts=shifts, **PW)
    assert_allclose(ps[1], 0)
    xs = patch_grid(TEMPLATE.shape, **PW)[1]
    flat = xs >= 40
    assert flat.any()
    assert_allclose(ps[0][:, flat], np.broadcast_to(shifts[0], ps[0][:, flat].shape))


def test_piecewise_zero_deviation_is_rigid_and_none_uses_max_shifts():
    frames = moved_frames(BIG, [[1.3, -0.4]])
    rigid, _ = register_rigid(frames, TEMPLATE)
    ps0 = register_piecewise(frames, TEMPLATE, max_deviation_rigid=0, **PW)
    assert_allclose(ps0[0], np.broadcast_to(rigid[0], ps0[0].shape))
    ps_free = register_piecewise(frames, TEMPLATE, max_deviation_rigid=None, max_shifts=(2, 2), **PW)
    assert np.all(np.abs(ps_free) <= 2 + 1e-6)
    assert_allclose(ps_free[0], np.broadcast_to([-1.3, 0.4], ps_free[0].shape), atol=0.06)


def test_piecewise_one_frame_equals_stack_and_reuses_cache():
    frames = moved_frames(BIG, [[0.7, 1.9], [-2.2, -0.3]])
    cache = prepare_template(TEMPLATE, **PW)
    stack = register_piecewise(frames, cache, **PW)
    one = register_piecewise(frames[1], TEMPLATE, **PW)
    assert one.shape == stack.shape[1:]
    assert_allclose(one, stack[1], atol=1e-5)


def test_piecewise_odd_frame_size_and_border_patches():
    big = smooth_image((127, 93), seed=5)
    frames = moved_frames(big, [[5.2, -4.6]])  # large enough to push border crops outside
    ps = register_piecewise(frames, big[PAD:-PAD, PAD:-PAD], max_shifts=(6, 6), **PW)
    assert_allclose(ps[0], np.broadcast_to([-5.2, 4.6], ps[0].shape), atol=0.05)


@pytest.mark.parametrize("dtype", [np.float32, np.uint16])
def test_taper_removes_the_weighted_mean_frame_by_frame(dtype):
    from calcium_dask.motion.kernels._spectral import taper, tapered

    rng = np.random.default_rng(4)
    frames = (rng.random((3, 2, 30, 37)) * 1000).astype(dtype)
    window = taper((30, 37), 6)
    out, norms = tapered(frames, window, norm=True)
    f = frames.astype(np.float64)
    mean = (f * window).sum(axis=(-2, -1)) / window.sum()
    expected = (f - mean[..., None, None]) * window
    assert out.shape == frames.shape and out.dtype == np.float32 and norms.shape == (3, 2)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(norms, np.sqrt((expected ** 2).sum(axis=(-2, -1))), rtol=1e-5)
    # each frame's result is its own: the same with or without the other frames
    alone, _ = tapered(frames[1, 1], window)
    np.testing.assert_array_equal(alone, out[1, 1])


def test_tapered_windows_equal_the_taper_of_each_cut_out_window():
    from calcium_dask.motion.kernels._spectral import taper, tapered, tapered_windows

    rng = np.random.default_rng(5)
    frames = (rng.random((2, 40, 50)) * 100).astype(np.float32)
    rows, cols = np.array([[0, 13], [5, 20]]), np.array([[0, 7, 31], [2, 30, 11]])
    window = taper((20, 19), 4)
    out, norms = tapered_windows(frames, rows, cols, window)
    assert out.shape == (2, 2, 3, 20, 19) and norms.shape == (2, 2, 3)
    for t in range(2):
        for i in range(2):
            for j in range(3):
                r, c = rows[t, i], cols[t, j]
                one, n = tapered(frames[t, r:r + 20, c:c + 19], window, norm=True)
                np.testing.assert_array_equal(out[t, i, j], one)
                assert norms[t, i, j] == n
    with pytest.raises(ValueError, match="outside"):
        tapered_windows(frames, rows + 21, cols, window)


def test_envelope_table_gives_the_cosine_sum():
    """The peak searches read the taper's autocorrelation from a table of their grid."""
    from calcium_dask.motion.kernels._envelope import Envelope, _autocorr
    from calcium_dask.motion.kernels._spectral import taper_1d

    env = Envelope(tuple(taper_1d(72, 5)), tuple(taper_1d(61, 7)))
    rng = np.random.default_rng(6)
    my, mx = rng.integers(-900, 900, (4, 7)), rng.integers(-900, 900, (4, 5))
    corr = rng.random((4, 7, 5))

    def cosine_sum_score(sy, sx):
        return corr / (_autocorr(env.wy, sy)[:, :, None] * _autocorr(env.wx, sx)[:, None, :])

    assert_allclose(env.score_grid(corr, my, mx, 10), cosine_sum_score(my / 10, mx / 10), rtol=1e-12)
    assert_allclose(env.score_integer(corr, my, mx), cosine_sum_score(my.astype(float), mx.astype(float)),
                    rtol=1e-12)
