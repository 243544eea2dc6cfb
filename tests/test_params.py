"""Parameters: CaImAn's names and dicts, validation, YAML/JSON round trips, overrides."""

from __future__ import annotations

import json

import pytest

from calcium_dask import Params, ParamsError
from calcium_dask.params import describe

# the parameter dict of CaImAn's demo_pipeline notebook, as a CaImAn user has it
CAIMAN_DEMO = {
    "fnames": ["Sue_2x_3000_40_-46.tif"], "fr": 30, "decay_time": 0.4, "dxy": (2.0, 2.0),
    "pw_rigid": True, "max_shifts": (6, 6), "strides": (48, 48), "overlaps": (24, 24),
    "max_deviation_rigid": 3, "border_nan": "copy", "p": 1, "nb": 2, "rf": 15, "K": 4,
    "gSig": [4, 4], "gSiz": [9, 9], "stride": 10, "method_init": "greedy_roi", "rolling_sum": True,
    "only_init": True, "ssub": 1, "tsub": 1, "merge_thr": 0.85, "min_SNR": 2.0, "rval_thr": 0.85,
    "use_cnn": True, "min_cnn_thr": 0.99, "cnn_lowest": 0.1, "n_processes": 2,
}


def test_caiman_demo_dict_unchanged():
    p = Params.from_caiman(CAIMAN_DEMO)
    assert p.data.fr == 30.0 and p.data.dxy == (2.0, 2.0)
    assert p.motion.pw_rigid is True and p.motion.strides == (48, 48) and p.motion.border_nan == "copy"
    assert p.temporal.p == 1 and p.init.nb == 2 and p.init.K == 4 and p.init.gSig == (4.0, 4.0)
    assert p.patch.rf == 15 and p.patch.stride == 10 and p.patch.only_init is True
    assert p.merging.merge_thr == 0.85 and p.quality.min_cnn_thr == 0.99
    assert "fnames" not in p.to_dict()["data"]  # recorded by CaImAn, given to open_movie here


def test_caiman_nested_dict():
    p = Params.from_caiman({"motion": {"pw_rigid": True, "max_shifts": [4, 5]},
                            "temporal": {"p": 2, "block_size_temp": 5000}})
    assert p.motion.max_shifts == (4, 5) and p.temporal.p == 2


def test_strict_rejects_caiman_only_keys():
    with pytest.raises(ParamsError, match="n_processes"):
        Params.from_dict({"n_processes": 2})


def test_caiman_execution_keys_load_and_change_nothing():
    import warnings

    keys = {"splits_rig": 7, "num_frames_split": 40, "n_processes": 4, "dist": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # quietly
        assert Params.from_caiman(keys) == Params()
    with pytest.raises(ParamsError, match="splits_rig"):
        Params.from_dict({"splits_rig": 7})


def test_defaults_are_caimans_demo_pipeline_for_two_photon_movies():
    p = Params()
    assert p.motion.pw_rigid and p.motion.max_shifts == (6, 6) and p.motion.border_nan == "copy"
    assert (p.motion.strides, p.motion.overlaps, p.motion.max_deviation_rigid) == ((48, 48), (24, 24), 3)
    assert (p.patch.rf, p.patch.stride, p.init.K, p.init.gSig, p.init.nb) == (15, 10, 4, (4.0, 4.0), 2)
    assert p.merging.merge_thr == 0.85 and p.temporal.p == 1 and p.init.method_init == "greedy_roi"
    assert (p.quality.min_SNR, p.quality.rval_thr, p.quality.min_cnn_thr) == (2.0, 0.8, 0.9)
    assert p.quality.cnn_lowest == 0.2  # not 0.1: calibrated for this package's classifier
    assert p.gSiz() == (9, 9) and Params.from_dict({"gSig": 5}).gSiz() == (11, 11)


@pytest.mark.parametrize("bad, message", [
    ({"merge_thrr": 0.8}, "did you mean 'merge_thr'"),
    ({"motion.max_shift": (6, 6)}, "did you mean 'motion.max_shifts'"),
    ({"K": "four"}, "expects int"),
    ({"pw_rigid": "yes"}, "expects true or false"),
    ({"gSig": [1, 2, 3]}, "expects 2 values"),
    ({"p": 3}, "out of range"),
    ({"merge_thr": 1.5}, "out of range"),
    ({"rf": 1}, "out of range"),
    ({"border_nan": "nan"}, "border_nan"),
    ({"noise_method": "max"}, "must be one of"),
    ({"fr": -30}, "out of range"),
    ({"nb": 2.5}, "expects an integer"),
    ({"method_init": "sparse_nmf"}, "must be one of"),  # not offered: no silent fallback
    ({"method_init": "corr_pnr"}, "corr_pnr.*nb=0, nb_patch=0 and low_rank_background=None"),
])
def test_bad_values(bad, message):
    with pytest.raises(ParamsError, match=message):
        Params.from_dict(bad)


@pytest.mark.parametrize("bad, message", [
    ({"method_exp": "ellipse"}, "'method_exp' = 'ellipse' is not supported: .*only CaImAn's 'dilate'"),
    ({"spatial": {"method_exp": "ellipse"}}, "'spatial.method_exp' = 'ellipse' is not supported"),
    ({"method_deconvolution": "cvxpy"}, "only OASIS"),
    ({"is3D": True}, "one plane at a time"),
    ({"low_rank_background": False}, "one background per patch .* not implemented"),
    ({"gSig": [4, 4, 2]}, "expects 2 values \\(y, x\\), got 3: calcium-dask processes 2-D movies"),
    ({"rf": [15, 15, 5]}, "'patch.rf' expects 2 values"),
    ({"max_shifts": [6]}, "expects 2 values \\(y, x\\), got 1$"),
    ({"n_procesess": 2}, "neither calcium-dask's nor CaImAn's.*did you mean 'n_processes'"),
    ({"online": {"min_SNR": 2}, "min_SNRR": 2}, "did you mean 'min_SNR'"),
])
def test_caiman_values_calcium_dask_does_not_offer_are_refused_by_name(bad, message):
    with pytest.raises(ParamsError, match=message):
        Params.from_caiman(bad)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip(tmp_path, suffix):
    p = Params.from_caiman(CAIMAN_DEMO)
    path = tmp_path / f"p{suffix}"
    p.save(path)
    assert Params.load(path) == p
    if suffix == ".json":
        assert json.loads(path.read_text())["motion"]["strides"] == [48, 48]


def test_load_flat_yaml_and_errors(tmp_path):
    f = tmp_path / "flat.yml"
    f.write_text("fr: 15\npw_rigid: true\ngSig: [3, 3]\n")
    assert Params.load(f).init.gSig == (3.0, 3.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ParamsError, match=f"{bad}: expected a mapping"):
        Params.load(bad)
    with pytest.raises(ParamsError, match="cannot read"):
        Params.load(tmp_path / "missing.yaml")
    evil = tmp_path / "evil.yaml"
    evil.write_text("!!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        Params.load(evil)


def test_overrides_and_immutability():
    p = Params()
    q = p.with_overrides(["motion.pw_rigid=false", "K=7", "gSig=[3, 3]", "rf=null"])
    assert not q.motion.pw_rigid and q.init.K == 7 and q.init.gSig == (3.0, 3.0) and q.patch.rf is None
    assert p.init.K == 4 and p.motion.pw_rigid  # the original is untouched
    with pytest.raises(Exception):
        p.motion.pw_rigid = True  # frozen
    with pytest.raises(ParamsError, match="key=value"):
        p.with_overrides(["pw_rigid"])
    with pytest.raises(ParamsError, match="did you mean 'motion.pw_rigid'"):
        p.with_overrides(["motion.pw_rigd=true"])


def test_registry_documents_every_parameter():
    rows = describe()
    assert len(rows) > 60 and all(doc for _, _, doc in rows)
    assert ("motion.max_shifts", (6, 6)) in [(k, d) for k, d, _ in rows]


def test_a_parameter_preset_by_name_on_the_command_line():
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("calcium-dask")

    def run(*args):
        return subprocess.run([str(exe), "params", *args], capture_output=True, text=True)

    ok = run("--params", "miniscope", "--set", "init.min_pnr=7")
    assert ok.returncode == 0 and "method_init: corr_pnr" in ok.stdout and "min_pnr: 7.0" in ok.stdout
    bad = run("--params", "nosuch")
    assert bad.returncode == 2 and "nosuch: no such parameter file, nor a parameter preset (cnmfe, miniscope)" in \
        bad.stderr
