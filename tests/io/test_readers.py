"""Every engine reads exactly the pixels that were written, lazily, with the right metadata."""

from __future__ import annotations

import os
import pickle
import tracemalloc

import dask
import fsspec
import fsspec.implementations.local
import h5py
import numpy as np
import pytest
import tifffile
import zarr

from calcium_dask import MovieError, open_movie
from calcium_dask.io import guess_engine
from tests.conftest import shared_path


def _check(mov, expected: np.ndarray) -> None:
    assert mov.dims == ("frame", "y", "x")
    assert mov.shape == expected.shape
    assert mov.dtype == expected.dtype
    assert isinstance(mov.data, dask.array.Array)
    np.testing.assert_array_equal(mov.values, expected)
    # a slice reads only its frames, and the graph pickles (workers open files themselves)
    np.testing.assert_array_equal(mov[5:9, 3:7].values, expected[5:9, 3:7])
    pickle.loads(pickle.dumps(mov.data.dask))


@pytest.mark.parametrize("bigtiff", [False, True])
def test_tiff_contiguous(tmp_path, small_array, bigtiff):
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, small_array, bigtiff=bigtiff)
    mov = open_movie(p, chunk_frames=10)
    assert mov.data.chunks[0] == (10, 10, 10, 7)
    _check(mov, small_array)
    assert mov.attrs["engine"] == "tiff" and mov.attrs["source"] == str(p)


def test_tiff_compressed_pages(tmp_path, small_array):
    p = tmp_path / "m.tiff"
    tifffile.imwrite(p, small_array, compression="zlib")
    _check(open_movie(p, chunk_frames=8), small_array)


def test_tiff_big_endian_and_float(tmp_path, small_array):
    a = small_array.astype(np.float32) / 7
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, a, byteorder=">")
    mov = open_movie(p)
    assert mov.dtype == np.float32
    np.testing.assert_array_equal(mov.values, a)


def test_tiff_imagej_frame_rate_and_pixel_size(tmp_path, small_array):
    p = tmp_path / "ij.tif"
    tifffile.imwrite(p, small_array, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"axes": "TYX", "finterval": 1 / 15.0, "unit": "micron"})
    mov = open_movie(p)
    assert mov.attrs["fr"] == pytest.approx(15.0)
    assert mov.attrs["dxy"] == pytest.approx([0.5, 0.5])
    _check(mov, small_array)
    assert open_movie(p, fr=7.5, dxy=(2, 2)).attrs["fr"] == 7.5


def test_tiff_several_files_as_one_movie(tmp_path, small_array):
    for i, (a, b) in enumerate([(0, 10), (10, 11), (11, 37)]):
        tifffile.imwrite(tmp_path / f"part_{i:02d}.tif", small_array[a:b])
    mov = open_movie(str(tmp_path / "part_*.tif"), chunk_frames=6)
    _check(mov, small_array)
    listed = open_movie([tmp_path / "part_00.tif", tmp_path / "part_01.tif"])
    np.testing.assert_array_equal(listed.values, small_array[:11])


def test_tiff_four_d_plane(tmp_path, small_array):
    a = np.stack([small_array, small_array + 1], axis=1)  # (T, C, Y, X)
    p = tmp_path / "tc.tif"
    tifffile.imwrite(p, a, metadata={"axes": "TCYX"})
    np.testing.assert_array_equal(open_movie(p, plane=1).values, small_array + 1)
    np.testing.assert_array_equal(open_movie(p, plane=0, chunk_frames=5).values, small_array)
    with pytest.raises(MovieError, match="plane="):
        open_movie(p)
    with pytest.raises(MovieError, match="out of range"):
        open_movie(p, plane=2)


def test_real_imagej_hyperstack_and_odd_metadata():
    path = shared_path("data", "real", "sima-example.tif")
    if not os.path.exists(path):
        pytest.skip("shared real data not present")
    mov = open_movie(path)
    assert mov.shape == (20, 128, 256) and mov.dtype == np.uint16
    np.testing.assert_array_equal(mov[3:6].values, tifffile.imread(path)[3:6])
    files = open_movie(shared_path("data", "real", "sima-example-tiffs", "*.tif"))
    assert files.shape == (3, 173, 173)
    np.testing.assert_array_equal(files[2].values, tifffile.imread(
        shared_path("data", "real", "sima-example-tiffs", "2.tif")))


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr(tmp_path, small_array, zarr_format):
    p = tmp_path / "m.zarr"
    z = zarr.open_array(p, mode="w", shape=small_array.shape, chunks=(8, 12, 10),
                        dtype=small_array.dtype, zarr_format=zarr_format)
    z[:] = small_array
    z.attrs["fr"] = 12.5
    mov = open_movie(p)
    _check(mov, small_array)
    assert mov.attrs["fr"] == 12.5 and mov.attrs["engine"] == "zarr"


def test_zarr_group_and_memory_url(small_array):
    g = zarr.open_group("memory://movies/session.zarr", mode="w")
    g.create_array("other", shape=(4,), dtype="f4")
    g.create_array("mov", shape=small_array.shape, chunks=(10, 24, 20), dtype="u2")[:] = small_array
    with dask.config.set(scheduler="threads"):  # memory:// lives in this process, not in a cluster's workers
        _check(open_movie("memory://movies/session.zarr"), small_array)
        _check(open_movie("memory://movies/session.zarr", dataset="mov"), small_array)


def test_hdf5(tmp_path, small_array):
    p = tmp_path / "m.h5"
    with h5py.File(p, "w") as f:
        f["mov"] = small_array
        f["meta/other"] = np.zeros((3, 3, 3))
    _check(open_movie(p, chunk_frames=9), small_array)
    _check(open_movie(p, dataset="mov"), small_array)
    with pytest.raises(MovieError, match="no dataset 'nope'"):
        open_movie(p, dataset="nope")


def test_hdf5_needs_dataset_when_ambiguous(tmp_path, small_array):
    p = tmp_path / "two.hdf5"
    with h5py.File(p, "w") as f:
        f["a"] = small_array
        f["b"] = small_array
    with pytest.raises(MovieError, match="dataset="):
        open_movie(p)
    _check(open_movie(p, dataset="b"), small_array)


def test_nwb_two_photon_series(tmp_path, small_array):
    pynwb = pytest.importorskip("pynwb")
    from datetime import datetime, timezone

    from pynwb.ophys import OpticalChannel, TwoPhotonSeries

    nwb = pynwb.NWBFile(session_description="t", identifier="x",
                        session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
    dev = nwb.create_device(name="scope")
    plane = nwb.create_imaging_plane(
        name="plane", optical_channel=OpticalChannel(name="ch", description="g", emission_lambda=520.0),
        description="p", device=dev, excitation_lambda=920.0, indicator="GCaMP6f", location="V1")
    nwb.add_acquisition(TwoPhotonSeries(name="TwoPhotonSeries", data=small_array, imaging_plane=plane,
                                        rate=15.0, unit="n.a."))
    p = tmp_path / "s.nwb"
    with pynwb.NWBHDF5IO(p, "w") as io:
        io.write(nwb)
    mov = open_movie(p)
    assert mov.attrs["engine"] == "nwb" and mov.attrs["fr"] == 15.0
    _check(mov, small_array)


def test_npy(tmp_path, small_array):
    p = tmp_path / "m.npy"
    np.save(p, small_array)
    _check(open_movie(p, chunk_frames=4), small_array)
    q = tmp_path / "f.npy"
    np.save(q, np.asfortranarray(small_array))
    with pytest.raises(MovieError, match="Fortran"):
        open_movie(q)
    o = tmp_path / "o.npy"
    np.save(o, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(MovieError, match="no pickle"):
        open_movie(o)


def test_fsspec_file_url(tmp_path, small_array):
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, small_array)
    _check(open_movie(f"file://{p}"), small_array)


def test_engine_guessed_from_content(tmp_path, small_array):
    p = tmp_path / "movie.data"
    tifffile.imwrite(p, small_array)
    assert guess_engine(str(p)) == "tiff"
    _check(open_movie(p), small_array)


def test_opening_a_huge_movie_reads_only_its_header(tmp_path, monkeypatch):
    """A 4.3 GB TIFF (sparse on disk) opens reading its IFDs only (0.1% of it), in little memory."""
    p = tmp_path / "huge.tif"
    shape = (16384, 512, 256)  # 4.3 GB of uint16
    tifffile.memmap(p, shape=shape, dtype=np.uint16, bigtiff=True).flush()
    assert os.path.getsize(p) > 4e9
    read = []
    real_read = fsspec.implementations.local.LocalFileOpener.read

    def counting_read(self, *args, **kwargs):
        out = real_read(self, *args, **kwargs)
        read.append(len(out))
        return out

    monkeypatch.setattr(fsspec.implementations.local.LocalFileOpener, "read", counting_read)
    tracemalloc.start()
    mov = open_movie(p)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert mov.shape == shape
    assert sum(read) < 0.001 * os.path.getsize(p), f"read {sum(read)} bytes to open"
    assert peak < 50e6, f"peak {peak / 1e6:.0f} MB to open"
    before = sum(read)
    np.testing.assert_array_equal(mov[100:102].values, 0)
    chunk_bytes = max(mov.data.chunks[0]) * 512 * 256 * 2
    assert sum(read) - before <= chunk_bytes + 100_000  # one chunk, not the file
