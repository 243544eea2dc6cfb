"""Simulated sessions of one field of view: each day is the same tissue seen through its own
transform, with identities that say which neuron is which."""

from __future__ import annotations

import numpy as np
import pytest

from calcium_dask.datasets import SimulationParams
from calcium_dask.datasets.sessions import SessionsParams, SessionsTruth, build_sessions, simulate_sessions


@pytest.fixture(scope="module")
def sessions():
    sp = SessionsParams(SimulationParams.preset("small", T=60, H=96, W=96, K=22, seed=4), n_sessions=4,
                        new_frac=0.1)
    scenes, truth = build_sessions(sp)
    return sp, scenes, truth


def test_each_days_neurons_sit_where_the_days_transform_puts_the_world(sessions):
    sp, scenes, truth = sessions
    for d, scene in enumerate(scenes):
        ids = truth.identities[d]
        assert scene.truth.K == len(ids) and len(set(ids.tolist())) == len(ids)
        np.testing.assert_allclose(truth.world_of(d, scene.truth.centers), truth.world_centers[ids], atol=0.05)
        np.testing.assert_allclose(truth.day_of(d, truth.world_centers[ids]), scene.truth.centers, atol=1e-6)


def test_days_differ_within_the_stated_bounds(sessions):
    sp, _, truth = sessions
    for a in range(4):
        for b in range(a + 1, 4):
            assert abs(truth.rotation[a] - truth.rotation[b]) <= sp.max_rotation
            assert np.hypot(*(truth.shift[a] - truth.shift[b])) <= sp.max_shift
    pad = sp.movie.pad
    fov = truth.deformation[:, :, pad:-pad, pad:-pad]
    peak = np.hypot(fov[:, 0], fov[:, 1]).max(axis=(1, 2))
    assert np.all(peak <= sp.max_deformation / 2 + 1e-6) and np.all(peak > 0.1)


def test_silent_and_new_neurons_and_changed_shapes(sessions):
    sp, scenes, truth = sessions
    for d, scene in enumerate(scenes):
        silent = truth.silent[d]
        assert np.all(scene.truth.C[silent] == 0) and np.all(scene.truth.C[~silent].max(1) > 0)
        assert np.all(truth.first_day[truth.identities[d]] <= d)  # a new neuron is absent before its day
    all_silent = np.concatenate(truth.silent)
    assert 0.05 < all_silent.mean() < 0.3  # silent_frac 0.15
    assert truth.first_day.max() > 0
    pair = truth.pairs(0, 1)
    r0, r1 = scenes[0].truth.radii[pair[:, 0]], scenes[1].truth.radii[pair[:, 1]]
    change = np.abs(np.log(r1 / r0))
    assert 0.02 < np.median(change) < 0.3  # shape_change 0.1 per day
    f0, f1 = scenes[0].truth.f0[pair[:, 0]], scenes[1].truth.f0[pair[:, 1]]
    assert np.corrcoef(np.log(f0), np.log(f1))[0, 1] > 0.8  # the same cells stay about as bright


def test_same_seed_same_sessions_and_the_truth_round_trips(tmp_path, sessions):
    sp, _, truth = sessions
    small = SessionsParams(SimulationParams.preset("small", T=30, H=64, W=64, K=10, seed=1), n_sessions=2)
    (m0, _), _ = simulate_sessions(small)[0][0], None
    again = simulate_sessions(small)[0][0][0]
    assert np.array_equal(m0, again)
    truth.save(tmp_path / "s.npz")
    back = SessionsTruth.load(tmp_path / "s.npz")
    assert back.params == sp and all(np.array_equal(a, b) for a, b in zip(back.identities, truth.identities))
    np.testing.assert_array_equal(back.deformation, truth.deformation)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="silent_frac"):
        SessionsParams(silent_frac=1.5)
    with pytest.raises(ValueError, match="n_sessions"):
        SessionsParams(n_sessions=0)


def test_at_bounds_days_differ_by_exactly_the_bounds():
    sp = SessionsParams(SimulationParams.preset("small", T=20, H=64, W=64, K=10, seed=2), n_sessions=3,
                        max_shift=12.0, max_rotation=3.0, max_deformation=2.0, at_bounds=True)
    _, truth = build_sessions(sp)
    for a, b in ((0, 1), (1, 2)):
        assert abs(truth.rotation[a] - truth.rotation[b]) == pytest.approx(3.0)
        assert np.hypot(*(truth.shift[a] - truth.shift[b])) == pytest.approx(12.0)
    pad = sp.movie.pad
    peak = np.hypot(*truth.deformation[0][:, pad:-pad, pad:-pad]).max()
    assert 0.7 < peak <= 1.0 + 1e-6
