"""CaImAn's parameter dicts load unchanged, in every form CaImAn accepts, and whatever
calcium-dask does not implement is named in one warning line."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from calcium_dask.caiman_params import CAIMAN_KEYS, WHOLE_GROUPS
from calcium_dask.cli import main
from calcium_dask.errors import IgnoredParametersWarning
from calcium_dask.params import GROUPS, Params, describe

from .caiman_dicts import DEFAULTS, DEMO_JSON, DEMO_NOTEBOOK, defaults_flat, defaults_to_dict

# the keys of CaImAn's defaults whose values ask for something calcium-dask does not do
NOT_IMPLEMENTED = {"method_ls": "'lasso_lars'", "normalize_yyt_one": True,
                   "shifts_interpolate": False}


def _load(d) -> tuple[Params, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = Params.from_caiman(d)
    return p, [str(w.message) for w in caught if issubclass(w.category, IgnoredParametersWarning)]


def _named(message: str) -> set[str]:
    """The keys a warning names (``group.key=value``: the key without its group)."""
    return {m.rpartition(".")[2] for m in re.findall(r"([\w.]+)=", message.split(";")[0])}


@pytest.mark.parametrize("form", ["groups", "to_dict", "flat"])
def test_caimans_default_dict_loads_in_every_form(form):
    d = {"groups": DEFAULTS, "to_dict": defaults_to_dict(), "flat": defaults_flat()}[form]
    p, messages = _load(d)
    assert (p.init.K, p.init.gSig, p.init.nb, p.init.ssub, p.init.tsub) == (30, (5.0, 5.0), 1, 2, 2)
    assert (p.patch.rf, p.patch.stride, p.temporal.p, p.merging.merge_thr) == (None, None, 2, 0.8)
    assert (p.quality.min_SNR, p.quality.cnn_lowest, p.motion.pw_rigid) == (2.5, 0.1, False)
    assert (p.motion.strides, p.motion.overlaps, p.temporal.optimize_g) == ((96, 96), (32, 32), False)
    assert p.data.dxy == (1.0, 1.0) and p.preprocess.noise_range == (0.25, 0.5)
    assert len(messages) == 1 and "\n" not in messages[0]  # one line
    assert _named(messages[0]) == set(NOT_IMPLEMENTED)
    assert "set twice" not in messages[0]  # p, nb, lags, noise_* agree across CaImAn's groups


def test_the_demo_notebooks_dict_loads_quietly_numpy_arrays_and_all():
    p, messages = _load(DEMO_NOTEBOOK)
    assert messages == []
    assert p.init.gSig == (4.0, 4.0) and p.init.gSiz == (9, 9) and p.gSiz() == (9, 9)
    assert (p.patch.rf, p.patch.stride, p.init.K, p.init.nb, p.temporal.p) == (15, 6, 4, 2, 1)
    assert p.temporal.bas_nonneg is True and p.quality.min_cnn_thr == 0.99 and p.motion.pw_rigid is True


def test_the_demo_scripts_grouped_json_is_the_notebooks_dict():
    assert _load(DEMO_JSON) == _load(DEMO_NOTEBOOK)


def test_numpy_scalars_and_arrays_are_plain_values():
    d = {"fr": np.float32(15.5), "K": np.int64(6), "pw_rigid": np.bool_(False), "method_init": np.str_("greedy_roi"),
         "max_shifts": np.array([5, 7]), "noise_range": np.array([0.3, 0.5]), "merge_thr": np.array(0.7),
         "rf": np.array([12, 20]), "stride": np.int32(5), "optimize_g": np.int64(3)}
    p, messages = _load(d)
    assert messages == []
    assert (p.data.fr, p.init.K, p.motion.pw_rigid, p.init.method_init) == (15.5, 6, False, "greedy_roi")
    assert (p.motion.max_shifts, p.preprocess.noise_range, p.merging.merge_thr) == ((5, 7), (0.3, 0.5), 0.7)
    assert (p.patch.rf, p.patch.stride, p.temporal.optimize_g) == ((12, 20), 5, 3)
    assert type(p.init.K) is int and type(p.data.fr) is float  # no numpy types left
    assert Params.from_dict(p.to_dict()) == p  # and they round-trip


def test_per_axis_values_take_one_value_for_both_axes():
    p, _ = _load({"gSig": 3, "gSiz": 7, "max_shifts": 4, "strides": 32, "overlaps": 16, "dxy": 0.8,
                  "rf": [10, 14], "stride": (4, 6)})
    assert (p.init.gSig, p.init.gSiz, p.motion.max_shifts) == ((3.0, 3.0), (7, 7), (4, 4))
    assert (p.motion.strides, p.motion.overlaps, p.data.dxy) == ((32, 32), (16, 16), (0.8, 0.8))
    assert (p.patch.rf, p.patch.stride) == ((10, 14), (4, 6))


def test_per_axis_patches_follow_rf_and_stride_per_axis():
    from calcium_dask.cnmf.kernels.grid import patch_boxes

    boxes = patch_boxes((40, 60), (10, 15), (4, 6))
    assert {b[1] - b[0] for b in boxes} == {20} and {b[3] - b[2] for b in boxes} == {30}
    ys, xs = sorted({b[0] for b in boxes}), sorted({b[2] for b in boxes})
    assert ys == [0, 16, 20] and xs == [0, 24, 30]  # steps 2 rf - stride, the last flush
    assert patch_boxes((40, 60), 10, 4) == patch_boxes((40, 60), (10, 10), (4, 4))


def test_a_key_set_in_two_caiman_groups_uses_the_one_calcium_dask_reads_and_names_the_other():
    p, messages = _load({"preprocess": {"p": 2, "noise_method": "median"}, "temporal": {"p": 1}})
    assert p.temporal.p == 1 and p.preprocess.noise_method == "median"
    (message,) = messages
    assert "preprocess.p=2 (temporal.p=1 is used)" in message and "noise_method" not in message


def test_quiet_keys_are_quiet_and_fixed_keys_with_calcium_dasks_value_load():
    quiet = {"n_processes": 8, "block_size_spat": 1000, "splits_rig": 3, "mmap_F": ["a.mmap"], "use_cuda": True,
             "solvers": ["SCS"], "dist": 2, "method_deconvolution": "oasis", "method_exp": "dilate",
             "is3D": False, "remove_very_bad_comps": False, "indices": (slice(None), slice(None)),
             "online": {"min_SNR": 9, "epochs": 3}, "ring_CNN": {"lr": 0.1}, "shifts_interpolate": True}
    p, messages = _load(quiet)
    assert messages == [] and p == Params.from_caiman({})


@pytest.mark.parametrize("key, value", [("method_ls", "nnls_L0"), ("sn", np.ones(4)), ("indices", (slice(0, 10),) * 2),
                                        ("use_ecc", True), ("kernel", np.ones((3, 3))), ("p_ssub", 1)])
def test_a_key_that_changes_caimans_results_is_named_or_is_quiet_when_it_cannot(key, value):
    _, messages = _load({key: value})
    if CAIMAN_KEYS[key].kind == "ignored":
        assert messages == []
    else:
        (message,) = messages
        assert _named(message) == {key}


def test_every_caiman_default_key_is_classified():
    registry = {k.partition(".")[2] for k, _, _ in describe()}
    for group, values in DEFAULTS.items():
        for key in values:
            assert key in registry or key in CAIMAN_KEYS or group in WHOLE_GROUPS, f"{group}.{key}"
    assert {e.group for e in CAIMAN_KEYS.values()} <= set(DEFAULTS)
    # a key the registry holds sets it, whatever the table says (another branch may add some)
    for key in registry & set(CAIMAN_KEYS):
        _, messages = _load({key: DEFAULTS[CAIMAN_KEYS[key].group][key]})
        assert messages == []


def test_strict_dicts_take_only_the_registrys_names():
    with pytest.raises(Exception, match="unknown parameter 'n_processes'"):
        Params.from_dict({"n_processes": 2})
    with pytest.raises(Exception, match="unknown parameter 'data.fnames'"):
        Params().replace(**{"data.fnames": "a.tif"})
    assert set(Params().to_dict()) == set(GROUPS)


def test_the_cli_prints_the_warning_once(tmp_path, capsys):
    path = tmp_path / "caiman.yaml"
    path.write_text("init_params: {K: 5}\nspatial_params: {method_ls: nnls_L0}\n"
                    "preprocess_params: {p: 2}\ntemporal_params: {p: 1}\n")
    with pytest.raises(SystemExit) as e:
        main(["params", "--params", str(path), "--set", "K=6"])
    err = capsys.readouterr().err
    assert e.value.code == 0
    assert err.count("calcium-dask: warning:") == 1 and err.count("\n") == 1
    assert "spatial_params.method_ls='nnls_L0'" in err and "preprocess_params.p=2" in err


def test_the_cli_lists_what_calcium_dask_does_with_caimans_other_keys(capsys):
    with pytest.raises(SystemExit):
        main(["params", "--caiman"])
    out = capsys.readouterr().out
    assert re.search(r"^spatial\.method_ls +unsupported +CaImAn's spatial update", out, re.M)
    assert re.search(r"^online\.\* +ignored", out, re.M) and "init.K " not in out
