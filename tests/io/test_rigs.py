"""Rigs' recordings: every plane, channel and ROI reads back exactly the pixels written,
lazily, with the rig's metadata (frame rate = volume rate), and opening reads metadata only."""

from __future__ import annotations

import os
import pickle
import warnings

import fsspec.implementations.local
import h5py
import numpy as np
import pytest
import tifffile
import zarr

from calcium_dask import MovieError, open_movie, open_session
from calcium_dask.datasets.scanimage import ScanImageHeader, write_scanimage_tiff
from calcium_dask.io import PartialVolumeWarning, recording_layout
from calcium_dask.io.pages import StridedPages, TiffPages

from .rigfiles import write_bruker, write_nd2, write_sbx

H, W = 16, 20


def _pages(n_pages: int, seed: int = 0, dtype=np.int16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.integers(-200, 3000, (n_pages, H, W)).astype(dtype)
    a[:, 0, 0] = np.arange(n_pages) % 30000  # page number readable from the data
    return a


def _si(path, pages, **header) -> ScanImageHeader:
    h = ScanImageHeader((pages.shape[1], pages.shape[2]), **header)
    write_scanimage_tiff(path, pages, h, pad_descriptions=header.pop("pad", True) if "pad" in header else True)
    return h


@pytest.fixture
def counting(monkeypatch):
    """Bytes read through fsspec's local files (what opening a movie reads)."""
    read: list[int] = []
    real = fsspec.implementations.local.LocalFileOpener.read

    def counted(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        read.append(len(out))
        return out

    monkeypatch.setattr(fsspec.implementations.local.LocalFileOpener, "read", counted)
    return read


# -- ScanImage --------------------------------------------------------------------------------

@pytest.mark.parametrize("modern", [True, False])
@pytest.mark.parametrize("pad", [True, False])
def test_scanimage_planes_channels_and_flyback(tmp_path, modern, pad):
    pages = _pages(6 * 4 * 2)  # 6 volumes of 3 slices + 1 flyback, 2 channels
    p = tmp_path / "si.tif"
    write_scanimage_tiff(p, pages, ScanImageHeader((H, W), channels=(1, 2), nslices=3, nflyback=1,
                                                   frame_rate=40.0, modern=modern), pad_descriptions=pad)
    vol = pages.reshape(6, 4, 2, H, W)
    for plane in range(3):
        for ch in range(2):
            mov = open_movie(p, plane=plane, channel=ch, chunk_frames=4)
            assert mov.dims == ("frame", "y", "x") and mov.shape == (6, H, W) and mov.dtype == np.int16
            np.testing.assert_array_equal(mov.values, vol[:, plane, ch])
            np.testing.assert_array_equal(mov[2:5, 3:7].values, vol[2:5, plane, ch, 3:7])
    assert mov.attrs["fr"] == pytest.approx(10.0) and mov.attrs["engine"] == "scanimage"
    assert mov.attrs["nplanes"] == 3 and mov.attrs["nflyback"] == 1 and mov.attrs["nchannels"] == 2
    assert mov.attrs["dxy"] == pytest.approx([500 / H, 500 / W])
    pickle.loads(pickle.dumps(mov.data.dask))  # workers read the pages themselves
    layout = recording_layout(p)
    kind = StridedPages if pad else TiffPages  # evenly spaced pages are read by offset
    assert all(isinstance(part, kind) for part in layout.slots.pages.parts)
    with pytest.raises(MovieError, match="plane=3 out of range.*flyback"):
        open_movie(p, plane=3, channel=0)
    with pytest.raises(MovieError, match="3 planes"):
        open_movie(p, channel=0)


def test_scanimage_session_split_into_files_and_a_partial_volume(tmp_path):
    pages = _pages(5 * 2 * 2 + 3)  # 5 volumes of 2 planes x 2 channels, then 3 pages of a 6th
    header = ScanImageHeader((H, W), channels=(1, 2), nslices=2, frame_rate=20.0)
    write_scanimage_tiff(tmp_path / "s_00001.tif", pages[:7], header)  # files split mid-volume
    write_scanimage_tiff(tmp_path / "s_00002.tif", pages[7:], header)
    with pytest.warns(PartialVolumeWarning, match=r"23 frames .* 2 planes x 2 channels.*3 frames\) is dropped"):
        rec = open_session(str(tmp_path / "s_*.tif"), functional_chan=1, align_by_chan=2)
    assert [f.name for f in rec] == ["plane0", "plane1"] and rec.nchannels == 2 and rec.fr == 10.0
    vol = pages[:20].reshape(5, 2, 2, H, W)
    for z, fov in enumerate(rec):
        np.testing.assert_array_equal(fov.movie.values, vol[:, z, 0])
        np.testing.assert_array_equal(fov.align.values, vol[:, z, 1])
        assert fov.channel == 1 and fov.record()["align_channel"] == 2
    with pytest.warns(PartialVolumeWarning):
        same = open_session(str(tmp_path / "s_*.tif"), functional_chan=2, align_by_chan=2)
    assert same[0].align is None  # motion from the functional channel itself
    np.testing.assert_array_equal(same[1].movie.values, vol[:, 1, 1])


def test_scanimage_wrong_nplanes_or_channel_is_one_line(tmp_path):
    p = tmp_path / "si.tif"
    write_scanimage_tiff(p, _pages(4 * 3 * 2), ScanImageHeader((H, W), channels=(1, 2), nslices=3))
    with pytest.raises(MovieError, match=r"nplanes=4 does not match the file: ScanImage metadata say 3 slices"):
        open_movie(p, nplanes=4, plane=0, channel=0)
    with pytest.raises(MovieError, match="nchannels=1 does not match"):
        open_session(p, nchannels=1)
    with pytest.raises(MovieError, match=r"functional_chan=3 out of range: the recording has 2 channel") as e:
        open_session(p, functional_chan=3)
    assert str(p) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(MovieError, match="channel=2 out of range"):
        open_movie(p, plane=0, channel=2)


def test_scanimage_slow_zstack_is_not_a_time_series(tmp_path):
    p = tmp_path / "z.tif"
    h = ScanImageHeader((H, W), extra={"SI.hStackManager.enable": True, "SI.hStackManager.stackMode": "slow",
                                       "SI.hStackManager.actualNumSlices": 5})
    write_scanimage_tiff(p, _pages(10), h)
    with pytest.raises(MovieError, match="slow z-stack"):
        open_movie(p)


def test_mesoscope_rois_are_fields_of_view_placed_on_a_canvas(tmp_path):
    # three 8-line ROIs with 4 fly-to lines between them; the third sits right of the first
    rois = [((1.0, 0.5), (2.0, 0.8), (W, 8)), ((1.0, 1.5), (2.0, 0.8), (W, 8)), ((3.0, 0.5), (2.0, 0.8), (W, 8))]
    page_h = 3 * 8 + 2 * 4
    pages = np.random.default_rng(2).integers(0, 3000, (2 * 5, page_h, W)).astype(np.int16)  # 5 volumes, 2 planes
    header = ScanImageHeader((page_h, W), nslices=2, frame_rate=20.0, rois=rois)
    write_scanimage_tiff(tmp_path / "meso.tif", pages, header)
    rec = open_session(tmp_path / "meso.tif")
    assert [f.name for f in rec] == ["plane0_roi0", "plane0_roi1", "plane0_roi2", "plane1_roi0", "plane1_roi1",
                                     "plane1_roi2"]
    vol = pages.reshape(5, 2, page_h, W)
    starts = [0, 12, 24]
    for f in rec:
        y0 = starts[f.roi]
        np.testing.assert_array_equal(f.movie.values, vol[:, f.plane, y0:y0 + 8])
    positions = [rec[f"plane0_roi{r}"].position for r in range(3)]
    np.testing.assert_allclose(positions, [(0, 0), (10, 0), (0, 20)])  # 10 px/deg vertically, 10 horizontally
    assert rec.canvas_shape == (18, 40) and rec.nrois == 3
    with pytest.raises(MovieError, match="3 mesoscope ROIs: choose one with roi="):
        open_movie(tmp_path / "meso.tif", plane=0)
    mov = open_movie(tmp_path / "meso.tif", plane=1, roi=2)
    assert mov.attrs["position"] == [0.0, 20.0] and mov.shape == (5, 8, W)


def test_opening_a_scanimage_session_reads_metadata_only(tmp_path, counting):
    p = tmp_path / "big.tif"
    pages = np.zeros((4 * 2 * 60, 128, 128), np.int16)  # 60 volumes of 4 planes x 2 channels: 15.7 MB
    write_scanimage_tiff(p, pages, ScanImageHeader((128, 128), channels=(1, 2), nslices=4))
    size = os.path.getsize(p)
    rec = open_session(p, align_by_chan=2, chunk_frames=2)
    assert len(rec) == 4
    opened = sum(counting)
    assert opened < 0.02 * size, f"read {opened} of {size} bytes to open"
    rec[1].movie[10:12].values
    frame = 128 * 128 * 2
    assert sum(counting) - opened <= 2 * frame + 4096  # its two frames, not the 9 pages between them
    rec[2].movie.values
    assert sum(counting) - opened <= 62 * frame + 4096  # a plane's frames: an eighth of the file


# -- plain movies with nplanes / nchannels given --------------------------------------------

def test_plain_tiff_npy_hdf5_zarr_deinterleaved_by_nplanes_nchannels(tmp_path):
    a = _pages(3 * 2 * 7, dtype=np.uint16)  # 7 volumes of 3 planes x 2 channels
    vol = a.reshape(7, 3, 2, H, W)
    tifffile.imwrite(tmp_path / "m.tif", a)
    np.save(tmp_path / "m.npy", a)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["mov"] = a
    z = zarr.open_array(tmp_path / "m.zarr", mode="w", shape=a.shape, chunks=(5, H, W), dtype=a.dtype)
    z[:] = a
    for name in ("m.tif", "m.npy", "m.h5", "m.zarr"):
        mov = open_movie(tmp_path / name, nplanes=3, nchannels=2, plane=2, channel=1, chunk_frames=3)
        np.testing.assert_array_equal(mov.values, vol[:, 2, 1], err_msg=name)
        assert mov.attrs["nplanes"] == 3
    with pytest.warns(PartialVolumeWarning, match="last partial volume"):
        mov = open_movie(tmp_path / "m.tif", nplanes=4, plane=0)
    assert mov.shape[0] == 42 // 4
    with pytest.raises(MovieError, match="channel=1 out of range: the movie has one channel"):
        open_movie(tmp_path / "m.tif", channel=1)


# -- Scanbox ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version3", [True, False])
def test_scanbox_planes_and_inverted_interleaved_channels(tmp_path, version3):
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 60000, (4 * 2, 2, H, W)).astype(np.uint16)  # 4 volumes of 2 planes, 2 channels
    sbx = write_sbx(tmp_path / "m", frames, nplanes=2, version3=version3)
    rec = open_session(sbx, align_by_chan=2)
    assert rec.format == "scanbox" and rec.nplanes == 2 and rec.nchannels == 2
    assert rec.fr == pytest.approx(7930.0 / H / 2)
    vol = frames.reshape(4, 2, 2, H, W)
    for z, fov in enumerate(rec):
        np.testing.assert_array_equal(fov.movie.values, vol[:, z, 0])
        np.testing.assert_array_equal(fov.align.values, vol[:, z, 1])
    assert fov.movie.attrs["dxy"] == pytest.approx([1.5, 1.2])
    # named by its header too
    np.testing.assert_array_equal(open_movie(tmp_path / "m.mat", plane=1, channel=0).values, vol[:, 1, 0])


def test_opening_scanbox_reads_only_its_mat(tmp_path, counting):
    frames = np.zeros((200, 1, 128, 128), np.uint16)
    sbx = write_sbx(tmp_path / "big", frames)
    mat = os.path.getsize(tmp_path / "big.mat")
    mov = open_movie(sbx)
    assert mov.shape == (200, 128, 128)
    assert sum(counting) <= mat + 64  # the header's bytes (and a guess at the .sbx's first bytes)


# -- Bruker ------------------------------------------------------------------------------------

def test_bruker_t_series_two_channels(tmp_path):
    frames = np.random.default_rng(4).integers(0, 4000, (9, 1, 2, H, W)).astype(np.uint16)
    xml = write_bruker(tmp_path / "ts", frames, frame_period=0.05, um=1.25)
    for url in (xml, tmp_path / "ts"):  # the XML or its folder
        rec = open_session(url, functional_chan=2, align_by_chan=1)
        assert rec.format == "bruker" and len(rec) == 1 and rec.fr == pytest.approx(20.0)
        np.testing.assert_array_equal(rec[0].movie.values, frames[:, 0, 1])
        np.testing.assert_array_equal(rec[0].align.values, frames[:, 0, 0])
    src = rec[0].movie.data.dask
    assert len(pickle.dumps(src)) < 20_000  # files named by pattern, not listed in every task
    assert rec[0].movie.attrs["dxy"] == pytest.approx([1.25, 1.25])


def test_bruker_volume_t_series(tmp_path):
    frames = np.random.default_rng(5).integers(0, 4000, (4, 3, 1, H, W)).astype(np.uint16)  # 4 volumes x 3 planes
    xml = write_bruker(tmp_path / "zs", frames, frame_period=0.02, volumes=True)
    rec = open_session(xml)
    assert rec.nplanes == 3 and rec.fr == pytest.approx(1 / 0.06)
    for z, fov in enumerate(rec):
        np.testing.assert_array_equal(fov.movie.values, frames[:, z, 0])
    with pytest.raises(MovieError, match="nplanes=2 does not match the file: the XML has 3 frame"):
        open_session(xml, nplanes=2)


def test_bruker_files_named_otherwise_are_read_from_their_table(tmp_path):
    frames = np.random.default_rng(6).integers(0, 4000, (5, 1, 1, H, W)).astype(np.uint16)
    xml = write_bruker(tmp_path / "ts", frames)
    for i in range(5):  # renamed after acquisition: the XML still says where each frame is
        old = f"TSeries-01012026-1200-001_Cycle00001_Ch1_{i + 1:06d}.ome.tif"
        os.rename(tmp_path / "ts" / old, tmp_path / "ts" / f"frame{i}.ome.tif")
        xml.write_text(xml.read_text().replace(old, f"frame{i}.ome.tif"))
    np.testing.assert_array_equal(open_movie(xml).values, frames[:, 0, 0])


def test_opening_bruker_reads_the_xml_and_one_tiff_header(tmp_path, counting):
    frames = np.zeros((60, 1, 1, 128, 128), np.uint16)
    xml = write_bruker(tmp_path / "ts", frames)
    data = sum(os.path.getsize(tmp_path / "ts" / f) for f in os.listdir(tmp_path / "ts") if f.endswith(".tif"))
    open_movie(xml)
    assert sum(counting) < os.path.getsize(xml) * 2 + 0.02 * data


# -- Nikon ND2 ---------------------------------------------------------------------------------

def test_nd2_time_series_of_volumes_and_channels(tmp_path):
    frames = np.random.default_rng(7).integers(0, 4000, (5, 3, 2, H, W)).astype(np.uint16)  # T, Z, C
    p = write_nd2(tmp_path / "m.nd2", frames, period_ms=100.0, um=0.6)
    rec = open_session(p, align_by_chan=2)
    assert rec.format == "nd2" and rec.nplanes == 3 and rec.nchannels == 2 and rec.fr == pytest.approx(10.0)
    for z, fov in enumerate(rec):
        np.testing.assert_array_equal(fov.movie.values, frames[:, z, 0])
        np.testing.assert_array_equal(fov.align.values, frames[:, z, 1])
    assert rec[0].movie.attrs["dxy"] == pytest.approx([0.6, 0.6])
    assert rec.channel_names == ("GCaMP", "tdTomato")


def test_nd2_with_the_z_loop_outside_the_time_loop(tmp_path):
    frames = np.random.default_rng(8).integers(0, 4000, (3, 5, 1, H, W)).astype(np.uint16)  # Z, T, C
    p = write_nd2(tmp_path / "zt.nd2", frames, loops=("z", "time"))
    rec = open_session(p)
    for z, fov in enumerate(rec):
        np.testing.assert_array_equal(fov.movie.values, frames[z, :, 0])


def test_nd2_that_is_not_a_time_series(tmp_path):
    frames = np.zeros((4, 1, H, W), np.uint16)
    stack = write_nd2(tmp_path / "stack.nd2", frames, loops=("z",))
    with pytest.raises(MovieError, match="without a time loop: not a time series"):
        open_movie(stack)
    points = write_nd2(tmp_path / "points.nd2", np.zeros((2, 3, 1, H, W), np.uint16), loops=("xy", "time"))
    with pytest.raises(MovieError, match="only time series"):
        open_movie(points)


def test_opening_nd2_reads_metadata_only(tmp_path, counting):
    frames = np.zeros((100, 1, 1, 128, 128), np.uint16)
    p = write_nd2(tmp_path / "big.nd2", frames, loops=("time", "z"))
    size = os.path.getsize(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mov = open_movie(p)
    assert mov.shape == (100, 128, 128)
    opened = sum(counting)
    assert opened < 0.02 * size, f"read {opened} of {size} bytes to open"


def test_rig_files_through_fsspec_urls(tmp_path):
    import dask
    import fsspec

    pages = _pages(3 * 2 * 2)
    write_scanimage_tiff(tmp_path / "si.tif", pages, ScanImageHeader((H, W), channels=(1, 2), nslices=2))
    frames = np.random.default_rng(9).integers(0, 60000, (4, 2, H, W)).astype(np.uint16)
    write_sbx(tmp_path / "sb", frames)
    write_nd2(tmp_path / "n.nd2", frames[:, None].repeat(2, axis=1), loops=("time", "z"))
    mem = fsspec.filesystem("memory")
    for name in ("si.tif", "sb.sbx", "sb.mat", "n.nd2"):
        mem.pipe(f"/rigs/{name}", (tmp_path / name).read_bytes())
    with dask.config.set(scheduler="threads"):  # memory:// lives in this process
        si = open_session("memory://rigs/si.tif")
        np.testing.assert_array_equal(si[1].movie.values, pages.reshape(3, 2, 2, H, W)[:, 1, 0])
        sb = open_session("memory://rigs/sb.sbx", functional_chan=2)
        np.testing.assert_array_equal(sb[0].movie.values, frames[:, 1])
        nd = open_session("memory://rigs/n.nd2", functional_chan=2)
        np.testing.assert_array_equal(nd[1].movie.values, frames[:, 1])
