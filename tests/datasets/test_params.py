from __future__ import annotations

import json

import pytest

from calcium_dask.datasets import SimulationParams


@pytest.mark.parametrize(("name", "shape", "K"), [
    ("small", (1000, 128, 128), 40), ("medium", (2000, 256, 256), 160),
    ("large", (20000, 512, 512), 640), ("hard", (2000, 192, 192), 100)])
def test_presets_have_documented_sizes(name, shape, K):
    p = SimulationParams.preset(name)
    assert p.shape == shape and p.K == K
    assert p.pad >= p.min_pad


def test_hard_is_denser_noisier_and_moves_more():
    small, hard = SimulationParams.preset("small"), SimulationParams.preset("hard")
    assert hard.K / (hard.H * hard.W) > small.K / (small.H * small.W)
    assert hard.pair_frac > small.pair_frac
    assert hard.snr_range[1] < small.snr_range[1]
    assert hard.rigid_max > small.rigid_max and hard.nonrigid_max > small.nonrigid_max


def test_preset_overrides_and_pad_is_rederived():
    p = SimulationParams.preset("small", T=10, rigid_max=15.0)
    assert p.T == 10 and p.pad == p.min_pad and p.pad > 15
    assert p.replace(rigid_max=1.0).pad == p.replace(rigid_max=1.0).min_pad


def test_pad_too_small_is_refused():
    with pytest.raises(ValueError, match="pad=3 is too small"):
        SimulationParams(pad=3)


@pytest.mark.parametrize("bad", [dict(K=0), dict(radius_range=(6.0, 4.0)),
                                 dict(pair_frac=1.5), dict(rigid_max=-1.0),
                                 dict(tau_rise_range_s=(0.4, 0.6)), dict(nr_grid=(1, 5)),
                                 dict(nr_timescale_s=0.0)])
def test_invalid_settings_are_refused(bad):
    with pytest.raises(ValueError):
        SimulationParams(**bad)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        SimulationParams.preset("huge")


def test_json_round_trip():
    p = SimulationParams.preset("hard", seed=5)
    q = SimulationParams.from_json(p.to_json())
    assert q == p
    assert isinstance(q.radius_range, tuple)
    assert json.loads(p.to_json())["nr_grid"] == list(p.nr_grid)


def test_from_dict_strictness():
    d = {**SimulationParams().to_dict(), "movie": "movie.tif"}
    with pytest.raises(ValueError, match="unknown simulation parameters"):
        SimulationParams.from_dict(d)
    assert SimulationParams.from_dict(d, strict=False) == SimulationParams()
