"""Determinism, streaming writes, file formats, truth files and bounded memory."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import tifffile
import zarr

from calcium_dask.datasets import GroundTruth, SimulationParams, simulate, write_movie
from calcium_dask.datasets import write as write_mod


@pytest.fixture(scope="module")
def tiny() -> SimulationParams:
    return SimulationParams.preset("small", T=90, H=64, W=80, K=10, seed=11)


def test_same_seed_same_movie_other_seed_other_movie(tiny):
    a, ta = simulate(tiny)
    b, tb = simulate(tiny, chunk_frames=7, workers=2)
    c, tc = simulate(tiny.replace(seed=12))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ta.C, tb.C)
    assert a.shape == tiny.shape and a.dtype == np.uint16
    assert np.mean(a != c) > 0.5
    assert not np.allclose(ta.centers, tc.centers)


def test_changing_motion_keeps_the_neurons(tiny):
    _, ta = simulate(tiny)
    _, tb = simulate(tiny.replace(rigid_max=2.0, jitter_sd=0.1))
    np.testing.assert_array_equal(ta.centers, tb.centers)
    np.testing.assert_array_equal(ta.C, tb.C)
    assert not np.array_equal(ta.shifts, tb.shifts)


def test_tiff_streamed_in_chunks_equals_simulate(tiny, tmp_path):
    movie, truth = simulate(tiny)
    path = write_movie(tmp_path / "movie.tif", tiny, chunk_frames=37, workers=2)
    with tifffile.TiffFile(path) as tf:
        assert len(tf.pages) == tiny.T
        assert tf.series[0].shape == tiny.shape and tf.series[0].dtype == np.uint16
        assert not tf.is_bigtiff
        np.testing.assert_array_equal(tf.asarray(), movie)
    assert tifffile.memmap(path).shape == tiny.shape  # contiguous, so it memory-maps
    saved = GroundTruth.load(tmp_path / "truth.npz")
    np.testing.assert_array_equal(saved.observed_mean, truth.observed_mean)
    assert saved.clipped_pixels == truth.clipped_pixels


@pytest.mark.parametrize("tile", [None, 32])
def test_zarr_streamed_in_chunks_equals_simulate(tiny, tmp_path, tile):
    movie, _ = simulate(tiny)
    path = write_movie(tmp_path / "movie.zarr", tiny, chunk_frames=40, tile=tile)
    z = zarr.open_array(path, mode="r")
    assert z.shape == tiny.shape and z.dtype == np.uint16
    assert z.chunks == ((40, 64, 80) if tile is None else (40, 32, 32))
    assert tuple(z.metadata.dimension_names) == ("frame", "y", "x")
    assert z.attrs["fr"] == tiny.fr
    np.testing.assert_array_equal(z[:], movie)


def test_format_follows_suffix_or_argument(tiny, tmp_path):
    p = tiny.replace(T=5)
    zpath = write_movie(tmp_path / "a" / "m.zarr", p)
    assert zarr.open_array(zpath, mode="r").shape == p.shape
    tpath = write_movie(tmp_path / "b" / "m.dat", p, format="tiff")
    assert tifffile.imread(tpath).shape == p.shape
    with pytest.raises(ValueError, match="format must be"):
        write_movie(tmp_path / "c" / "m.tif", p, format="hdf5")


def test_bigtiff_above_threshold(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(write_mod, "BIGTIFF_BYTES", 1000)
    path = write_movie(tmp_path / "movie.tif", tiny.replace(T=4))
    with tifffile.TiffFile(path) as tf:
        assert tf.is_bigtiff and tf.series[0].shape == (4, tiny.H, tiny.W)


def test_truth_and_params_beside_the_movie(tiny, tmp_path):
    write_movie(tmp_path / "movie.tif", tiny)
    doc = json.loads((tmp_path / "params.json").read_text())
    assert doc["movie"] == "movie.tif" and "shifts" in doc["conventions"]
    assert SimulationParams.from_dict(doc, strict=False) == tiny
    with np.load(tmp_path / "truth.npz", allow_pickle=False) as z:
        # the public benchmark scorer's keys
        for key in ("footprints", "C", "f0", "baseline", "bg_spatial", "bg_temporal",
                    "shifts", "clean_mean", "observed_mean", "snr", "gain", "offset",
                    "read_sd"):
            assert key in z.files, key
        assert z["footprints"].shape == (tiny.K, tiny.H, tiny.W)
        assert float(z["gain"]) == tiny.gain


def test_truth_save_load_round_trip(small_sim, tmp_path):
    _, truth = small_sim
    path = truth.save(tmp_path / "t.npz")
    back = GroundTruth.load(path)
    assert back.params == truth.params
    for name, value in vars(truth).items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(back, name), value, err_msg=name)
            assert getattr(back, name).dtype == value.dtype, name
    with np.load(path, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["footprints"], truth.footprints)
        assert SimulationParams.from_json(str(z["params"])) == truth.params


def test_load_refuses_foreign_files(tmp_path):
    np.savez(tmp_path / "x.npz", C=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="not written by GroundTruth.save"):
        GroundTruth.load(tmp_path / "x.npz")


def test_streaming_memory_is_bounded(tmp_path):
    p = SimulationParams.preset("small", T=2000, K=20, seed=1)
    movie_bytes = p.T * p.H * p.W * 2
    tracemalloc.start()
    try:
        write_movie(tmp_path / "movie.tif", p, chunk_frames=200, workers=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.3 * movie_bytes, f"peak {peak / 1e6:.1f} MB for a {movie_bytes / 1e6:.0f} MB movie"
    assert tifffile.TiffFile(tmp_path / "movie.tif").series[0].shape == p.shape


def _peak_writing(path, p, **kw) -> int:
    tracemalloc.start()
    try:
        write_movie(path, p, **kw)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_zarr_memory_does_not_grow_with_length(tmp_path):
    p = SimulationParams.preset("small", T=200, K=10, seed=1)
    kw = dict(chunk_frames=50, tile=64, workers=1)
    _peak_writing(tmp_path / "warm" / "m.zarr", p.replace(T=10), **kw)  # imports, caches
    short = _peak_writing(tmp_path / "a" / "m.zarr", p, **kw)
    long = _peak_writing(tmp_path / "b" / "m.zarr", p.replace(T=800), **kw)
    assert long < 1.3 * short + 2e6  # 4x the frames, about the same peak
