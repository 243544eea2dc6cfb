"""CNMF-E's seeding: neurons under a bright background that fluctuates in space and time are
found from the correlation and PNR images of the filtered movie; the centred filter is what
keeps the background out of those images; thresholds and max_number stop the seeding."""

from __future__ import annotations

import numpy as np
import pytest

from calcium_dask.cnmf.kernels.corr_pnr import (SeedOptions, corr_pnr_images, filter_frames, psf_kernel,
                                                seed_corr_pnr)
from calcium_dask.datasets import SimulationParams, simulate
from calcium_dask.datasets.scoring import match_footprints


@pytest.fixture(scope="module")
def miniscope():
    """A motion-free 64x64 miniscope movie: 6 blurred neurons, 40 out-of-focus ones flashing."""
    p = SimulationParams.preset("miniscope", T=800, H=64, W=64, K=6, n_blurred=40, seed=4, rigid_max=0.0,
                                nonrigid_max=0.0, snr_range=(6.0, 20.0))
    movie, truth = simulate(p, workers=1)
    return movie.astype(np.float32), truth


def test_psf_is_a_gaussian_four_sds_wide_made_zero_mean_when_centred():
    plain = psf_kernel(3.0, center_psf=False)
    centred = psf_kernel((3.0, 2.0), center_psf=True)
    assert plain.shape == (13, 13) and centred.shape == (13, 9)
    assert plain.sum() == pytest.approx(1.0, abs=1e-5) and centred.sum() == pytest.approx(0.0, abs=1e-5)
    assert centred[6, 4] == centred.max() and centred[0, 0] == 0  # zero outside the disk
    smooth = np.tile(np.linspace(0, 50, 64, dtype=np.float32), (1, 64, 1)) + 100
    flat = filter_frames(smooth, centred)[0, 10:-10, 10:-10]
    assert np.abs(flat).max() < 1e-3 * 100  # a ramp (a smooth background) is removed


def test_centred_filter_shows_the_neurons_and_not_the_background(miniscope):
    movie, truth = miniscope
    centres = np.round(truth.centers).astype(int)
    far = np.ones((64, 64), bool)
    for y, x in centres:
        far[max(0, y - 12):y + 13, max(0, x - 12):x + 13] = False

    def images(center_psf):
        f = filter_frames(movie, psf_kernel(3.0, center_psf=center_psf))
        return corr_pnr_images(f - f.mean(0))

    centred, plain = images(True), images(False)
    on_pnr = centred.pnr[tuple(centres.T)]
    assert np.all(centred.correlation[tuple(centres.T)] > 0.9) and np.all(on_pnr > 10)
    assert on_pnr.min() > 2 * np.percentile(centred.pnr[far], 95) and np.median(centred.correlation[far]) < 0.6
    # without centring, the flashing background away from any neuron looks like neurons
    assert np.median(plain.pnr[far]) > 10 and np.median(plain.correlation[far]) > 0.9


def test_seeds_find_neurons_under_a_fluctuating_background(miniscope):
    movie, truth = miniscope
    A, C, _ = seed_corr_pnr(movie, SeedOptions(gSig=(3.0, 3.0), gSiz=(13, 13), min_corr=0.8, min_pnr=9.0,
                                                       center_psf=True))
    found = A.toarray().T.reshape(-1, 64, 64)
    pairs = match_footprints(truth.footprints, found)
    assert len(pairs) == truth.K  # every neuron, each by a seed of its own
    corr = np.array([np.corrcoef(truth.C[i], C[j])[0, 1] for i, j in pairs])
    # a first trace (the background is not modelled yet): most follow their neuron already
    assert (corr > 0.9).sum() >= truth.K // 2
    np.testing.assert_allclose(np.sqrt((A.multiply(A)).sum(0)), 1.0, rtol=1e-5)  # unit-norm footprints


def test_seeding_stops_at_the_thresholds_and_at_max_number(miniscope):
    movie, _ = miniscope
    base = dict(gSig=(3.0, 3.0), gSiz=(13, 13), min_corr=0.8, center_psf=True)
    none, C, images = seed_corr_pnr(movie, SeedOptions(**base, min_pnr=1000.0))
    assert none.shape == (64 * 64, 0) and C.shape == (0, len(movie))
    assert images.pnr.max() < 1000  # the images are still there to choose thresholds on
    two, _, _ = seed_corr_pnr(movie, SeedOptions(**base, min_pnr=8.0, max_number=2))
    assert two.shape[1] == 2


def test_a_seed_refreshes_the_images_around_it_as_if_recomputed(miniscope):
    """After a neuron is subtracted, the correlation in its box and the PNR in the wider box
    are those of the whole updated filtered movie (computed on a smaller region: a pixel's
    local correlation needs only its neighbours)."""
    from calcium_dask.cnmf.kernels.corr_pnr import _local_correlation, _SeedState

    movie, _ = miniscope
    state = _SeedState(movie, SeedOptions(gSig=(3.0, 3.0), gSiz=(13, 13), min_corr=0.8, min_pnr=9.0,
                                          center_psf=True))
    boxes = []
    for y, x in state.candidates()[:3]:
        state.searched[y, x] = True
        seed = state.try_seed(y, x)
        if seed is not None:
            boxes.append(seed[0][0])
    assert boxes
    noise = state.images.noise
    kept = np.where(state.filtered >= state.opt.thresh_init * noise, state.filtered, np.float32(0.0))
    whole_cn = _local_correlation(kept)
    whole_pnr = state.filtered.max(axis=0) / noise
    last = boxes[-1]  # earlier boxes may have been changed by later seeds outside them
    np.testing.assert_allclose(state.cn[last], whole_cn[last], atol=1e-5)
    np.testing.assert_allclose(state.pnr[last], whole_pnr[last], rtol=1e-6)
