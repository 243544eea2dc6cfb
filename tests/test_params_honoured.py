"""Every parameter that ``calcium-dask params --describe`` lists does what it says.

Each parameter is changed alone from its default (on a base that lets it act: e.g.
``temporal.p_patch`` with patches that do not only initialise) and the stage that reads it
runs on a small simulated movie: the stage's output must differ from the base's. Each stage
is first run twice on the base to show that it is deterministic, so a difference is the
parameter's doing. ``tests/param_reads.py`` lists where each parameter is read; a
parameter nothing reads fails here too. Kernels take their defaults from the registry:
every keyword of a kernel named as a parameter defaults to the parameter's default.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from typing import Any

import dask
import numpy as np
import pytest
import xarray as xr

from calcium_dask.errors import ParamsError
from calcium_dask.params import GROUPS, Params, describe

from .param_reads import reads

ACCEPT_ALL = {"quality.min_SNR": 0.0, "quality.SNR_lowest": 0.0, "quality.cnn_lowest": 0.0}

# parameter -> (changed value, stage, base overrides that let it act)
CHANGES: dict[str, tuple[Any, str, dict[str, Any]]] = {
    "data.fr": (10.0, "patches", {}),
    "data.decay_time": (1.5, "patches", {}),
    "motion.pw_rigid": (False, "motion", {}),
    "motion.max_shifts": ((2, 2), "motion", {}),
    "motion.strides": ((24, 24), "motion", {}),
    "motion.overlaps": ((8, 8), "motion", {}),
    "motion.max_deviation_rigid": (0, "motion", {}),
    "motion.niter_rig": (3, "motion", {}),
    "motion.niter_els": (2, "motion", {}),
    "motion.upsample_factor_grid": (1, "motion", {"motion.strides": (24, 24), "motion.overlaps": (12, 12)}),
    "motion.upsample_factor": (2, "motion", {}),
    "motion.shifts_opencv": (False, "motion", {}),
    "motion.border_nan": (True, "motion", {}),
    "motion.nonneg_movie": (False, "motion", {}),
    "motion.gSig_filt": ((3, 3), "motion", {}),
    "motion.min_mov": (-500.0, "motion", {}),
    "motion.clip_quantile": (None, "motion", {}),
    "motion.num_frames_template": (40, "motion", {}),
    "motion.template_sampling": ("middle", "motion", {"motion.num_frames_template": 40}),
    "motion.save_movie": ("float32", "layout", {}),
    "compute.chunk_frames": (64, "layout", {}),
    "compute.tile": (32, "layout", {}),
    "compute.seed": (7, "patches", {}),
    "preprocess.noise_range": ((0.3, 0.5), "patches", {}),
    "preprocess.noise_method": ("median", "patches", {}),
    "preprocess.max_num_samples_fft": (96, "patches", {}),
    "preprocess.lags": (12, "refit", {}),
    "init.K": (2, "patches", {}),
    "init.gSig": ((3.0, 3.0), "patches", {}),
    "init.gSiz": ((15, 15), "patches", {}),
    "init.nb": (1, "patches", {}),
    "init.ssub": (2, "patches", {}),
    "init.tsub": (2, "patches", {}),
    "init.nIter": (1, "patches", {}),
    "init.maxIter": (0, "patches", {}),
    "init.rolling_sum": (False, "patches", {"init.min_snr_init": None}),
    "init.rolling_length": (10, "patches", {"init.min_snr_init": None}),
    "init.normalize_init": (False, "patches", {}),
    "init.min_snr_init": (None, "patches", {}),
    "patch.rf": ((12, 20), "patches", {}),
    "patch.stride": (14, "patches", {}),
    "patch.only_init": (False, "patches", {}),
    "patch.p_patch": (1, "patches", {"patch.only_init": False}),
    "patch.nb_patch": (2, "patches", {}),
    "patch.border_pix": (4, "patches", {}),
    "patch.memory_fact": (0.001, "patches", {}),
    "spatial.thr_method": ("max", "refit", {}),
    "spatial.maxthr": (0.4, "refit", {"spatial.thr_method": "max"}),
    "spatial.nrgthr": (0.8, "refit", {}),
    "spatial.extract_cc": (False, "refit", {"spatial.nrgthr": 0.999999}),
    "spatial.update_background_components": (False, "refit", {}),
    "temporal.p": (2, "refit", {}),
    "temporal.bas_nonneg": (True, "refit", {}),
    "temporal.fudge_factor": (0.8, "refit", {}),
    "temporal.ITER": (1, "refit", {}),
    "temporal.s_min": (2.0, "refit", {}),
    "temporal.optimize_g": (5, "refit", {}),
    "merging.do_merge": (False, "refit", {"merging.merge_thr": -1.0}),
    "merging.merge_thr": (-1.0, "refit", {}),
    "merging.max_merge_area": (10, "refit", {"merging.merge_thr": -1.0}),
    # evaluation: a base where the other tests cannot accept a unit in its stead
    "quality.min_SNR": (1e3, "evaluate", {"quality.rval_thr": 1.0, "quality.use_cnn": False}),
    "quality.SNR_lowest": (1e3, "evaluate", {}),
    "quality.rval_thr": (-1.0, "evaluate", {"quality.min_SNR": 1e3, "quality.use_cnn": False}),
    "quality.rval_lowest": (0.999, "evaluate", {}),
    "quality.use_cnn": (False, "evaluate", {"quality.min_SNR": 1e3, "quality.rval_thr": 1.0}),
    "quality.min_cnn_thr": (0.0, "evaluate", {"quality.min_SNR": 1e3, "quality.rval_thr": 1.0}),
    "quality.cnn_lowest": (0.999, "evaluate", {}),
    "quality.max_motion_corr": (None, "border", {"quality.max_motion_corr": 0.0}),
    "quality.max_background_corr": (0.0, "evaluate", {"quality.min_SNR": 1e3}),
    "quality.max_spread": (0.5, "evaluate", ACCEPT_ALL),
    # duplicates: a base where every unit is accepted, so that some overlap
    "quality.thresh_subset": (0.05, "evaluate", {"quality.dup_corr_thr": -1.0, **ACCEPT_ALL}),
    "quality.dup_corr_thr": (-1.0, "evaluate", {"quality.thresh_subset": 0.05, **ACCEPT_ALL}),
    "dff.quantileMin": (50.0, "evaluate", {"dff.flag_auto": False}),
    "dff.frames_window": (40, "evaluate", {}),
    "dff.use_residuals": (False, "evaluate", {}),
    "dff.flag_auto": (False, "evaluate", {}),
    "dff.detrend_only": (True, "evaluate", {}),
    "data.dxy": ((2.0, 3.0), "nwb", {}),
}

# checked by another test of the same kind
ELSEWHERE = {
    "data.var_name_hdf5": ("test_pipeline.py", "test_var_name_hdf5_names_the_movie_in_an_hdf5_file"),
    "preprocess.check_nan": ("test_params_honoured.py", "test_check_nan_fills_or_refuses_missing_pixels"),
    **{f"data.{k}": ("test_fields.py", "test_the_layout_parameters_choose_the_field_of_view")
       for k in ("nplanes", "nchannels", "functional_chan", "align_by_chan")},
    **{k: ("tracking/test_params.py", "test_each_tracking_parameter_changes_the_tracking")
       for k in ("tracking.reference", "tracking.align_image", "tracking.max_rotation", "tracking.align_nonrigid",
                 "tracking.nonrigid_spacing", "tracking.max_deformation", "tracking.min_overlap",
                 "tracking.min_align_corr", "tracking.mask_thr", "tracking.overlap", "tracking.max_dist",
                 "tracking.dist_weight", "tracking.thresh_cost", "tracking.min_link")},
    "tracking.only_accepted": ("tracking/test_params.py", "test_only_accepted_tracks_the_rejected_units_too"),
    **{f"init.{k}": ("cnmf/test_cnmfe.py", "test_every_cnmfe_parameter_changes_the_result")
       for k in ("min_corr", "min_pnr", "ring_size_factor", "ssub_B", "center_psf", "init_iter")},
    "patch.del_duplicates": ("cnmf/test_cnmfe.py", "test_del_duplicates_keeps_a_patch_to_its_tile_otherwise_merging_does"),
    "motion.smooth_sigma_time": ("motion/test_onephoton.py",
                                 "test_temporal_smoothing_recovers_slow_motion_from_noisy_frames"),
    "motion.snr_thresh": ("motion/test_onephoton.py", "test_insignificant_peaks_take_their_neighbours_shifts"),
}

# one accepted value (the others are refused, as checked below): it cannot change results
SINGLE = {"init.method_init": "corr_pnr", "patch.low_rank_background": False}

# CNMF-E's values of the two above (corr_pnr, low_rank_background=None): its tests
# (cnmf/test_cnmfe.py) show what they do
CNMFE = {"init.method_init", "patch.low_rank_background"}


# -- the stages, on one small movie --------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def _local_scheduler():
    from calcium_dask.compute import is_quiet, set_quiet

    quiet = is_quiet()
    set_quiet(True)
    with dask.config.set(scheduler="synchronous"):
        yield
    set_quiet(quiet)


@pytest.fixture(scope="module")
def movie() -> xr.DataArray:
    from calcium_dask.datasets import SimulationParams, simulate

    sp = SimulationParams.preset("small", T=200, H=64, W=64, K=10, seed=5)
    frames, _ = simulate(sp)
    return _array(frames)


def _array(frames: np.ndarray) -> xr.DataArray:
    import dask.array as da

    return xr.DataArray(da.from_array(frames, chunks=(100, -1, -1)), dims=("frame", "y", "x"),
                        attrs={"fr": 30.0, "source": "simulated"})


def _params(**changes: Any) -> Params:
    return Params().replace(**changes) if changes else Params()


def _motion(movie, params) -> dict[str, np.ndarray]:
    from calcium_dask.motion import motion_correct

    res = motion_correct(movie, params)
    out = {k: res.motion[k].values for k in res.motion.data_vars}
    out["corrected"] = res.corrected.values
    return out


@pytest.fixture(scope="module")
def base_motion(movie):
    return _motion(movie, Params())


@pytest.fixture(scope="module")
def corrected(base_motion) -> xr.DataArray:
    """The corrected movie's centre (48 x 48: four CNMF patches, 16 units, 4 accepted)."""
    return _array(np.ascontiguousarray(np.nan_to_num(base_motion["corrected"])[:, 8:56, 8:56]))


def _patches(corrected, params):
    from calcium_dask import cnmf

    return cnmf.fit(corrected, params)


def _patch_arrays(ps) -> dict[str, np.ndarray]:
    return {"A": ps.A.toarray(), "C": ps.C, "b": ps.b, "f": ps.f, "sn": ps.sn}


@pytest.fixture(scope="module")
def base_patches(corrected):
    return _patches(corrected, Params())


def _refit(corrected, patches, params):
    from calcium_dask import cnmf

    return cnmf.refit(corrected, patches, params)


def _refit_arrays(est) -> dict[str, np.ndarray]:
    return {"A": est.A.toarray(), "C": np.asarray(est.C), "S": np.asarray(est.S), "b": est.b,
            "f": np.asarray(est.f), "g": est.ds["ar_coefficients"].values}


@pytest.fixture(scope="module")
def base_estimates(corrected, base_patches):
    return _refit(corrected, base_patches, Params())


def _evaluate(corrected, estimates, params, motion=None) -> dict[str, np.ndarray]:
    from calcium_dask.evaluation.orchestrate import evaluate_components

    ev = evaluate_components(corrected, estimates.ds, params, motion)
    return {k: np.asarray(ev[k].values) for k in ev.data_vars}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        np.shape(a[k]) == np.shape(b[k]) and np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f")
        for k in a)


def _run(stage: str, params: Params, movie, corrected, base_patches, base_estimates, tmp_path):
    if stage == "motion":  # its first 100 frames: half the time, and as telling
        return _motion(movie[:100], params)
    if stage == "patches":
        return _patch_arrays(_patches(corrected, params))
    if stage == "refit":
        return _refit_arrays(_refit(corrected, base_patches, params))
    if stage == "evaluate":
        return _evaluate(corrected, base_estimates, params)
    if stage == "border":  # shifts as large as the frame: every unit lies in the filled border
        motion = xr.Dataset({"shifts": (("frame", "axis"), np.full((corrected.shape[0], 2), 40.0))})
        return _evaluate(corrected, base_estimates, params, motion)
    if stage == "layout":
        return _layout(movie, params, tmp_path)
    if stage == "nwb":
        return _nwb(corrected, base_estimates, params, tmp_path)
    raise AssertionError(stage)


def _layout(movie, params, tmp_path) -> dict[str, np.ndarray]:
    """The chunks of the corrected movie a store receives."""
    from calcium_dask.motion import motion_correct
    from calcium_dask.store import ResultsStore

    url = str(tmp_path / f"layout_{params.compute.chunk_frames}_{params.compute.tile}_{params.motion.save_movie}.zarr")
    motion_correct(movie[:128], params, store=ResultsStore(url))
    arr = ResultsStore(url).array("movie/corrected")
    return {"chunks": np.array(arr.chunks), "dtype": np.array(str(arr.dtype))}


def _nwb(corrected, estimates, params, tmp_path) -> dict[str, np.ndarray]:
    """The grid spacing of the NWB file exported from results made with ``params``."""
    pynwb = pytest.importorskip("pynwb")
    from calcium_dask.results import Results

    ds = estimates.ds.assign_attrs(params=params.to_dict(), fr=30.0)
    path = str(tmp_path / f"r_{params.data.dxy[0]}.nwb")
    Results(ds).to_nwb(path)
    with pynwb.NWBHDF5IO(path, "r") as io:
        return {"grid_spacing": np.asarray(io.read().imaging_planes["ImagingPlane"].grid_spacing[:])}


# -- the tests -------------------------------------------------------------------------------

def test_every_listed_parameter_is_checked_here_or_named():
    listed = {key for key, _, _ in describe()}
    checked = set(CHANGES) | set(ELSEWHERE) | set(SINGLE)
    assert listed - checked - CNMFE == set(), "parameters without a test that they change the result"
    assert checked - listed == set(), "tests of parameters that are not listed"


def test_every_listed_parameter_is_read_somewhere():
    unread = {key for key, places in reads().items() if not places}
    assert unread <= set(SINGLE), unread  # a single-valued parameter has nothing to decide


@pytest.mark.parametrize("key", sorted(ELSEWHERE))
def test_parameters_checked_elsewhere_are(key):
    import ast
    from pathlib import Path

    file, name = ELSEWHERE[key]
    tree = ast.parse((Path(__file__).parent / file).read_text())
    assert name in {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("key", sorted(SINGLE))
def test_single_valued_parameters_refuse_the_others(key):
    try:
        Params().replace(**{key: SINGLE[key]})
    except ParamsError as e:
        assert key.split(".")[1] in str(e)
    else:  # offered since (CNMF-E's branch): its own tests show what the value does
        assert key in CNMFE, key


@pytest.mark.parametrize("stage", ["motion", "patches", "refit", "evaluate"])
def test_each_stage_is_deterministic(stage, movie, corrected, base_patches, base_estimates, tmp_path):
    args = (movie, corrected, base_patches, base_estimates, tmp_path)
    assert _same(_run(stage, Params(), *args), _run(stage, Params(), *args))


_BASES: dict[tuple, dict[str, np.ndarray]] = {}  # (stage, base overrides) -> result: each base runs once


@pytest.mark.parametrize("key", sorted(CHANGES))
def test_changing_a_parameter_changes_the_result(key, movie, corrected, base_patches, base_estimates, tmp_path):
    value, stage, base = CHANGES[key]
    args = (movie, corrected, base_patches, base_estimates, tmp_path)
    cached = (stage, tuple(sorted(base.items())))
    if cached not in _BASES:
        _BASES[cached] = _run(stage, _params(**base), *args)
    before = _BASES[cached]
    after = _run(stage, _params(**{**base, key: value}), *args)
    assert not _same(before, after), f"{key}={value!r} left the {stage} result unchanged"


def test_check_nan_fills_or_refuses_missing_pixels(movie):
    from calcium_dask.errors import MovieError

    frames = np.array(movie[:64].values, np.float32)
    frames[10, 5, 5] = np.nan
    holed = _array(frames)
    filled = _motion(holed, Params())["corrected"]
    assert np.isfinite(filled[10, 5:-5, 5:-5]).all()
    with pytest.raises(MovieError, match="non-finite|NaN"):
        _motion(holed, Params().replace(**{"preprocess.check_nan": False}))


# -- kernels take their defaults from the registry -------------------------------------------

# keyword of a kernel -> the parameter it is, where the names differ
ALIASES = {
    ("cnmf.kernels.fit", "fit_patch", "nb"): "patch.nb_patch",
    ("cnmf.kernels.fit", "fit_patch", "p"): "patch.p_patch",
    ("cnmf.kernels.fit", "fit_patch", "temporal_iterations"): "temporal.ITER",
    ("cnmf.kernels.init", "greedy_roi", "nb"): "patch.nb_patch",
    ("cnmf.kernels.init", "initialize_components", "nb"): "patch.nb_patch",
    ("cnmf.kernels.temporal", "update_temporal", "iterations"): "temporal.ITER",
    ("cnmf.kernels.spatial", "update_spatial", "update_background"): "spatial.update_background_components",
    ("evaluation.kernels.duplicates", "find_duplicates", "corr_thr"): "quality.dup_corr_thr",
    ("cnmf.kernels.background", "low_rank_background", "seed"): "compute.seed",
    ("tracking.kernels.align", "align_images", "min_corr"): "tracking.min_align_corr",
}
# keywords named as a parameter whose default deliberately is not the parameter's
NOT_THE_PARAMETER = {
    ("cnmf.kernels.fit", "fit_patch", "min_snr_init"):
        "None is CaImAn's greedy_roi (K seeds); the stop at 4 noise SDs is calibrated with the pipeline's "
        "detrended seeding (detrend_window, decay_frames, remove_common, remove_motion), off by default here",
    ("motion.kernels.cache", "prepare_template", "strides"): "None: no patch grid (a rigid template)",
    ("motion.kernels.cache", "prepare_template", "overlaps"): "None: no patch grid (a rigid template)",
    ("motion.kernels.cache", "prepare_template", "clip_quantile"): "None: the template's raw intensities",
    ("motion.kernels.cache", "TemplateCache", "strides"): "a record of what the template was prepared with",
    ("motion.kernels.cache", "TemplateCache", "overlaps"): "a record of what the template was prepared with",
    ("motion.kernels.cache", "TemplateCache", "clip_quantile"): "a record of what the template was prepared with",
}


def _kernel_keywords():
    import calcium_dask

    registry = {f.name: [g] for g, cls in GROUPS.items() for f in dataclasses.fields(cls)}
    for info in pkgutil.walk_packages(calcium_dask.__path__, "calcium_dask."):
        if ".kernels" not in info.name:
            continue
        module = importlib.import_module(info.name)
        where = info.name.removeprefix("calcium_dask.")
        for name, fn in vars(module).items():
            if name.startswith("_") or not callable(fn) or getattr(fn, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(fn) and issubclass(fn, BaseException):
                continue  # an error type has no options
            for arg in inspect.signature(fn).parameters.values():
                if arg.default is inspect.Parameter.empty:
                    continue
                key = ALIASES.get((where, name, arg.name))
                if key is None and arg.name in registry and len(registry[arg.name]) == 1:
                    key = f"{registry[arg.name][0]}.{arg.name}"
                if key is not None:
                    yield where, name, arg.name, arg.default, key


def _as_registered(value: Any, default: Any) -> Any:
    """A kernel default in the registry's form: one value for both axes as a pair."""
    if isinstance(default, tuple) and not isinstance(value, tuple) and value is not None:
        return tuple(type(d)(value) for d in default)
    return value


def test_kernel_defaults_are_the_registry_defaults():
    defaults = {k: d for k, d, _ in describe()}
    wrong, seen = [], set()
    for where, name, arg, value, key in _kernel_keywords():
        seen.add((where, name, arg))
        if (where, name, arg) in NOT_THE_PARAMETER:
            continue
        if _as_registered(value, defaults[key]) != defaults[key]:
            wrong.append(f"{where}.{name}({arg}={value!r}): {key} is {defaults[key]!r}")
    assert not wrong, "; ".join(wrong)
    assert set(ALIASES) | set(NOT_THE_PARAMETER) <= seen, "stale entries"
    assert len(seen) > 80  # the walk found the kernels


def test_the_defaults_check_finds_a_disagreement(monkeypatch):
    from calcium_dask.evaluation.kernels import select

    def accept(snr, r_values, cnn_pred=None, *, min_SNR=2.5):  # CaImAn's 2.5, not the registry's
        return snr > min_SNR

    monkeypatch.setattr(select, "accept", accept)
    accept.__module__ = select.__name__
    with pytest.raises(AssertionError, match="min_SNR=2.5"):
        test_kernel_defaults_are_the_registry_defaults()
