"""Registration of one-photon-like frames: high-pass filtered (robust to vignetting and a moving
background), temporally smoothed (robust to noise), insignificant peaks replaced by their
neighbours; blocks with a halo of frames give the whole movie's answer."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from calcium_dask import Params
from calcium_dask.motion import motion_correct
from calcium_dask.motion.kernels import correct_frames, high_pass_filter, merge_templates, prepare_template
from calcium_dask.motion.kernels.registration import register_rigid_fit
from calcium_dask.motion.kernels.templates import alike_template
from calcium_dask.motion.kernels.temporal import fill_unreliable, halo_frames, smooth_frames

from . import onephoton_synth as syn

RIGID = dict(pw_rigid=False, max_shifts=(6, 6), clip_quantile=None)


@pytest.fixture(scope="module")
def trajectory() -> np.ndarray:
    return syn.slow_shifts(150, amp=3.0)


def test_high_pass_registration_ignores_the_vignetting_and_the_moving_background(trajectory):
    frames = syn.movie(trajectory, noise=1.0)
    raw = correct_frames(frames, syn.template(), **RIGID)["shifts"]
    filtered = correct_frames(frames, syn.template(), gSig_filt=3, **RIGID)["shifts"]
    # the sensor-fixed vignette and the background pull raw intensities towards no motion
    slope = np.polyfit(-trajectory[:, 0], raw[:, 0], 1)[0]
    assert slope < 0.85 and syn.rmse(raw, trajectory) > 0.3
    assert syn.rmse(filtered, trajectory) < 0.05


def test_temporal_smoothing_recovers_slow_motion_from_noisy_frames(trajectory):
    frames = syn.movie(trajectory, noise=40.0)
    single = correct_frames(frames, syn.template(), gSig_filt=3, **RIGID)
    smooth = correct_frames(frames, syn.template(), gSig_filt=3, smooth_sigma_time=2.0, **RIGID)
    assert syn.rmse(single["shifts"], trajectory) > 0.7
    assert syn.rmse(smooth["shifts"], trajectory) < 0.4
    assert np.median(smooth["peak"]) > 1.3 * np.median(single["peak"])  # averaged noise
    assert smooth["corrected"].shape == frames.shape  # the raw frames are warped
    expected = correct_frames(frames, syn.template(), gSig_filt=3, **RIGID)  # same warp, other shifts
    assert not np.allclose(smooth["corrected"], expected["corrected"])


def test_peak_snr_tells_a_match_from_noise():
    tmpl = syn.template()
    cache = prepare_template(tmpl, gSig_filt=3)
    good = syn.movie(np.array([[1.3, -2.2]]), noise=5.0)
    noise = np.random.default_rng(3).normal(300, 40, (4, *tmpl.shape)).astype(np.float32)
    fit = register_rigid_fit(high_pass_filter(np.concatenate([good, noise]), 3), cache, max_shifts=(6, 6))
    np.testing.assert_allclose(fit.shifts[0], [-1.3, 2.2], atol=0.1)
    assert fit.snr[0] > 3 and np.all(fit.snr[1:] < 1.5)
    # rivals are looked for beyond the bounds: a tight max_shifts keeps the test's power
    tight = register_rigid_fit(high_pass_filter(noise, 3), cache, max_shifts=(2, 2))
    assert np.all(tight.snr < 1.5)


def test_insignificant_peaks_take_their_neighbours_shifts(trajectory):
    frames = syn.movie(trajectory, noise=10.0)
    bad = np.arange(7, 150, 11)  # e.g. dropped or flashed frames: no tissue in them
    frames[bad] = np.random.default_rng(5).normal(300, 40, (len(bad), *frames.shape[1:]))
    trusting = correct_frames(frames, syn.template(), gSig_filt=3, smooth_sigma_time=0.0, **RIGID)
    careful = correct_frames(frames, syn.template(), gSig_filt=3, snr_thresh=1.5, **RIGID)
    good = np.setdiff1d(np.arange(150), bad)
    assert np.all(careful["peak_snr"][bad] < 1.5) and np.median(careful["peak_snr"][good]) > 3
    err = lambda s: np.linalg.norm(s + trajectory - (s + trajectory)[good].mean(0), axis=1)  # noqa: E731
    assert np.median(err(trusting["shifts"])[bad]) > 1.0
    assert np.max(err(careful["shifts"])[bad]) < 0.5
    np.testing.assert_allclose(careful["shifts"][good], trusting["shifts"][good])  # the rest untouched


def test_fill_unreliable_interpolates_in_time_and_holds_at_the_ends():
    t = np.arange(10, dtype=float)
    shifts = np.stack([2 * t, -t], 1)
    ok = np.ones(10, bool)
    ok[[0, 3, 4, 9]] = False
    noisy = shifts.copy()
    noisy[~ok] = 99.0
    out = fill_unreliable(noisy, ok)
    np.testing.assert_allclose(out[1:9], shifts[1:9])
    np.testing.assert_allclose(out[0], shifts[1])
    np.testing.assert_allclose(out[9], shifts[8])
    np.testing.assert_array_equal(fill_unreliable(noisy, np.zeros(10, bool)), noisy)


def test_a_block_with_its_halo_matches_the_whole_stack(trajectory):
    frames = syn.movie(trajectory[:90], noise=20.0)
    opts = dict(gSig_filt=3, smooth_sigma_time=1.5, snr_thresh=1.2, **RIGID)
    whole = correct_frames(frames, syn.template(), **opts)
    h = halo_frames(1.5)
    assert h == 5
    np.testing.assert_allclose(smooth_frames(frames[30 - h:60 + h], 1.5)[h:-h], smooth_frames(frames, 1.5)[30:60],
                               rtol=1e-6, atol=1e-3)
    block = correct_frames(frames[30 - h:60 + h], syn.template(), halo=(h, h), **opts)
    assert block["corrected"].shape[0] == 30 and block["shifts"].shape == (30, 2)
    np.testing.assert_allclose(block["shifts"], whole["shifts"][30:60], atol=2e-3)
    np.testing.assert_allclose(block["corrected"], whole["corrected"][30:60], rtol=1e-4, atol=0.05)


def test_distributed_blocks_with_halos_equal_the_kernel_on_the_whole_movie(client, trajectory):
    frames = syn.movie(trajectory, noise=30.0)
    movie = xr.DataArray(da.from_array(frames, chunks=(40, -1, -1)), dims=("frame", "y", "x"),
                         attrs={"fr": 20.0, "source": "memory"})
    params = Params.from_dict({"pw_rigid": False, "max_shifts": (6, 6), "gSig_filt": (3, 3), "clip_quantile": None,
                               "smooth_sigma_time": 2.0, "snr_thresh": 1.3, "niter_rig": 2,
                               "compute.chunk_frames": 40})
    res = motion_correct(movie, params)
    assert "peak_snr" in res.motion and res.motion["peak_snr"].shape == (150,)
    expected = correct_frames(frames, res.motion["template"].values, gSig_filt=3, smooth_sigma_time=2.0,
                              snr_thresh=1.3, **RIGID)
    np.testing.assert_allclose(res.motion["shifts"].values, expected["shifts"], atol=2e-3)
    assert syn.rmse(res.motion["shifts"].values, trajectory) < 0.5  # its own template, from the movie


def test_first_template_comes_from_the_groups_most_alike():
    # the brain sits at one place in 9 groups of frames, has moved by 4 pixels in 6 others
    d = np.array([[0.0, 0.0]] * 9 + [[4.0, -1.0]] * 6)
    means = syn.movie(d, noise=3.0)[np.r_[0:15]]
    at_rest = means[:9].mean(0)
    alike = alike_template(means, 3)
    sl = (slice(10, -10), slice(10, -10))

    def match(t):
        return np.corrcoef(high_pass_filter(t, 3)[sl].ravel(), high_pass_filter(at_rest, 3)[sl].ravel())[0, 1]

    assert match(alike) > 0.95 and match(merge_templates(means)) < match(alike) - 0.05
    np.testing.assert_array_equal(alike_template(means[:2], 3), merge_templates(means[:2], method="mean"))
