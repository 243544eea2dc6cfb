"""Greedy initialisation: planted centres, footprints, traces and background are found."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from calcium_dask.cnmf.kernels.init import (
    _block_mean,
    _detrend,
    _remove_motion,
    _transient_score,
    _upsample,
    _white_sd,
    greedy_roi,
    initialize_components,
)

from .cnmf_sim import corr, footprint, match, simulate, with_background, with_motion_events

# the seeding the patches use: detrended, by significance, stopping at 4 noise SDs
ROBUST = dict(detrend_window=25, min_snr=4.0, decay_frames=10)


@pytest.fixture(scope="module")
def sim():
    return simulate(seed=0, nb=1)


def _nearest(found, planted):
    d = np.linalg.norm(found[:, None, :] - planted[None, :, :], axis=2)
    return d.min(0)  # distance from each planted centre to the closest found one


@pytest.mark.parametrize("ssub,tsub,rolling_sum", [(1, 1, True), (1, 1, False), (2, 3, True)])
def test_greedy_roi_finds_every_centre(sim, ssub, tsub, rolling_sum):
    A, C, center, b, f = greedy_roi(sim.Y, K=5, gSig=2, ssub=ssub, tsub=tsub,
                                    rolling_sum=rolling_sum)
    T = sim.Y.shape[0]
    assert A.shape == (1600, 5) and C.shape == (5, T) and center.shape == (5, 2)
    assert b.shape == (1600, 1) and f.shape == (1, T)
    assert _nearest(center, sim.centers).max() <= 2.0
    idx, cc = match(A, sim.A)
    assert len(set(idx.tolist())) == 5 and cc.min() > 0.85
    assert min(corr(C[i], sim.C[k]) for k, i in enumerate(idx)) > 0.9


@pytest.mark.parametrize("init", ["greedy", "full"])
def test_background_reproduces_planted_background(init):
    s = simulate(seed=2, nb=2, sn=0.3)
    if init == "greedy":
        _, _, _, b, f = greedy_roi(s.Y, K=5, gSig=2, nb=2)
    else:
        _, _, b, f, _ = initialize_components(s.Y, K=5, gSig=2, nb=2)
    err = np.linalg.norm(b @ f - s.b @ s.f) / np.linalg.norm(s.b @ s.f)
    assert err < (0.1 if init == "greedy" else 0.05)
    assert (b >= 0).all() and (f >= 0).all()


def test_initialize_components_recovers_components(sim):
    A, C, b, f, center = initialize_components(sim.Y, K=5, gSig=2, nb=1)
    assert sp.issparse(A) and A.dtype == np.float32
    idx, cc = match(A, sim.A)
    assert len(set(idx.tolist())) == 5 and cc.min() > 0.97
    assert min(corr(C[i], sim.C[k]) for k, i in enumerate(idx)) > 0.97
    assert corr(f[0], sim.f[0]) > 0.8
    np.testing.assert_allclose(b.mean() * f.mean(), 2.0, rtol=0.1)  # planted level 2
    assert _nearest(center, sim.centers).max() <= 1.0


def test_initialize_components_downsampled(sim):
    A, C, b, f, center = initialize_components(sim.Y, K=5, gSig=2, ssub=2, tsub=2)
    assert A.shape == (1600, 5) and C.shape == (5, sim.Y.shape[0])
    idx, cc = match(A, sim.A)
    assert len(set(idx.tolist())) == 5 and cc.min() > 0.9
    assert min(corr(C[i], sim.C[k]) for k, i in enumerate(idx)) > 0.9


def test_block_mean_and_upsample_round_trip():
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_allclose(_block_mean(x, 3, 0), [1, 4, 7, 9])
    ramp = np.linspace(0, 1, 12, dtype=np.float32)
    up = _upsample(_block_mean(ramp, 2, 0), 2, 12, 0)
    np.testing.assert_allclose(up[1:-1], ramp[1:-1], atol=1e-6)  # linear data survives


def _distances(center, planted):
    d = np.linalg.norm(center[:, None, :] - planted[None, :, :], axis=2)
    return d.min(0), d.min(1)  # planted -> nearest seed, seed -> nearest planted


def test_slow_background_outweighs_neurons_unless_detrended():
    Y, _, _, planted = with_background("drift")
    # CaImAn's energy seeding: every seed lands on the drifting background
    *_, center, _, _ = greedy_roi(Y, K=4, gSig=2)
    assert _distances(center, planted)[1].min() > 5
    # detrended and ordered by significance: one seed on each neuron
    *_, center, _, _ = greedy_roi(Y, K=4, gSig=2, **ROBUST)
    to_seed, to_cell = _distances(center, planted)
    assert to_seed.max() <= 1.0 and to_cell.max() <= 1.0


def test_shared_neuropil_events_are_removed_before_seeding():
    Y, _, _, planted = with_background("neuropil")
    # fast events shared by the patch survive detrending and seed components off cells
    *_, center, _, _ = greedy_roi(Y, K=4, gSig=2, **ROBUST)
    assert _distances(center, planted)[1].max() > 5
    *_, center, _, _ = greedy_roi(Y, K=4, gSig=2, remove_common=True, **ROBUST)
    to_seed, to_cell = _distances(center, planted)
    assert len(center) == 4 and to_seed.max() <= 1.0 and to_cell.max() <= 1.0


def test_seeding_stops_when_nothing_stands_out_of_the_noise():
    Y = 5 + np.random.default_rng(1).standard_normal((600, 40, 40)).astype(np.float32)
    A, C, center, b, f = greedy_roi(Y, K=4, gSig=2, **ROBUST)
    assert A.shape == (1600, 0) and C.shape == (0, 600) and b.shape == (1600, 1)
    s = simulate(seed=0, nb=1)  # five neurons: all found, and no seed away from them
    A, _, center, _, _ = greedy_roi(s.Y, K=8, gSig=2, **ROBUST)
    to_seed, to_cell = _distances(center, s.centers)
    assert to_seed.max() <= 1.0 and to_cell.max() <= 6.0


def test_residual_motion_events_are_projected_out_before_seeding():
    Y, active = with_motion_events()
    # brief displacements flicker the edges of the bright cells: seeds off the neurons
    *_, center, _, _ = greedy_roi(Y, K=4, gSig=2, **ROBUST)
    assert _distances(center, active)[1].max() > 3
    *_, center, _, _ = greedy_roi(Y, K=4, gSig=2, remove_motion=True, **ROBUST)
    to_seed, to_cell = _distances(center, active)
    assert to_seed.max() <= 1.0 and to_cell.max() <= 3


def test_motion_projection_leaves_a_still_movie_alone():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 20, 20)).astype(np.float32)
    X[100:110, 5:9, 5:9] += 3.0  # a transient is not motion
    before = X.copy()
    _remove_motion(X, 50 * rng.random((20, 20)))
    np.testing.assert_array_equal(X, before)


def test_what_a_box_fit_leaves_of_a_large_bright_neuron_does_not_use_up_k():
    rng = np.random.default_rng(4)
    T, dims = 600, (40, 40)
    A = np.stack([footprint((14, 14), dims, sigma=3.0, radius=5.0), footprint((30, 30), dims)], 1)
    C = np.zeros((2, T))
    S = (rng.random((2, T)) < 0.02) * rng.uniform(8, 15, (2, T))
    S[0] *= 6  # the large neuron is bright
    for t in range(T):
        C[:, t] = S[:, t] + (0.9 * C[:, t - 1] if t else 0)
    Y = (A @ C + 5 + 0.5 * rng.standard_normal((1600, T))).T.reshape(T, *dims).astype(np.float32)
    *_, center, _, _ = greedy_roi(Y, K=2, gSig=2, max_seeds=2)  # CaImAn: both on the big one
    assert _distances(center, np.array([[30.0, 30.0]]))[0].min() > 5
    *_, center, _, _ = greedy_roi(Y, K=2, gSig=2, **ROBUST)
    big, small = _distances(center, np.array([[14.0, 14.0], [30.0, 30.0]]))[0]
    assert small <= 1.0 and big <= 2.5  # the big one comes in pieces, merged later


def test_seeds_outside_the_own_tile_are_fitted_but_not_counted():
    s = simulate(seed=0, nb=1)
    own = (0, 20, 0, 40)  # the top half holds two of the five neurons
    A, C, center, *_ = greedy_roi(s.Y, K=2, gSig=2, own=own, **ROBUST)
    inside = center[:, 0] < 19.5
    assert inside.sum() == 2
    assert _distances(center[inside], s.centers[:2])[0].max() <= 1.0


def test_transient_score_is_the_peak_of_a_unit_energy_exponential_filter():
    from scipy.signal import lfilter

    rho = np.random.default_rng(2).standard_normal((300, 3, 4)).astype(np.float32)
    sd = np.full((3, 4), 2.0)
    g = np.exp(-1 / 7.0)
    ref = lfilter([np.sqrt(1 - g * g)], [1, -g], rho.reshape(300, -1), axis=0).max(0) / 2.0
    np.testing.assert_allclose(_transient_score(rho, sd, 7.0).ravel(), ref, rtol=1e-5)
    np.testing.assert_allclose(_transient_score(rho, sd, 0.0), rho.max(0) / 2.0, rtol=1e-6)


@pytest.mark.parametrize("window", [5, 30, 31])
def test_detrend_removes_the_centred_running_mean(window):
    from scipy import ndimage

    X = np.random.default_rng(3).standard_normal((200, 3, 4)).astype(np.float32)
    ref = X - ndimage.uniform_filter1d(X, window, axis=0, mode="reflect")
    np.testing.assert_allclose(_detrend(X, window), ref, atol=1e-5)


def test_white_noise_sd_of_a_movie_made_of_repeats_is_that_of_one_repeat():
    # a long session built of exact repeats (period 1000 samples, 20 of them): samples
    # strided by T/500 would meet only 25 phases of the period, and each pixel's noise would
    # come from 25 differences, scattered by ~15 % from pixel to pixel
    rng = np.random.default_rng(4)
    X = 3.0 * rng.standard_normal((1000, 40, 50)).astype(np.float32)
    X += np.linspace(0, 50, 1000, dtype=np.float32)[:, None, None]  # a slow trend
    sd = _white_sd(np.tile(X, (20, 1, 1)))
    assert sd.shape == (40, 50)
    assert abs(np.median(sd) / 3.0 - 1) < 0.03
    assert np.std(sd / 3.0) < 0.08
    assert np.std(_white_sd(X) / 3.0) < 0.08
