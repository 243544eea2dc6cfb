"""Bad movies: the pipeline gives sensible output or one clear line, never a crash from deep inside.

Each movie is a small simulation (or no neurons at all) spoiled in one way, saved as ``.npy``
and run through every stage on the session's cluster. "Sensible" means: every stage marked
complete, finite non-negative footprints, finite traces and dF/F, non-negative spikes, and
units where there are neurons (none accepted where there are none). The alternative is a
:class:`~calcium_dask.CalciumDaskError` whose message is one line (what the CLI prints,
with exit code 2).

Then property tests (hypothesis) of three kernels the pipeline trusts: rigid registration
finds a planted shift, deconvolution returns finite non-negative activity, and summary
partial sums add up the same way in any split of the frames.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.ndimage import gaussian_filter

from calcium_dask import CalciumDaskError, Params
from calcium_dask.datasets import SimulationParams, simulate
from calcium_dask.pipeline import run_pipeline
from calcium_dask.compute import set_quiet
from calcium_dask.results import open_results

from .conftest import PARAMS

Maker = Callable[[np.ndarray], np.ndarray]


@pytest.fixture(scope="module")
def base() -> np.ndarray:
    """200 frames of 64x64 uint16 with 6 neurons."""
    movie, _ = simulate(SimulationParams.preset("small", T=200, H=64, W=64, K=6, seed=3))
    return movie


def _with(dtype, fn: Callable[[np.ndarray], None]) -> Maker:
    def make(base: np.ndarray) -> np.ndarray:
        m = base.astype(dtype)
        fn(m)
        return m
    return make


def _sim(**kw) -> Maker:
    return lambda base: simulate(SimulationParams.preset("small", T=200, seed=3, **kw))[0]


def _no_neurons(base: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    background = 200 + 50 * np.sin(yy / 10) * np.cos(xx / 13)  # smooth, static
    return rng.poisson(np.broadcast_to(background, (200, 64, 64))).astype(np.uint16)


def _set(sl, value):
    def fn(m):
        m[sl] = value
    return fn


# name, movie maker, neurons in it (None: degenerate, a clear error is as good as a run)
CASES = [
    pytest.param("nan_block", _with(np.float32, _set(np.s_[50:60, 10:14, 20:24], np.nan)), True,
                 id="nan-pixels-in-10-frames"),
    pytest.param("nan_pixel", _with(np.float32, _set(np.s_[:, 30, 30], np.nan)), True, id="nan-pixel-every-frame"),
    pytest.param("inf", _with(np.float32, _set(np.s_[70, 5:9, 5:9], np.inf)), True, id="inf-pixels"),
    pytest.param("constant_frames", _with(np.uint16, _set(np.s_[100:105], 500)), True, id="constant-frames"),
    pytest.param("zero_frames", _with(np.uint16, _set(np.s_[100:105], 0)), True, id="all-zero-frames"),
    pytest.param("all_zero", lambda b: np.zeros((200, 64, 64), np.uint16), False, id="all-zero-movie"),
    pytest.param("all_constant", lambda b: np.full((200, 64, 64), 300, np.uint16), False, id="constant-movie"),
    pytest.param("five_frames", lambda b: b[:5].copy(), None, id="5-frames"),
    pytest.param("tiny", _sim(H=20, W=20, K=1), True, id="20x20-smaller-than-a-patch"),
    pytest.param("odd", _sim(H=67, W=91, K=8), True, id="67x91"),
    pytest.param("int8", lambda b: (b.astype(np.int32) // 16 - 100).clip(-128, 127).astype(np.int8), True,
                 id="int8"),
    pytest.param("float64", lambda b: b.astype(np.float64), True, id="float64"),
    pytest.param("saturated", _with(np.uint16, _set(np.s_[:, 40:50, 40:50], 65535)), True,
                 id="uint16-65535-region"),
    pytest.param("huge_region", _with(np.float32, _set(np.s_[:, 40:50, 40:50], 1e30)), True,
                 id="float32-1e30-region"),
    pytest.param("huge_scale", lambda b: b.astype(np.float32) * np.float32(1e30), None,
                 id="float32-scaled-to-1e30"),
    pytest.param("no_neurons", _no_neurons, False, id="no-neurons"),
]


@pytest.mark.parametrize("name, make, neurons", CASES)
def test_bad_movie(client, base, tmp_path, name, make, neurons):
    movie = make(base)
    path = tmp_path / f"{name}.npy"
    np.save(path, movie)
    out = str(tmp_path / "r.zarr")
    set_quiet(True)
    try:
        run_pipeline(str(path), out, PARAMS)
    except CalciumDaskError as e:  # the acceptable way to stop: one clear line
        msg = str(e)
        assert msg and "\n" not in msg and len(msg) < 500, msg
        assert neurons is not True, f"a movie with neurons was refused: {msg}"
        return
    finally:
        set_quiet(False)
    res = open_results(out)
    ds = res.ds
    assert set(res.store.stages()) == {"motion", "cnmf", "evaluate"}
    fp = ds["footprints"].values
    assert np.isfinite(fp).all() and (fp >= 0).all()
    for var in ("traces", "spikes", "residuals", "dff", "snr", "r_value", "cnn_pred"):
        assert np.isfinite(ds[var].values).all(), var
    assert (ds["spikes"].values >= -1e-6 * max(1.0, float(np.abs(ds["spikes"].values).max(initial=0)))).all()
    assert ds["traces"].sizes["frame"] == movie.shape[0]
    n_units, n_accepted = ds.sizes["unit"], len(res.idx_components)
    if neurons:
        assert n_accepted >= 1, f"{n_units} units, none accepted"
    elif neurons is False:
        assert n_accepted == 0, f"{n_accepted} units accepted in a movie without neurons"
    motion = res.motion
    assert np.isfinite(motion["shifts"].values).all()
    assert (np.abs(motion["shifts"].values) <= np.asarray(PARAMS.motion.max_shifts) + 1e-3).all()


def test_caiman_dict_with_numpy_values():
    gSig = np.array([4, 4])
    p = Params.from_caiman({"fr": np.float64(30.0), "K": np.int64(4), "gSig": gSig, "gSiz": 2 * gSig + 1})
    assert p.init.gSig == (4.0, 4.0) and p.init.K == 4


# -- kernel properties -----------------------------------------------------------------------
PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(dy=st.integers(-6, 6), dx=st.integers(-6, 6), h=st.integers(64, 97), w=st.integers(64, 97),
       dtype=st.sampled_from([np.uint16, np.float32, np.float64, np.int16]), seed=st.integers(0, 2**16))
def test_register_rigid_finds_a_planted_shift(dy, dx, h, w, dtype, seed):
    from calcium_dask.motion.kernels import register_rigid

    rng = np.random.default_rng(seed)
    canvas = gaussian_filter(rng.normal(size=(h + 16, w + 16)), 2.0)
    canvas = 4000 + 300 * canvas / canvas.std()  # stays within uint16 and int16
    template = canvas[8:8 + h, 8:8 + w]
    moved = canvas[8 - dy:8 - dy + h, 8 - dx:8 - dx + w]  # content displaced by (+dy, +dx)
    shifts, peak = register_rigid(moved.astype(dtype), template, max_shifts=(6, 6))
    np.testing.assert_allclose(shifts, [-dy, -dx], atol=0.15)
    assert 0.5 < float(peak) <= 1.0 + 1e-6


def _planted(n: int, dy: int, dx: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    canvas = gaussian_filter(rng.normal(size=(n + 16, n + 16)), 2.0)
    canvas = 4000 + 300 * canvas / canvas.std()  # stays within uint16 and int16
    return canvas[8 - dy:8 - dy + n, 8 - dx:8 - dx + n].astype(np.float32), canvas[8:8 + n, 8:8 + n]


def test_register_rigid_small_frames_are_unbiased():
    from calcium_dask.motion.kernels import register_rigid

    errors = []
    for seed in range(10):
        moved, template = _planted(32, 5, -6, seed)
        shifts, _ = register_rigid(moved, template, max_shifts=(6, 6))
        errors.append(np.abs(shifts - [-5, 6]).max())
    assert max(errors) < 0.15, np.round(errors, 2)


@PROPS
@given(y=arrays(np.float64, st.integers(8, 300), elements=st.floats(-1e3, 1e3, allow_nan=False)),
       p=st.sampled_from([0, 1, 2]), bas_nonneg=st.booleans())
def test_deconvolution_is_finite_and_non_negative(y, p, bas_nonneg):
    from calcium_dask.cnmf.kernels.deconvolution import constrained_foopsi

    r = constrained_foopsi(y, p=p, bas_nonneg=bas_nonneg)
    scale = max(1.0, float(np.abs(y).max()))
    for name in ("c", "s"):
        v = np.asarray(getattr(r, name))
        assert v.shape == y.shape and np.isfinite(v).all(), name
        assert (v >= -1e-9 * scale).all(), (name, v.min())
    assert np.isfinite([r.b, r.c1, r.sn]).all() and r.c1 >= 0 and r.sn >= 0
    if bas_nonneg:
        assert r.b >= -1e-9 * scale


@PROPS
@given(movie=arrays(np.float32, st.tuples(st.integers(2, 24), st.integers(1, 9), st.integers(1, 9)),
                    elements=st.floats(-1e4, 1e4, width=32, allow_nan=False)),
       data=st.data())
def test_summary_partial_sums_add_up_in_any_split(movie, data):
    from calcium_dask.summary.kernels import combine, finalize, partial_sums

    T = movie.shape[0]
    cuts = sorted(data.draw(st.sets(st.integers(1, T - 1), max_size=min(5, T - 1)), label="cuts"))
    offset = movie[0].astype(np.float64)
    whole = partial_sums(movie, offset=offset)
    parts = combine([partial_sums(b, offset=offset) for b in np.split(movie, cuts) if len(b)])
    assert whole.keys() == parts.keys()
    for k in whole:
        scale = max(1.0, float(np.abs(whole[k]).max(initial=0)))  # neighbour sums of 1-pixel frames are empty
        np.testing.assert_allclose(parts[k], whole[k], rtol=1e-5, atol=1e-5 * scale, err_msg=k)
    a, b = finalize(whole, offset=offset), finalize(parts, offset=offset)
    for k in a:
        scale = max(1.0, float(np.abs(a[k]).max(initial=0)))
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-4 * scale, err_msg=k)
    np.testing.assert_allclose(a["mean"], movie.mean(0), rtol=1e-4, atol=1e-2)


def test_a_session_too_long_for_the_parameters_is_refused_before_any_work(sim_small, tmp_path, capsys):
    """Temporal downsampling (init.tsub, and the patch task's memory budget) that leaves a
    patch too few samples is one clear line and exit code 2, before motion correction starts."""
    from calcium_dask.cli import main

    out = tmp_path / "r.zarr"
    with pytest.raises(SystemExit) as e:
        main(["run", str(sim_small), "--out", str(out), "--quiet", "--set", "init.tsub=10"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "30 samples per patch" in err and "init.tsub" in err, err
    assert not out.exists()  # nothing ran, nothing written
