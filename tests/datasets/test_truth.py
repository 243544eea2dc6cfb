"""The movie agrees with its ground truth, and the truth has the promised properties."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from calcium_dask.datasets import SimulationParams, simulate
from calcium_dask.datasets.render import FrameRenderer, clean_canvas
from calcium_dask.datasets.scene import build_scene


def _warp_reference(canvas: np.ndarray, d: np.ndarray, pad: int, sign: float = 1.0):
    """clean(p - sign * d) by scipy (independent of the OpenCV path)."""
    H, W = d.shape[1:]
    yy, xx = np.mgrid[0:H, 0:W].astype(float)
    coords = [yy + pad - sign * d[0], xx + pad - sign * d[1]]
    return ndimage.map_coordinates(canvas.astype(float), coords, order=3, mode="nearest")


def test_observed_frame_is_clean_frame_displaced_by_plus_d(small_params):
    scene = build_scene(small_params)
    tr = scene.truth
    t = int(np.argmax(np.abs(tr.shifts).sum(1)))  # the most displaced frame
    canvas = clean_canvas(scene, t, t + 1)[0]
    got = FrameRenderer(scene).photons(canvas, t)
    d = tr.displacement(t)
    plus = _warp_reference(canvas, d, small_params.pad, +1)
    minus = _warp_reference(canvas, d, small_params.pad, -1)
    assert np.abs(d).max() > 2
    err = np.abs(got - plus).max() / np.ptp(plus)
    assert err < 0.03
    assert np.corrcoef(got.ravel(), plus.ravel())[0, 1] > 0.999
    assert np.abs(got - minus).max() / np.ptp(plus) > 10 * err


def test_noise_is_poisson_times_gain_plus_read_noise(small_sim, small_params):
    movie, _ = small_sim
    scene = build_scene(small_params)
    r = FrameRenderer(scene)
    p = small_params
    ts = range(0, p.T, 40)
    canvas = [clean_canvas(scene, t, t + 1)[0] for t in ts]
    lam = np.stack([r.photons(c, t) for c, t in zip(canvas, ts)]).astype(float)
    var = p.gain**2 * lam + p.read_sd**2 + 1 / 12  # shot + read + rounding
    z = (movie[list(ts)] - p.offset - p.gain * lam) / np.sqrt(var)
    assert abs(z.mean()) < 0.01
    assert z.std() == pytest.approx(1.0, abs=0.02)


def test_movie_mean_matches_displaced_clean_movie(small_sim, small_params):
    movie, tr = small_sim
    p = small_params
    scene = build_scene(p)
    expected = np.zeros((p.H, p.W))
    for b in range(0, p.T, 100):
        canvas = clean_canvas(scene, b, b + 100)
        for t in range(b, b + 100):
            expected += _warp_reference(canvas[t - b], tr.displacement(t), p.pad)
    expected = p.offset + p.gain * expected / p.T
    sd = np.sqrt(p.gain * (expected - p.offset) + p.read_sd**2) / np.sqrt(p.T)
    z = (tr.observed_mean - expected) / sd
    inner = z[8:-8, 8:-8]
    assert np.sqrt(np.mean(inner**2)) < 1.5  # noise-limited (cv2 vs scipy cubic adds a bit)
    assert abs(inner.mean()) < 0.1
    np.testing.assert_allclose(tr.observed_mean, movie.mean(0), rtol=1e-6)


def test_mean_is_clean_mean_blurred_by_the_shifts(small_sim):
    movie, tr = small_sim
    p = tr.params
    mean = ((movie.mean(0) - p.offset) / p.gain)[10:-10, 10:-10]
    clean = (tr.clean_mean - p.offset) / p.gain

    def moved(sign):  # clean mean displaced by each frame's rigid shift, averaged
        imgs = [ndimage.shift(clean, sign * s, order=3, mode="nearest") for s in tr.shifts[::4]]
        return np.mean(imgs, 0)[10:-10, 10:-10]

    r_plus = np.corrcoef(mean.ravel(), moved(+1).ravel())[0, 1]
    r_minus = np.corrcoef(mean.ravel(), moved(-1).ravel())[0, 1]
    assert r_plus > 0.98 and r_plus > r_minus
    assert mean.mean() == pytest.approx(clean[10:-10, 10:-10].mean(), rel=0.02)


def test_clean_mean_and_clean_frames_agree(small_sim):
    _, tr = small_sim
    p = tr.params
    frames = tr.clean_frames(0, tr.T)
    np.testing.assert_allclose(p.offset + p.gain * frames.mean(0, dtype=float),
                               tr.clean_mean, rtol=1e-4)
    scene = build_scene(p)
    np.testing.assert_array_equal(
        clean_canvas(scene, 3, 9)[:, p.pad:p.pad + p.H, p.pad:p.pad + p.W], frames[3:9])


def test_neuron_pixels_follow_its_calcium(small_sim):
    movie, tr = small_sim
    corrs = []
    H, W = tr.shape
    inner = np.all((tr.centers > 10) & (tr.centers < (H - 10, W - 10)), axis=1)
    for k in np.flatnonzero((tr.snr > 10) & (tr.partner < 0) & inner):
        cy, cx = tr.centers[k]
        trace = []
        for t in range(tr.T):  # follow the neuron as it moves
            d = tr.displacement(t)[:, int(round(cy)), int(round(cx))]
            y, x = int(round(cy + d[0])), int(round(cx + d[1]))
            trace.append(movie[t, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].mean())
        corrs.append(np.corrcoef(trace, tr.C[k])[0, 1])
    assert len(corrs) >= 5
    assert np.median(corrs) > 0.8


def test_shifts_bounded_and_pad_covers_all_motion():
    p = SimulationParams.preset("hard", T=600, seed=3)
    tr = build_scene(p).truth
    assert np.abs(tr.shifts).max() < p.rigid_max
    assert np.abs(tr.shifts).max() > 0.5 * p.rigid_max  # the motion is not negligible
    assert np.abs(tr.nr_field).max() <= p.nonrigid_max
    worst = max(np.abs(tr.displacement(t)).max() for t in range(0, p.T, 7))
    assert worst + 2 < p.pad  # cubic interpolation never reads outside the canvas


def test_rigid_shift_is_the_frame_average_displacement():
    """The non-rigid field averages to zero over each frame's pixels (the rigid part is
    ``shifts``), as in the public benchmark movie; the field itself is not negligible."""
    tr = build_scene(SimulationParams.preset("small", T=200, seed=5)).truth
    for t in range(0, 200, 13):
        d = tr.displacement(t)
        np.testing.assert_allclose(d.mean(axis=(1, 2)), tr.shifts[t], atol=1e-5)
        assert np.abs(d - tr.shifts[t][:, None, None]).max() > 0.2


def test_mean_deformation_is_nil_unless_the_field_keeps_its_chance_mean():
    """``nr_mean_free`` (default) makes the movie's mean deformation exactly zero; without it
    the field is a sample of a stationary process, whose mean over the movie is not zero
    (and larger for a longer time scale: fewer independent samples). Its spread over time
    is the same either way, and the other motion does not change."""
    def mean_rms(**kw):
        tr = build_scene(SimulationParams.preset("small", T=600, seed=4, **kw)).truth
        return float(np.sqrt((tr.nr_field.mean(0) ** 2).mean())), float(tr.nr_field.std()), tr.shifts

    free, sd_free, shifts = mean_rms()
    kept, sd_kept, shifts_kept = mean_rms(nr_mean_free=False)
    slow, _, _ = mean_rms(nr_mean_free=False, nr_timescale_s=6.0)
    assert free < 0.01 < 0.05 < kept < slow
    assert 0.7 < sd_kept / sd_free < 1.4
    np.testing.assert_array_equal(shifts, shifts_kept)


def test_no_motion_when_disabled():
    tr = build_scene(SimulationParams.preset("small", T=50, rigid_max=0.0,
                                             nonrigid_max=0.0)).truth
    assert not tr.shifts.any() and not tr.nr_field.any()


@pytest.mark.parametrize("name", ["small", "hard"])
def test_overlapping_pairs_at_requested_fraction(name):
    p = SimulationParams.preset(name, T=20)
    tr = build_scene(p).truth
    masks = (tr.footprints > 0.2).reshape(tr.K, -1).astype(int)
    overlaps = masks @ masks.T
    np.fill_diagonal(overlaps, 0)
    overlapping = overlaps.max(1) > 0
    assert abs(overlapping.mean() - p.pair_frac) <= 2 / tr.K
    np.testing.assert_array_equal(overlapping, tr.partner >= 0)
    k = np.flatnonzero(tr.partner >= 0)
    assert np.all(overlaps[k, tr.partner[k]] > 0)
    assert np.all(tr.partner[tr.partner[k]] == k)


def test_snr_spans_requested_range_and_follows_definition(small_sim):
    _, tr = small_sim
    p = tr.params
    lo, hi = p.snr_range
    assert tr.snr.min() >= lo * 0.999 and tr.snr.max() <= hi * 1.001
    assert tr.snr.min() < 2 and tr.snr.max() > 30
    tertiles = np.percentile(tr.snr, [33, 67])
    assert tertiles[1] > 2 * tertiles[0]
    np.testing.assert_allclose(tr.snr, p.gain * tr.C.max(1) / tr.noise_sd, rtol=1e-5)


def test_noise_sd_matches_resting_pixels():
    p = SimulationParams.preset("small", T=600, rigid_max=0.0, nonrigid_max=0.0, seed=2)
    movie, tr = simulate(p)
    ratios = []
    for k in np.flatnonzero(tr.partner < 0)[:20]:
        i, j = np.unravel_index(np.argmax(tr.footprint_patches[k]), tr.footprint_patches[k].shape)
        y, x = tr.footprint_origins[k] + (i, j)
        rest = tr.C[k] < 0.02 * tr.C[k].max()
        if 0 <= y < p.H and 0 <= x < p.W and rest.sum() > 100:
            ratios.append(movie[rest, y, x].std() / tr.noise_sd[k])
    assert np.median(ratios) == pytest.approx(1.0, abs=0.1)


def test_calcium_is_ar2_of_spikes(small_sim):
    from scipy.signal import lfilter

    _, tr = small_sim
    for k in range(0, tr.K, 7):
        c = lfilter([1.0], [1.0, -tr.g[k, 0], -tr.g[k, 1]], tr.S[k].astype(float))
        np.testing.assert_allclose(c, tr.C[k], rtol=1e-4, atol=1e-3 * tr.C[k].max())
    assert np.all(tr.S >= 0) and np.all((tr.S > 0).sum(1) >= 1)


def test_footprints_are_max_normalised(small_sim):
    _, tr = small_sim
    fp = tr.footprints
    assert fp.shape == (tr.K, *tr.shape) and fp.dtype == np.float32
    inside = np.array([f.max() for f in tr.footprint_patches])
    np.testing.assert_allclose(inside, 1.0)
    assert np.all(fp.min() >= 0) and np.all(fp.max((1, 2)) > 0.5)
