"""CNMF-E on a patch and on a movie: neurons under a flashing out-of-focus background found with
clean traces; the full-rate traces come from one pass over the movie; every CNMF-E parameter
is read and changes the result; contradictory or empty settings are refused or reported."""

from __future__ import annotations

import dataclasses
import warnings

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from calcium_dask import Params
from calcium_dask.cnmf import NoSeedsWarning, cnmf, fit, refit
from calcium_dask.cnmf.cnmfe import cnmfe_options
from calcium_dask.cnmf.patches import patch_tsub
from calcium_dask.cnmf.kernels.cnmfe import fit_patch_cnmfe
from calcium_dask.datasets import SimulationParams, simulate
from calcium_dask.datasets.scoring import match_footprints, score_sources
from calcium_dask.errors import ParamsError

BASE = Params.preset("miniscope", fr=20.0)


@pytest.fixture(scope="module")
def patch_movie():
    p = SimulationParams.preset("miniscope", T=800, H=64, W=64, K=6, n_blurred=40, seed=4, rigid_max=0.0,
                                nonrigid_max=0.0, snr_range=(4.0, 20.0))
    movie, truth = simulate(p, workers=1)
    return movie.astype(np.float32), truth


def _opts(**changes):
    return cnmfe_options(BASE.replace(**{"init.ring_size_factor": 0.8, "init.min_pnr": 6.0, **changes}))


def _score(res, truth):
    h, w = res.dims
    return score_sources(truth.footprints, truth.C, res.A.toarray().T.reshape(-1, h, w), res.C)


def test_patch_finds_the_neurons_under_the_flashing_background(patch_movie):
    movie, truth = patch_movie
    res = fit_patch_cnmfe(movie, _opts())
    sc = _score(res, truth)
    assert sc["recall"] == 1.0 and sc["precision"] >= 0.6, sc
    assert sc["trace_corr_median"] > 0.95, sc
    assert res.ring.W.shape == (32 * 32, 32 * 32) and res.ring.b0.shape == (64 * 64,)
    own = fit_patch_cnmfe(movie, _opts(), own=(0, 32, 0, 64))  # only the neurons centred in its tile
    cy = [np.argmax(a.toarray().reshape(64, 64).sum(1)) for a in own.A.T]
    assert 0 < own.A.shape[1] < res.A.shape[1] and max(cy) < 33


# seeding in the residual (init_iter) finds more, and merging has neighbours to merge, where the
# thresholds let dim neurons seed
LOW = {"init.min_pnr": 4.0, "init.min_corr": 0.7}


@pytest.mark.slow
@pytest.mark.parametrize("change", [
    {"init.min_corr": 0.95}, {"init.min_pnr": 9.0}, {"init.center_psf": False}, {"init.ring_size_factor": 1.6},
    {"init.ssub_B": 1}, {**LOW, "init.init_iter": 1}, {"init.gSiz": (9, 9)}, {**LOW, "merging.merge_thr": 0.3},
    {"init.K": 2}])
def test_every_cnmfe_parameter_changes_the_result(patch_movie, change):
    movie, _ = patch_movie
    Y = movie[:400]
    base = fit_patch_cnmfe(Y, _opts(**(LOW if change.keys() & {"init.init_iter", "merging.merge_thr"} else {})))
    other = fit_patch_cnmfe(Y, _opts(**change))
    same = base.A.shape == other.A.shape and np.allclose(base.A.toarray(), other.A.toarray()) and \
        np.allclose(base.C, other.C)
    assert not same, change


def _dask_movie(movie: np.ndarray, fr: float = 20.0) -> xr.DataArray:
    return xr.DataArray(da.from_array(movie, chunks=(150, -1, -1)), dims=("frame", "y", "x"),
                        attrs={"fr": fr, "source": "memory"})


@pytest.fixture(scope="module")
def movie96():
    p = SimulationParams.preset("miniscope", T=600, H=96, W=96, K=14, n_blurred=70, seed=8, rigid_max=0.0,
                                nonrigid_max=0.0, snr_range=(4.0, 20.0))
    movie, truth = simulate(p, workers=1)
    return movie.astype(np.float32), truth


SMALL = {"patch.rf": 24, "patch.stride": 12, "init.ring_size_factor": 0.8, "init.min_pnr": 6.0}


def test_cnmfe_on_patches_then_the_distributed_refit_against_the_ring(client, movie96, tmp_path):
    movie, truth = movie96
    params = BASE.replace(**SMALL)
    ps = fit(_dask_movie(movie), params)
    assert ps.tsub == 2 and ps.C.shape[1] == 300 and len(ps.boxes) == 9
    est = refit(_dask_movie(movie), ps, params, store=str(tmp_path / "r.zarr"))
    C = np.asarray(est.C)
    assert C.shape == (est.A.shape[1], 600) and est.YrA.shape == C.shape
    sc = score_sources(truth.footprints, truth.C, est.A.toarray().T.reshape(-1, 96, 96), C)
    assert sc["recall"] >= 0.85 and sc["trace_corr_median"] > 0.9, sc
    # the background: the baseline as one component with a constant trace
    assert est.b.shape == (96 * 96, 1) and np.all(np.asarray(est.f) == 1)
    np.testing.assert_allclose(est.b[:, 0], ps.ring.b0())
    xr.open_zarr(tmp_path / "r.zarr", group="corr_pnr", consolidated=False)["seeds"].load()


@pytest.mark.slow
def test_del_duplicates_keeps_a_patch_to_its_tile_otherwise_merging_does(client, movie96):
    movie, _ = movie96
    kept = fit(_dask_movie(movie), BASE.replace(**SMALL))
    every = fit(_dask_movie(movie), BASE.replace(**SMALL, **{"patch.del_duplicates": False}))
    assert sum(every.n_per_patch) > 1.5 * sum(kept.n_per_patch)


def test_corr_pnr_with_a_low_rank_background_is_refused_in_one_line():
    for bad in ({"init.nb": 2}, {"patch.nb_patch": 1}, {"patch.low_rank_background": True}):
        with pytest.raises(ParamsError, match="corr_pnr.*ring.*nb=0, nb_patch=0 and low_rank_background=None") as e:
            BASE.replace(**bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ParamsError, match="corr_pnr"):
        Params.from_caiman({"method_init": "corr_pnr"})  # CaImAn's two-photon defaults: nb=2


def test_thresholds_that_leave_no_seed_give_an_empty_result_and_say_why(client, movie96, tmp_path):
    movie, _ = movie96
    params = BASE.replace(**{**SMALL, "init.min_pnr": 500.0})
    with pytest.warns(NoSeedsWarning, match=r"no neuron.*min_corr=0.6 and min_pnr=500.0.*largest"):
        est = cnmf(_dask_movie(movie), params, store=str(tmp_path / "r.zarr"))
    assert est.A.shape == (96 * 96, 0) and est.C.shape == (0, 600)
    ds = xr.open_zarr(tmp_path / "r.zarr", consolidated=False, zarr_format=3)
    assert ds.sizes["unit"] == 0 and ds["background_footprints"].shape == (1, 96, 96)


def test_preset_is_caimans_cnmfe_demo():
    p = Params.preset("miniscope")
    assert (p.init.method_init, p.init.K, p.init.gSig, p.init.gSiz, p.init.nb) == ("corr_pnr", None, (3.0, 3.0),
                                                                                   (13, 13), 0)
    assert (p.patch.rf, p.patch.stride, p.patch.low_rank_background, p.patch.nb_patch) == (40, 20, None, 0)
    assert not p.motion.pw_rigid and p.motion.gSig_filt == (3, 3) and not p.quality.use_cnn
    assert Params.preset("miniscope", fr=15.0).data.fr == 15.0 and Params.preset("cnmfe") == p
    with pytest.raises(ParamsError, match="unknown parameter preset 'two'; presets are: cnmfe, miniscope"):
        Params.preset("two")
    assert dataclasses.asdict(Params()) != dataclasses.asdict(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Params.from_dict(p.to_dict())  # round trip (None in low_rank_background)


def test_correlation_and_pnr_images_of_a_movie_in_chunks_match_the_in_memory_ones(client, movie96):
    from calcium_dask.cnmf import correlation_pnr
    from calcium_dask.cnmf.kernels.corr_pnr import corr_pnr_images, filter_frames, psf_kernel

    movie, truth = movie96
    params = BASE.replace(**SMALL)
    images = correlation_pnr(_dask_movie(movie), params)
    f = filter_frames(movie, psf_kernel((3, 3), center_psf=True))
    ref = corr_pnr_images(f - f.mean(0))
    inner = (slice(4, -4), slice(4, -4))
    assert np.corrcoef(images["pnr"].values[inner].ravel(), ref.pnr[inner].ravel())[0, 1] > 0.98
    assert np.corrcoef(images["correlation"].values[inner].ravel(), ref.correlation[inner].ravel())[0, 1] > 0.95
    np.testing.assert_allclose(np.median(images["noise"].values), np.median(ref.noise), rtol=0.05)
    centres = tuple(np.round(truth.centers).astype(int).T)
    assert images["seeds"].values[centres].mean() > 0.8  # the neurons' centres pass both thresholds
    assert images["seeds"].values.mean() < 0.25


def test_a_session_longer_than_a_task_holds_is_fitted_in_time_blocks(client, movie96, tmp_path):
    # a budget that holds a task's patches for a quarter of the session's frames, half of
    # its samples at init.tsub=2: the patches are fitted on 2 time blocks at the user's
    # rate (not on averages of 4 frames), and a neuron is one unit over the blocks
    movie, truth = movie96
    params = BASE.replace(**SMALL)
    whole = fit(_dask_movie(movie), params)
    budgets = (params.replace(**{"patch.memory_fact": float(f)}) for f in 0.8 ** np.arange(60))
    blocked_params = next(p for p in budgets if patch_tsub(movie.shape, p) == 4)
    blocked = fit(_dask_movie(movie), blocked_params)
    assert blocked.tsub == whole.tsub == 2 and blocked.C.shape[1] == 300
    assert whole.spans == [(0, 600)] and blocked.spans == [(0, 300), (300, 600)]
    h = w = 96
    for ps in (whole, blocked):
        sc = score_sources(truth.footprints, truth.C[:, ::2][:, :300], ps.A.toarray().T.reshape(-1, h, w), ps.C)
        assert sc["recall"] >= 0.85, sc
    assert blocked.A.shape[1] <= whole.A.shape[1] + 3
    est = refit(_dask_movie(movie), blocked, blocked_params, store=str(tmp_path / "r.zarr"))
    sc = score_sources(truth.footprints, truth.C, est.A.toarray().T.reshape(-1, h, w), np.asarray(est.C))
    assert sc["recall"] >= 0.85 and sc["trace_corr_median"] > 0.9, sc
