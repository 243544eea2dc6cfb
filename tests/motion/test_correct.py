"""Motion correction as a dask graph: equals the numpy kernel, finds planted motion, writes the contract."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import xarray as xr

from calcium_dask import Params, open_movie
from calcium_dask.datasets import GroundTruth
from calcium_dask.motion import apply_shifts, motion_correct
from calcium_dask.motion.kernels import correct_frames
from calcium_dask.store import ResultsStore

PW = {"pw_rigid": True, "max_shifts": (6, 6), "strides": (32, 32), "overlaps": (16, 16),
      "max_deviation_rigid": 3, "save_movie": "float32"}


def _rmse_vs_truth(found: np.ndarray, truth_shifts: np.ndarray) -> float:
    err = found + truth_shifts  # the correction is minus the displacement
    err -= err.mean(0)  # the template's own offset is arbitrary
    return float(np.sqrt((err ** 2).sum(1).mean()))


@pytest.mark.parametrize("pw_rigid", [True, False])
def test_distributed_equals_kernel_and_finds_planted_shifts(client, sim_small, tmp_path, pw_rigid):
    params = Params.from_dict({**PW, "pw_rigid": pw_rigid, "compute.chunk_frames": 64, "compute.tile": 32})
    movie = open_movie(sim_small)
    res = motion_correct(movie, params, store=str(tmp_path / "r.zarr"))

    raw = tifffile.imread(sim_small)
    expected = correct_frames(raw, res.motion["template"].values, min_mov=res.motion.attrs["min_mov"],
                              pw_rigid=pw_rigid, max_shifts=(6, 6), strides=(32, 32), overlaps=(16, 16),
                              max_deviation_rigid=3)
    np.testing.assert_allclose(res.corrected.values, expected["corrected"], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(res.motion["shifts"].values, expected["shifts"], atol=1e-5)

    # the corrected movie varies less over time than the raw one (motion removed)
    assert float(res.summary["std"].mean()) < 0.9 * float(res.summary_raw["std"].mean())


def test_store_follows_the_results_contract(client, sim_small, tmp_path):
    params = Params.from_dict({**PW, "compute.chunk_frames": 100, "compute.tile": 32})
    out = tmp_path / "r.zarr"
    motion_correct(open_movie(sim_small), params, store=str(out))
    motion = xr.open_zarr(out, group="motion", consolidated=False)
    assert motion["shifts"].dims == ("frame", "axis") and list(motion["axis"].values) == ["y", "x"]
    assert motion["patch_shifts"].dims == ("frame", "patch_y", "patch_x", "axis")
    assert motion["patch_shifts"].shape[:3] == (300, 3, 3) and motion["template"].dims == ("y", "x")
    corrected = xr.open_zarr(out, group="movie", consolidated=False)["corrected"]
    assert corrected.dims == ("frame", "y", "x") and corrected.dtype == np.float32
    assert corrected.encoding["chunks"] == (100, 32, 32)
    summary = xr.open_zarr(out, group="summary", consolidated=False)
    assert set(summary.data_vars) == {"mean", "max", "std", "correlation"}
    np.testing.assert_allclose(summary["mean"], corrected.mean("frame"), rtol=1e-4)


def _bytes(path) -> int:
    import os

    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


@pytest.mark.parametrize("mode", ["compact", "none"])
def test_corrected_movie_storage(client, sim_small, tmp_path, mode, monkeypatch):
    """``save_movie``: 16-bit codes (decoded within half a step of the float32 movie, never
    larger than the 16-bit input) or no copy (the raw frames warped again when read, each
    block's task reading its own frames' shifts from the store: the client never holds the
    session's shifts)."""
    import calcium_dask.motion.correct as correct
    from calcium_dask.motion import corrected_movie

    movie = open_movie(sim_small)
    exact = motion_correct(movie, Params.from_dict({**PW, "compute.chunk_frames": 100}),
                           store=str(tmp_path / "f.zarr")).corrected.values
    params = Params.from_dict({**PW, "compute.chunk_frames": 100, "save_movie": mode})
    out = tmp_path / "r.zarr"
    monkeypatch.setattr(correct, "_given", lambda motion: pytest.fail("the session's shifts read in the client"))
    res = motion_correct(movie, params, store=str(out))
    got = corrected_movie(ResultsStore(str(out))).values
    if mode == "compact":
        arr = ResultsStore(str(out)).array("movie/corrected", mode="r")
        assert arr.dtype == np.uint16 and 0 < arr.attrs["scale_factor"] < 0.5  # a fraction of a count
        np.testing.assert_allclose(got, exact, atol=arr.attrs["scale_factor"] / 2 + 1e-3)
        decoded = xr.open_zarr(out, group="movie", consolidated=False)["corrected"]  # CF decoding
        np.testing.assert_allclose(decoded.values, got, rtol=1e-6, atol=1e-3)
        assert _bytes(out / "movie") <= movie.data.nbytes
    else:
        assert not (out / "movie").exists()
        np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(res.corrected.values, got, rtol=1e-5, atol=1e-3)


def test_compact_with_nan_borders_is_refused(sim_small, tmp_path):
    from calcium_dask import ParamsError

    params = Params.from_dict({**PW, "save_movie": "compact", "border_nan": True})
    with pytest.raises(ParamsError, match="hold no NaN"):
        motion_correct(open_movie(sim_small), params, store=str(tmp_path / "r.zarr"))


def test_a_store_with_the_stage_done_is_reused(client, sim_small, tmp_path, monkeypatch):
    """With ``store=``, a step is resumable: the same parameters open the stored result."""
    import calcium_dask.motion.correct as correct

    params = Params.from_dict({**PW, "compute.chunk_frames": 100})
    first = motion_correct(open_movie(sim_small), params, store=str(tmp_path / "r.zarr"))
    monkeypatch.setattr(correct, "_run", lambda *a, **k: pytest.fail("recomputed"))
    again = motion_correct(open_movie(sim_small), params, store=str(tmp_path / "r.zarr"))
    np.testing.assert_array_equal(again.motion["shifts"].values, first.motion["shifts"].values)
    monkeypatch.undo()
    other = params.replace(**{"motion.max_shifts": (5, 5)})
    assert motion_correct(open_movie(sim_small), other, store=str(tmp_path / "r.zarr")).motion.sizes["frame"] == 300


def test_result_does_not_depend_on_chunking(client, sim_small, tmp_path):
    shifts = []
    for tc in (50, 128):
        params = Params.from_dict({**PW, "compute.chunk_frames": tc})
        movie = open_movie(sim_small, chunk_frames=37)  # input chunks unaligned with blocks
        shifts.append(motion_correct(movie, params, store=str(tmp_path / f"r{tc}.zarr")).motion)
    xr.testing.assert_allclose(shifts[0], shifts[1])


def test_without_store_the_corrected_movie_is_lazy(client, sim_small):
    params = Params.from_dict({**PW, "pw_rigid": False, "compute.chunk_frames": 100})
    res = motion_correct(open_movie(sim_small), params)
    assert res.corrected.chunks is not None  # still a dask array
    raw = tifffile.imread(sim_small)[:5]
    expected = correct_frames(raw, res.motion["template"].values, min_mov=res.motion.attrs["min_mov"],
                              pw_rigid=False, max_shifts=(6, 6))["corrected"]
    np.testing.assert_allclose(res.corrected[:5].values, expected, rtol=1e-5, atol=1e-3)


def test_apply_saved_shifts_to_a_second_channel(client, sim_small, tmp_path):
    params = Params.from_dict({**PW, "compute.chunk_frames": 100})
    res = motion_correct(open_movie(sim_small), params, store=str(tmp_path / "r.zarr"))
    raw = tifffile.imread(sim_small).astype(np.float32)
    red = tmp_path / "red.tif"
    tifffile.imwrite(red, 2 * raw)
    store = ResultsStore(str(tmp_path / "r.zarr"))
    applied = apply_shifts(open_movie(red), store.read("motion"), params, store=store, path="movie/red")
    # same warp, other units: 2 x (corrected + the offset the first channel was given)
    np.testing.assert_allclose(applied.corrected.values, 2 * (res.corrected.values + res.motion.attrs["min_mov"]),
                               rtol=1e-4, atol=1e-2)


def _simulate(tmp_path, **kw):
    from calcium_dask.datasets import SimulationParams, write_movie

    sp = SimulationParams.preset("small", T=200, H=112, W=112, K=15, **kw)
    return write_movie(tmp_path / "movie.tif", sp), GroundTruth.load(tmp_path / "truth.npz")


@pytest.mark.parametrize("rigid_max, max_shifts", [(6.0, 6), (10.0, 12)])
def test_planted_rigid_motion_recovered(client, tmp_path, rigid_max, max_shifts):
    """Pure rigid motion (also stronger than the default) is found to 0.1 px."""
    path, truth = _simulate(tmp_path, seed=11, rigid_max=rigid_max, drift_amp_range=(2.0, rigid_max / 2),
                            nonrigid_max=0.0)
    params = Params.from_dict({**PW, "pw_rigid": False, "max_shifts": (max_shifts, max_shifts),
                               "compute.chunk_frames": 100})
    res = motion_correct(open_movie(path), params)
    assert _rmse_vs_truth(res.motion["shifts"].values, truth.shifts) < 0.1


def test_planted_nonrigid_motion_recovered(client, tmp_path):
    """Each patch's shift follows the planted displacement averaged over its patch (to 0.25 px)."""
    from calcium_dask.motion.kernels import patch_grid, patch_size

    path, truth = _simulate(tmp_path, seed=12, nonrigid_max=2.5)
    params = Params.from_dict({**PW, "compute.chunk_frames": 100})
    res = motion_correct(open_movie(path), params)
    ps = res.motion["patch_shifts"].values  # (T, ny, nx, 2)
    shape = truth.shape
    ys, xs = patch_grid(shape, strides=(32, 32), overlaps=(16, 16))
    ph, pw = patch_size(shape, strides=(32, 32), overlaps=(16, 16))
    d = np.zeros_like(ps)
    for t in range(truth.T):
        disp = truth.displacement(t)  # (2, H, W)
        for i, y in enumerate(ys):
            for j, x in enumerate(xs):
                d[t, i, j] = disp[:, y:y + ph, x:x + pw].mean(axis=(1, 2))
    err = ps + d
    err -= err.mean(0)
    assert float(np.sqrt((err ** 2).sum(-1).mean())) < 0.25
    # the simulated field averages to zero over the frame: its rigid part is truth.shifts,
    # which the applied field's frame average finds; the rigid stage follows the texture
    shifts, rig = res.motion["shifts"].values, res.motion["shifts_rig"].values
    assert _rmse_vs_truth(shifts, truth.shifts) < 0.1
    assert _rmse_vs_truth(shifts, truth.shifts) < 0.7 * _rmse_vs_truth(rig, truth.shifts)


def test_sample_runs_spread_over_the_movie_inside_input_chunks():
    from calcium_dask.motion.correct import SAMPLE_RUNS, _sample_runs

    runs = _sample_runs(2000, 500, range(250, 2000, 250))
    assert len(runs) == SAMPLE_RUNS and {n for _, n in runs} == {20}
    starts = np.array([a for a, _ in runs])
    assert starts[0] < 80 and starts[-1] > 1900 and (np.diff(starts) > 0).all()
    assert all(a // 250 == (a + n - 1) // 250 for a, n in runs)  # none straddles a chunk edge
    assert _sample_runs(300, 300, []) == [(12 * r + 1, 10) for r in range(25)]
    assert _sample_runs(5, 5, [2]) == [(0, 5)]  # a short movie: one run of all its frames


@pytest.mark.parametrize("sampling", ["middle", "spread"])
def test_piecewise_template_takes_the_movies_average_geometry(client, tmp_path, sampling):
    """The corrected movie has its template's geometry. Here the tissue is deformed one
    way in the middle third of the movie and half as much the other way elsewhere (no
    deformation on average): a template from the middle frames alone would keep a 1 px
    deformation in every corrected frame (``template_sampling="middle"``); sampled over
    the movie (the default) it has none."""
    from calcium_dask.motion.kernels import register_piecewise

    from .motion_synth import PAD, deform, field_fn, smooth_image

    big = smooth_image((96, 96), seed=3)
    base = big[PAD:-PAD, PAD:-PAD].astype(np.float32)
    shapes = {a: deform(big, field_fn(amp=a, length=200, centre=(47.5, 47.5))) for a in (1.0, -0.5)}
    rng = np.random.default_rng(0)
    frames = np.stack([shapes[1.0 if 100 <= t < 200 else -0.5] for t in range(300)])
    frames = (frames + rng.normal(0, 1.0, frames.shape)).astype(np.float32)
    tifffile.imwrite(tmp_path / "m.tif", frames)
    params = Params.from_dict({**PW, "num_frames_template": 100, "compute.chunk_frames": 50,
                               "template_sampling": sampling})
    mean = motion_correct(open_movie(tmp_path / "m.tif", chunk_frames=50), params).summary["mean"].values
    residual = register_piecewise(mean, base, max_shifts=(3, 3), max_deviation_rigid=2, **{
        k: PW[k] for k in ("strides", "overlaps")})
    residual -= residual.mean(axis=(0, 1))
    rms = np.sqrt((residual ** 2).sum(-1).mean())
    assert rms < 0.15 if sampling == "spread" else rms > 0.3


@pytest.mark.parametrize("t, n, chunk, expected", [
    (1000, 500, 1000, (250, 500)),  # one chunk: centred
    (2000, 256, 250, (872, 256)),  # centred on the middle chunk edge: half from each chunk
    (2250, 256, 250, (872, 256)),  # the edge nearest the middle
    (300, 256, 64, (0, 256)),  # near the start: kept inside the movie
    (5, 5, 2, (0, 5)),  # a short movie keeps all its frames
])
def test_template_block_straddles_the_middle_chunk_edge(t, n, chunk, expected):
    from calcium_dask.motion.correct import _template_frames

    assert _template_frames(t, n, np.arange(chunk, t, chunk)) == expected


def test_template_parts_cut_the_frames_the_same_way_whatever_the_blocks():
    from calcium_dask.motion.correct import _template_parts

    # frames 100:250 in parts of 70, over blocks of 125 frames
    assert _template_parts([0, 125, 250], [125, 125, 50], 100, 150, 70) == [
        [(0, 100, 125), (1, 0, 45)], [(1, 45, 115)], [(1, 115, 125)]]
    for blocks in ([0, 50, 100, 150, 200, 250], [0, 300]):
        lengths = np.diff(blocks + [300])
        parts = _template_parts(blocks, lengths, 100, 150, 70)
        frames = [[blocks[i] + f for i, lo, hi in part for f in range(lo, hi)] for part in parts]
        assert frames == [list(range(100, 170)), list(range(170, 240)), list(range(240, 250))]
        # cut at the input chunks' edges first: each part is read by one task
        parts = _template_parts(blocks, lengths, 100, 150, 70, edges=[75, 150, 225])
        frames = [[blocks[i] + f for i, lo, hi in part for f in range(lo, hi)] for part in parts]
        assert frames == [list(range(100, 150)), list(range(150, 220)), list(range(220, 225)),
                          list(range(225, 250))]


@pytest.mark.parametrize("chunk, tc, views", [(200, 100, True), (200, 64, False), (37, 100, False),
                                              (100, 100, False)])
def test_frame_blocks_are_views_of_chunks_that_hold_whole_blocks(chunk, tc, views):
    import dask
    import dask.array as da

    from calcium_dask.motion.correct import _frame_blocks

    data = np.arange(450 * 4 * 4, dtype=np.uint16).reshape(450, 4, 4)
    movie = xr.DataArray(da.from_array(data, chunks=(chunk, 2, 4)), dims=("frame", "y", "x"))
    blocks, starts, lengths = _frame_blocks(movie, Params(), tc)
    assert (starts % tc == 0).all() and (lengths <= tc).all()  # each block writes its own chunks
    got = dask.compute(*blocks, scheduler="sync")
    np.testing.assert_array_equal(np.concatenate(got), data)
    assert [len(g) for g in got] == list(lengths) and list(starts) == list(np.cumsum([0, *lengths[:-1]]))
    assert (got[0].base is not None and got[0].base is got[1].base) == views  # no copy of the chunk


def test_niter_els_refines_the_template_piecewise_before_the_pass(sim_small):
    """niter_els = 1 registers against the rigid template (CaImAn); each extra iteration
    registers the frames sampled over the movie piecewise to it and averages them."""
    from calcium_dask.motion.correct import (_frame_blocks, _sample_runs, _template_graph, block_frames,
                                             kernel_options)
    from calcium_dask.motion.kernels.templates import refine_template

    movie = open_movie(sim_small, chunk_frames=50)
    templates = {}
    for n in (1, 2):
        params = Params.from_dict({**PW, "niter_els": n, "num_frames_template": 100, "template_sampling": "spread"})
        blocks, starts, lengths = _frame_blocks(movie, params, block_frames(movie.shape, 50))
        opts = kernel_options(params.motion)
        templates[n] = _template_graph(movie, blocks, starts, lengths, params.motion, opts,
                                       True).compute(scheduler="sync")
    runs = _sample_runs(300, 100, range(50, 300, 50))
    frames = tifffile.imread(sim_small)[np.concatenate([np.arange(a, a + n) for a, n in runs])].astype(np.float32)
    expected = refine_template(frames, templates[1].template, method="mean", **opts)
    np.testing.assert_allclose(templates[2].template, expected, rtol=1e-5, atol=1e-3)
    assert not np.allclose(templates[1].template, templates[2].template, atol=1e-2)


def test_shifts_of_an_alignment_channel_stay_in_the_store(client, sim_small, tmp_path, monkeypatch):
    """``align=`` with a store: the reference channel's tasks write its shifts into ``/motion``
    and the movie's tasks read them back, block by block (the client never reads the
    session's shifts); the result is the one computed without a store."""
    import calcium_dask.motion.correct as correct

    ref = open_movie(sim_small)
    movie = ref.copy(data=ref.data // 2)  # another channel of the same frames
    params = Params.from_dict({**PW, "compute.chunk_frames": 100, "save_movie": "float32"})
    free = motion_correct(movie, params, align=ref)
    monkeypatch.setattr(correct, "_given", lambda motion: pytest.fail("the session's shifts read in the client"))
    out = tmp_path / "r.zarr"
    kept = motion_correct(movie, params, store=str(out), align=ref)
    np.testing.assert_allclose(kept.motion["patch_shifts"].values, free.motion["patch_shifts"].values, atol=1e-6)
    np.testing.assert_allclose(kept.corrected.values, free.corrected.values, rtol=1e-5, atol=1e-3)
    summary = xr.open_zarr(out, group="summary", consolidated=False)
    np.testing.assert_allclose(summary["mean"], kept.corrected.mean("frame"), rtol=1e-4)  # the movie's, not ref's
    assert "summary_align" in ResultsStore(str(out)).root(mode="r")
