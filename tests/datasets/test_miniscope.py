"""The one-photon (miniscope) scene: somata blurred by scattering, out-of-focus neurons that
make the background fluctuate in space and time, vignetting fixed to the sensor; the
two-photon presets stay the same."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from calcium_dask.datasets import SimulationParams, simulate
from calcium_dask.datasets.render import FrameRenderer, clean_canvas
from calcium_dask.datasets.scene import build_scene

TINY = dict(T=200, H=96, W=96, K=16)


def _fingerprint(movie: np.ndarray, truth) -> list[float]:
    """Sums that any change to a two-photon scene moves (a one-photon feature switched on,
    a random draw shifted), but not the last bits of float arithmetic, which differ between
    CPUs (a sha256 of the bytes, used before, matched on one machine and not on another)."""
    m = movie.astype(np.float64)
    truth_sums = [float(np.abs(np.asarray(getattr(truth, k), np.float64)).sum())
                  for k in ("footprint_patches", "C", "S", "shifts", "baseline", "bg_spatial")]
    return [m.mean(), m.std(), m[0].mean(), m[-1].mean(), *truth_sums]


# the simulator's two-photon scenes were byte for byte those from before the one-photon
# settings (sha256, on the machine where both ran); these sums were measured from them
BEFORE = {
    "small-120": [228.01819610595703, 86.69805877646074, 206.34881591796875, 227.0867919921875,
                  2769.8828665971523, 103119.11793803377, 5196.513124465942, 266.3804294709116,
                  462531.6599576473, 369335.57467520237],
    "hard-40": [248.5813266330295, 70.82116718832202, 232.39306640625, 251.12586805555554,
                7023.930025260197, 83469.03318670392, 5430.740175485611, 181.90918217226863,
                1013260.3910787106, 1302892.2447991967],
    "small-60-seed5": [245.61986694335937, 144.2581608274922, 225.50958251953125, 255.13775634765625,
                       2953.45154883957, 122920.14527658, 6884.682953119278, 114.17484020628035,
                       466779.3576288223, 362249.6417532563],
}


@pytest.mark.parametrize(("name", "kw", "key"), [
    ("small", dict(T=120), "small-120"),
    ("hard", dict(T=40), "hard-40"),
    ("small", dict(T=60, seed=5, nr_mean_free=False), "small-60-seed5")])
def test_two_photon_presets_are_those_before_the_one_photon_settings(name, kw, key):
    np.testing.assert_allclose(_fingerprint(*simulate(SimulationParams.preset(name, **kw))), BEFORE[key], rtol=1e-6)


def test_miniscope_preset_is_a_20_hz_256_pixel_movie_with_one_photon_features():
    p = SimulationParams.preset("miniscope")
    assert p.shape == (2400, 256, 256) and p.K == 160 and p.fr == 20.0
    assert p.blur_px > 0 and p.vignette > 0 and p.n_blurred > p.K and p.vessel_contrast < 1
    two = SimulationParams.preset("medium")
    assert p.rigid_max > two.rigid_max  # the brain moves more under a head-mounted scope


def test_blur_widens_the_somata_and_keeps_them_max_normalised():
    sharp = build_scene(SimulationParams.preset("miniscope", **TINY, blur_px=0.0)).truth
    blurred = build_scene(SimulationParams.preset("miniscope", **TINY)).truth
    np.testing.assert_array_equal(sharp.centers, blurred.centers)  # same neurons
    area = [(t.footprints > 0.2).sum((1, 2)) for t in (sharp, blurred)]
    assert np.all(area[1] > area[0]) and np.median(area[1] / area[0]) > 1.2
    np.testing.assert_allclose(blurred.footprint_patches.max((1, 2)), 1.0)


def test_vignetting_is_fixed_to_the_sensor_and_the_truth_sees_it():
    p = SimulationParams.preset("miniscope", **TINY)
    scene = build_scene(p)
    tr = scene.truth
    gain = tr.sensor_gain
    assert gain[p.H // 2, p.W // 2] == pytest.approx(1.0, abs=0.01)
    assert gain[0, 0] == pytest.approx(1 - p.vignette, abs=1e-6) == gain[-1, -1]
    t = int(np.argmax(np.abs(tr.shifts).sum(1)))
    canvas = clean_canvas(scene, t, t + 1)[0]
    moved = FrameRenderer(scene).photons(canvas, t)
    plain = FrameRenderer(build_scene(dataclasses.replace(p, vignette=0.0))).photons(canvas, t)
    np.testing.assert_allclose(moved, plain * gain, rtol=1e-5)  # after the motion, not moved by it
    frames = tr.clean_frames(0, p.T)
    np.testing.assert_allclose(p.offset + p.gain * frames.mean(0, dtype=float), tr.clean_mean, rtol=1e-4)


def test_out_of_focus_neurons_are_local_background_that_flashes_on_its_own():
    p = SimulationParams.preset("miniscope", **{**TINY, "T": 1200})
    tr = build_scene(p).truth
    nn = len(p.neuropil_levels)
    assert len(tr.bg_spatial) == nn + p.n_blurred
    blobs, flashes = tr.bg_spatial[nn:], tr.bg_temporal[nn:]
    lit = (blobs > 0).reshape(len(blobs), -1).mean(1)
    assert np.median(lit[lit > 0]) < 0.2  # each lights a small part of the field
    assert np.all(flashes >= 1.0) and np.median(flashes.max(1)) > 2  # transients above rest
    corr = np.corrcoef(flashes[flashes.std(1) > 0])[np.triu_indices(int((flashes.std(1) > 0).sum()), 1)]
    assert np.median(np.abs(corr)) < 0.2  # each on its own
    # the background outshines the neurons' resting light: most of a field's light
    rest = (tr.clean_mean - p.offset) / p.gain / tr.sensor_gain
    somata = sum(tr.footprints[k] * tr.f0[k] for k in range(tr.K))
    assert somata.sum() < 0.2 * rest.sum()
    frames = tr.clean_frames(0, 50)  # local components are drawn where they have light only
    ref = tr.baseline + np.einsum("jhw,jt->thw", tr.bg_spatial, tr.bg_temporal[:, :50])
    ref += np.einsum("khw,kt->thw", tr.footprints, tr.f0[:, None] + tr.C[:, :50])
    np.testing.assert_allclose(frames, ref * tr.sensor_gain, rtol=1e-4, atol=1e-3)


def test_snr_and_noise_hold_under_vignetting_and_a_bright_background():
    p = SimulationParams.preset("miniscope", **{**TINY, "T": 400}, seed=2, rigid_max=0.0, nonrigid_max=0.0)
    movie, tr = simulate(p)
    peak = np.array([tr.footprint_origins[k] + np.unravel_index(np.argmax(tr.footprint_patches[k]),
                                                                tr.footprint_patches.shape[1:])
                     for k in range(tr.K)])
    inside = np.all((peak >= 0) & (peak < (p.H, p.W)), axis=1)
    assert inside.sum() >= 12
    y, x = peak[inside].T
    gain = tr.sensor_gain[y, x]
    np.testing.assert_allclose(tr.snr[inside], p.gain * gain * tr.C.max(1)[inside] / tr.noise_sd[inside],
                               rtol=1e-5)
    assert tr.snr.min() >= p.snr_range[0] * 0.999 and tr.snr.max() <= p.snr_range[1] * 1.001
    clean = p.offset + p.gain * tr.clean_frames(0, p.T)[:, y, x]  # motion-free: the sensor sees this
    resid = movie[:, y, x].astype(float) - clean
    ratios = [resid[tr.C[k] < 0.02 * tr.C[k].max(), i].std() / tr.noise_sd[k]
              for i, k in enumerate(np.flatnonzero(inside))]
    assert np.median(ratios) == pytest.approx(1.0, abs=0.1)
    # the background outshines the resting somata several times over
    rest = (tr.clean_mean[y, x] - p.offset) / p.gain / gain
    assert np.median(rest / tr.f0[inside]) > 3


def test_simulate_command_writes_a_miniscope_movie_with_its_truth(tmp_path, capsys):
    from calcium_dask.cli import main
    from calcium_dask.datasets import GroundTruth

    with pytest.raises(SystemExit) as done:
        main(["simulate", str(tmp_path / "m" / "movie.zarr"), "--preset", "miniscope", "--set", "T=30",
              "--set", "H=64", "--set", "W=64", "--set", "K=6", "--set", "n_blurred=20"])
    assert done.value.code == 0
    truth = GroundTruth.load(tmp_path / "m" / "truth.npz")
    assert truth.params.vignette > 0 and truth.params.fr == 20.0 and len(truth.bg_spatial) == 22
    assert "30 frames of 64x64, 6 neurons" in capsys.readouterr().out
