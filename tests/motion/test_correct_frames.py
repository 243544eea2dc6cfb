"""The block kernel corrects planted motion; templates, high-pass filter, offsets, borders."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calcium_dask.motion.kernels import (
    correct_frames,
    high_pass_filter,
    high_pass_kernel,
    make_template,
    merge_templates,
    patch_centers,
    patch_grid,
    prepare_template,
    refine_template,
)

from .motion_synth import PAD, deform, field_fn, interior_corr, moved_frames, smooth_image

RNG = np.random.default_rng(7)
BIG = smooth_image((128, 128), sigma=2.0, blob_sigma=2.0, seed=11)
TRUTH = BIG[PAD:-PAD, PAD:-PAD].astype(np.float32)
MOVES = np.column_stack([2.5 * np.sin(np.arange(20) / 3.0), 2.0 * np.cos(np.arange(20) / 4.0)])
MOVES[0] = [3.6, -4.2]
RIGID_MOVIE = moved_frames(BIG, MOVES)
PW = {"strides": (48, 48), "overlaps": (24, 24), "max_shifts": (6, 6), "max_deviation_rigid": 3}  # CaImAn's demo


def _pw_movie() -> tuple[np.ndarray, list]:
    """Frames with rigid motion plus a smooth zero-mean deformation that changes in time."""
    frames, fields = [], []
    for t, (dy, dx) in enumerate(MOVES[:8]):
        base = field_fn(amp=0.8 * np.cos(t), length=700.0, offset=(-dy, -dx), centre=(63.5, 63.5))
        fields.append(base)
        frames.append(deform(BIG, base))
    return np.asarray(frames, np.float32), fields


def test_rigid_correction_recovers_planted_shifts_and_frames():
    out = correct_frames(RIGID_MOVIE, TRUTH, pw_rigid=False, max_shifts=(6, 6), upsample_factor=10)
    assert out["corrected"].shape == RIGID_MOVIE.shape and out["corrected"].dtype == np.float32
    assert out["patch_shifts"] is None
    assert_allclose(out["shifts"], -MOVES, atol=0.05)
    for frame in out["corrected"]:
        assert interior_corr(frame, TRUTH, 8) > 0.99
    assert interior_corr(RIGID_MOVIE[0], TRUTH, 8) < 0.9  # the motion was real


def test_piecewise_correction_recovers_a_deforming_movie():
    frames, fields = _pw_movie()
    out = correct_frames(frames, TRUTH, pw_rigid=True, upsample_factor=10, **PW)
    ys, xs = patch_grid(TRUTH.shape, strides=PW["strides"], overlaps=PW["overlaps"])
    assert out["patch_shifts"].shape == (len(frames), len(ys), len(xs), 2)
    cy, cx = patch_centers(TRUTH.shape, strides=PW["strides"], overlaps=PW["overlaps"])
    for t, fn in enumerate(fields):
        ty, tx = np.broadcast_arrays(*fn(cy[:, None], cx[None, :]))
        assert_allclose(out["patch_shifts"][t, ..., 0], ty, atol=0.1)
        assert_allclose(out["patch_shifts"][t, ..., 1], tx, atol=0.1)
        assert interior_corr(out["corrected"][t], TRUTH, 10) > 0.99
    # the rigid stage sees the average motion (the deformation has zero mean)
    assert_allclose(out["shifts"], -MOVES[:8], atol=0.1)


def test_piecewise_beats_rigid_on_a_deformed_frame():
    strong = field_fn(amp=2.0, length=300.0, centre=(63.5, 63.5))
    frame = deform(BIG, strong)
    rigid = correct_frames(frame, TRUTH, pw_rigid=False)["corrected"]
    piecewise = correct_frames(frame, TRUTH, pw_rigid=True, **PW)["corrected"]
    assert interior_corr(piecewise, TRUTH, 10) > interior_corr(rigid, TRUTH, 10) + 0.01


def test_one_frame_api_matches_the_stack():
    stack = correct_frames(RIGID_MOVIE[:3], TRUTH, pw_rigid=True, **PW)
    one = correct_frames(RIGID_MOVIE[1], TRUTH, pw_rigid=True, **PW)
    assert one["corrected"].shape == TRUTH.shape and one["shifts"].shape == (2,)
    assert_allclose(one["corrected"], stack["corrected"][1], atol=1e-4)
    assert_allclose(one["patch_shifts"], stack["patch_shifts"][1], atol=1e-5)


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.float64])
def test_integer_and_double_input_give_float32(dtype):
    frames = np.round(RIGID_MOVIE[:3]).astype(dtype)
    out = correct_frames(frames, TRUTH, pw_rigid=False)
    assert out["corrected"].dtype == np.float32 and out["shifts"].dtype == np.float32
    assert_allclose(out["shifts"], -MOVES[:3], atol=0.06)


@pytest.mark.parametrize("pw_rigid", [False, True])
@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8])
def test_integer_frames_are_read_as_they_are_with_the_result_of_their_float32_copy(dtype, pw_rigid):
    """The kernels read a movie's integers without a float32 copy of the block first."""
    frames = np.clip(np.round(RIGID_MOVIE[:3]), 0, 255).astype(dtype)
    kw = PW if pw_rigid else {}
    got = correct_frames(frames, TRUTH, pw_rigid=pw_rigid, min_mov=1.0, **kw)
    want = correct_frames(frames.astype(np.float32), TRUTH, pw_rigid=pw_rigid, min_mov=1.0, **kw)
    for key in ("corrected", "shifts", "peak") + (("patch_shifts",) if pw_rigid else ()):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_odd_frame_size_piecewise():
    big = smooth_image((127, 93), seed=12)
    frames = moved_frames(big, [[1.7, -2.2], [-3.1, 0.6]])
    out = correct_frames(frames, big[PAD:-PAD, PAD:-PAD], pw_rigid=True, **PW)
    assert out["corrected"].shape == (2, 127, 93)
    assert_allclose(out["shifts"], [[-1.7, 2.2], [3.1, -0.6]], atol=0.05)
    assert_allclose(out["patch_shifts"][0], np.broadcast_to([-1.7, 2.2], out["patch_shifts"][0].shape), atol=0.06)


def test_template_cache_gives_the_same_result():
    cache = prepare_template(TRUTH, strides=PW["strides"], overlaps=PW["overlaps"], clip_quantile=0.95)
    a = correct_frames(RIGID_MOVIE[:4], TRUTH, pw_rigid=True, **PW)
    b = correct_frames(RIGID_MOVIE[:4], None, template_cache=cache, pw_rigid=True, **PW)
    assert_allclose(a["corrected"], b["corrected"], atol=1e-5)
    assert_allclose(a["patch_shifts"], b["patch_shifts"], atol=1e-6)
    with pytest.raises(ValueError, match="prepared with clip_quantile=0.95, not None"):
        correct_frames(RIGID_MOVIE[:4], None, template_cache=cache, pw_rigid=True, clip_quantile=None, **PW)


def test_fft_shifts_match_opencv_shifts_in_the_interior():
    a = correct_frames(RIGID_MOVIE[:4], TRUTH, pw_rigid=False, shifts_opencv=True)
    b = correct_frames(RIGID_MOVIE[:4], TRUTH, pw_rigid=False, shifts_opencv=False)
    assert_allclose(a["shifts"], b["shifts"])
    for fa, fb in zip(a["corrected"], b["corrected"]):
        assert interior_corr(fa, fb, 10) > 0.995


def test_border_nan_true_marks_the_uncovered_border():
    out = correct_frames(RIGID_MOVIE[:1], TRUTH, pw_rigid=False, border_nan=True)["corrected"][0]
    # the frame moved by (3.6, -4.2): its correction (-3.6, 4.2) leaves the bottom 4 rows
    # and the left 5 columns without data
    assert np.isnan(out[-4:]).all() and np.isnan(out[:, :5]).all()
    assert not np.isnan(out[:-4, 5:]).any()


def test_min_mov_offsets_the_output_only():
    plain = correct_frames(RIGID_MOVIE[:3], TRUTH, pw_rigid=False)
    low = correct_frames(RIGID_MOVIE[:3], TRUTH, pw_rigid=False, min_mov=-50.0, nonneg_movie=True)
    high = correct_frames(RIGID_MOVIE[:3], TRUTH, pw_rigid=False, min_mov=80.0, nonneg_movie=True)
    off = correct_frames(RIGID_MOVIE[:3], TRUTH, pw_rigid=False, min_mov=80.0, nonneg_movie=False)
    assert_allclose(low["corrected"], plain["corrected"] + 50.0, atol=1e-4)
    assert_allclose(high["corrected"], plain["corrected"] - 80.0, atol=1e-4)
    assert_allclose(off["corrected"], plain["corrected"])
    assert_allclose(low["shifts"], plain["shifts"])


def test_high_pass_registration_handles_a_changing_background():
    yy, xx = np.mgrid[:128, :128]
    frames = []
    for t, move in enumerate(MOVES[:4]):
        # a bright, drifting background that does not move with the tissue (one-photon like)
        background = 400 * np.exp(-((yy - 40 - 20 * t) ** 2 + (xx - 90 + 15 * t) ** 2) / (2 * 35.0**2))
        frames.append(moved_frames(BIG, [move])[0] + background.astype(np.float32))
    frames = np.asarray(frames)
    out = correct_frames(frames, TRUTH, pw_rigid=False, gSig_filt=(3, 3))
    assert_allclose(out["shifts"], -MOVES[:4], atol=0.1)
    # warps are applied to the raw frames, so the background is still there
    assert out["corrected"].mean() == pytest.approx(frames.mean(), rel=0.01)


def test_high_pass_kernel_and_filter():
    ker = high_pass_kernel((4, 4))
    assert ker.shape == (13, 13) and ker.sum() == pytest.approx(0.0, abs=1e-6)
    assert_allclose(ker, ker.T) and ker[6, 6] > 0 and ker[0, 0] == 0
    yy, xx = np.mgrid[:64, :64].astype(np.float32)
    flat = high_pass_filter(np.stack([3.0 * yy + 2.0 * xx + 50.0]), 4)
    assert np.abs(flat[0, 8:-8, 8:-8]).max() < 1e-3  # planes are removed away from borders
    spot = np.zeros((64, 64), np.float32)
    spot[32, 32] = 1
    assert high_pass_filter(spot, (4, 4))[32, 32] == pytest.approx(ker[6, 6], rel=1e-5)


def test_make_template_median_of_means_ignores_an_outlier_group():
    frames = np.ones((30, 8, 8), np.float32)
    frames[10:20] = 50.0  # one group of 10 frames is corrupted
    frames[::7] += 0.5
    assert_allclose(make_template(frames, group_size=10), 1.0, atol=0.11)
    assert make_template(frames, method="mean")[0, 0] > 10
    assert_allclose(make_template(frames, n_groups=3), make_template(frames, group_size=10))
    with pytest.raises(ValueError, match="method"):
        make_template(frames, method="max")


def test_refine_template_sharpens_a_blurred_first_template():
    first = make_template(RIGID_MOVIE, method="mean")  # misaligned frames: blurred
    refined = refine_template(RIGID_MOVIE, first, pw_rigid=False, max_shifts=(6, 6))
    # the template's own position is arbitrary: compare after aligning it to the truth
    aligned = correct_frames(refined, TRUTH, pw_rigid=False)["corrected"]
    assert interior_corr(aligned, TRUTH, 10) > 0.99 > interior_corr(first, TRUTH, 10) + 0.02


def test_merge_templates_is_nan_aware():
    a = np.full((4, 4), 1.0, np.float32)
    b = np.full((4, 4), 3.0, np.float32)
    c = np.full((4, 4), 100.0, np.float32)
    c[0, 0] = np.nan
    merged = merge_templates([a, b, c])
    assert merged[1, 1] == 3.0 and merged[0, 0] == 2.0
    assert merge_templates([a, b], method="mean")[2, 2] == 2.0


@pytest.mark.parametrize("pw_rigid", [False, True])
def test_a_frame_does_not_depend_on_its_block(pw_rigid):
    movie = np.concatenate([RIGID_MOVIE, _pw_movie()[0]])
    whole = correct_frames(movie, TRUTH, pw_rigid=pw_rigid, **PW)
    part = correct_frames(movie[17:23], TRUTH, pw_rigid=pw_rigid, **PW)
    np.testing.assert_array_equal(part["shifts"], whole["shifts"][17:23])
    np.testing.assert_array_equal(part["corrected"], whole["corrected"][17:23])
    if pw_rigid:
        np.testing.assert_array_equal(part["patch_shifts"], whole["patch_shifts"][17:23])


def test_template_from_parts_equals_the_template_of_the_whole():
    """The distributed template: group means and registered sums computed per part of the
    frames give the single-task template."""
    from calcium_dask.motion.kernels.templates import corrected_sums, group_means, mean_from_sums

    frames = RIGID_MOVIE.astype(np.float32)
    assert len(frames) >= 12
    parts = [frames[:10], frames[10:]]
    means = np.concatenate([group_means(parts[0], 5), group_means(parts[1], 5, partial=False)])
    assert means.shape[0] == len(frames) // 5
    assert_allclose(merge_templates(means), make_template(frames[: len(frames) // 5 * 5], group_size=5))
    first = merge_templates(means)
    whole = refine_template(frames, first, pw_rigid=False, max_shifts=(6, 6))
    sums = [corrected_sums(p, first, pw_rigid=False, max_shifts=(6, 6)) for p in parts]
    assert_allclose(mean_from_sums(sums), whole, rtol=1e-5, atol=1e-4)


def test_group_means_of_integer_frames_equal_those_of_their_float_copy():
    from calcium_dask.motion.kernels.templates import group_means

    frames = np.random.default_rng(3).integers(0, 4000, (25, 6, 7)).astype(np.uint16)
    got = group_means(frames, 10)
    assert got.dtype == np.float32 and got.shape == (2, 6, 7)
    assert_allclose(got, group_means(frames.astype(np.float32), 10), rtol=1e-6)
    assert_allclose(got, frames[:20].reshape(2, 10, 6, 7).mean(1), rtol=1e-6)


def test_group_means_of_short_stacks():
    from calcium_dask.motion.kernels.templates import group_means

    frames = np.arange(4 * 2 * 2, dtype=np.float32).reshape(4, 2, 2)
    assert_allclose(group_means(frames, 10), frames.mean(0, keepdims=True))  # one group of all
    assert group_means(frames, 10, partial=False).shape == (0, 2, 2)
    assert_allclose(group_means(frames, 3), frames[:3].mean(0, keepdims=True))  # leftover dropped


@pytest.mark.parametrize("pw_rigid", [False, True])
def test_clipping_keeps_a_bright_cell_at_the_edge_from_steering_the_shifts(pw_rigid):
    """A cell 5 px inside the top edge bursts to 10 times the texture's range in every
    frame while the template holds it at rest. On raw intensities it drags the rigid
    shift by up to 1 px (it moves through the edge taper); clipped at the template's
    95th percentile, the planted shifts are found within 0.04 px."""
    yy, xx = np.mgrid[:BIG.shape[0], :BIG.shape[1]]
    cell = np.exp(-((yy - (PAD + 5)) ** 2 + (xx - 64) ** 2) / (2 * 2.5 ** 2)) * BIG.max()
    template = (BIG + cell)[PAD:-PAD, PAD:-PAD].astype(np.float32)
    moves = np.column_stack([np.linspace(-3, 3, 12), np.linspace(2, -2, 12)])
    frames = moved_frames(BIG + 10 * cell, moves)
    err = {q: correct_frames(frames, template, pw_rigid=pw_rigid, clip_quantile=q, **PW)["shifts"] + moves
           for q in (None, 0.95)}
    assert np.abs(err[0.95]).max() < 0.04
    if not pw_rigid:
        assert np.abs(err[None]).max() > 0.5


def test_prepare_template_clips_at_its_quantile():
    cache = prepare_template(TRUTH, clip_quantile=0.9)
    assert cache.ceiling == pytest.approx(float(np.quantile(TRUTH, 0.9)))
    assert cache.template.max() == pytest.approx(cache.ceiling) and (cache.template == cache.ceiling).mean() > 0.09
    assert prepare_template(TRUTH).ceiling is None
