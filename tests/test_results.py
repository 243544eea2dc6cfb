"""The Results object: CaImAn's names, selection, round trips to zarr and NWB."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from calcium_dask import StoreError
from calcium_dask.cli import main
from calcium_dask.results import Results, open_results
from calcium_dask.store import ResultsStore

H, W, T, K = 20, 24, 60, 5


def make_results() -> Results:
    rng = np.random.default_rng(0)
    fp = np.zeros((K, H, W), np.float32)
    for k in range(K):
        y, x = 3 + 3 * k, 4 + 4 * k
        fp[k, y - 2:y + 3, x - 2:x + 3] = rng.random((5, 5)) + 0.5
    C = rng.random((K, T)).astype(np.float32)
    ds = xr.Dataset({
        "footprints": (("unit", "y", "x"), fp),
        "traces": (("unit", "frame"), C),
        "spikes": (("unit", "frame"), np.maximum(C - 0.5, 0)),
        "residuals": (("unit", "frame"), 0.1 * rng.normal(size=(K, T)).astype(np.float32)),
        "dff": (("unit", "frame"), C / 2),
        "background_footprints": (("background", "y", "x"), np.ones((1, H, W), np.float32)),
        "background_traces": (("background", "frame"), np.full((1, T), 3.0, np.float32)),
        "snr": (("unit",), np.arange(K, dtype=np.float32)),
        "accepted": (("unit",), np.array([True, False, True, True, False])),
    }, coords={"unit": np.arange(K)}, attrs={"fr": 15.0})
    return Results(ds)


def test_caiman_names():
    r = make_results()
    fp = r.ds["footprints"].values
    assert r.A.shape == (H * W, K)
    # one pixel order everywhere: C order (y * W + x), the footprints' own
    np.testing.assert_array_equal(r.A[:, 2].toarray().reshape(H, W), fp[2])
    assert not np.array_equal(r.A[:, 2].toarray().ravel(), fp[2].ravel(order="F"))
    assert r.b.shape == (H * W, 1) and r.C.shape == (K, T) and r.f.shape == (1, T)
    np.testing.assert_array_equal(r.b[:, 0].reshape(H, W), r.ds["background_footprints"].values[0])
    np.testing.assert_array_equal(r.idx_components, [0, 2, 3])
    np.testing.assert_array_equal(r.idx_components_bad, [1, 4])
    coords = r.coordinates
    assert len(coords) == K and coords[1]["coordinates"].shape[1] == 2
    assert coords[1]["CoM"] == pytest.approx((6.0, 8.0), abs=0.6)


def test_select_and_restore():
    r = make_results()
    s = r.select_components()
    assert s.ds.sizes["unit"] == 3 and s.discarded.sizes["unit"] == 2
    np.testing.assert_array_equal(s.C, r.C[[0, 2, 3]])
    back = s.restore_discarded_components()
    np.testing.assert_array_equal(back.C, r.C)
    np.testing.assert_array_equal(back.ds["accepted"].values, r.ds["accepted"].values)
    assert r.select_components(save_discarded_components=False).discarded is None


def test_denoised_movie_is_lazy_and_right():
    r = make_results()
    mov = r.denoised_movie()
    assert mov.chunks is not None
    expected = np.einsum("kyx,kt->tyx", r.ds["footprints"].values, r.C) + 3.0
    np.testing.assert_allclose(mov[:7].values, expected[:7], rtol=1e-5)


def test_zarr_round_trip_exact(tmp_path):
    r = make_results().select_components()
    url = str(tmp_path / "r.zarr")
    r.to_zarr(url)
    back = open_results(url)
    xr.testing.assert_identical(back.ds.drop_attrs(), r.ds.drop_attrs())
    xr.testing.assert_identical(back.discarded.load(), r.discarded)
    with pytest.raises(StoreError, match="no results store"):
        open_results(str(tmp_path / "missing.zarr"))


def test_results_evaluated_in_memory_survive_a_save_into_a_pipeline_store(tmp_path):
    """A store whose evaluate stage never ran: units evaluated in a notebook and saved back keep
    their evaluation (open_results drops evaluation variables only of an unfinished stage)."""
    url = str(tmp_path / "run.zarr")
    r = make_results()
    unevaluated = Results(r.ds.drop_vars(["snr", "accepted", "dff"]))
    store = unevaluated.to_zarr(url)
    store.mark_complete("motion", 1.0)
    store.mark_complete("cnmf", 1.0)
    assert "accepted" not in open_results(url).ds
    r.to_zarr(url)
    back = open_results(url)
    assert back.ds["accepted"].values.tolist() == r.ds["accepted"].values.tolist()
    assert set(store.stages()) == {"motion", "cnmf", "evaluate"}


def test_nwb_round_trip_and_inspector(tmp_path):
    pynwb = pytest.importorskip("pynwb")
    r = make_results()
    path = str(tmp_path / "r.nwb")
    r.to_nwb(path, metadata={"subject": {"species": "Mus musculus", "age": "P90D"},
                             "experimenter": ["Doe, Jane"], "institution": "Lab", "location": "VISp"})
    with pynwb.NWBHDF5IO(path, "r") as io:
        nwb = io.read()
        ophys = nwb.processing["ophys"]
        ps = ophys["ImageSegmentation"]["PlaneSegmentation"]
        assert len(ps) == K
        mask = np.zeros((H, W))  # pixel masks: (x, y, weight) of the footprint's non-zero pixels
        for x, y, w in ps["pixel_mask"][1]:
            mask[y, x] = w
        np.testing.assert_allclose(mask, r.ds["footprints"].values[1], rtol=1e-6)
        np.testing.assert_array_equal(ps["accepted"][:], r.ds["accepted"].values)
        raw = ophys["Fluorescence"]["RoiResponseSeries"].data[:]
        np.testing.assert_allclose(raw.T, np.asarray(r.C) + np.asarray(r.YrA), rtol=1e-6)
        np.testing.assert_allclose(ophys["DfOverF"]["RoiResponseSeries"].data[:].T, np.asarray(r.F_dff))
        assert ophys["Fluorescence"]["RoiResponseSeries"].rate == 15.0
    from nwbinspector import Importance, inspect_nwbfile

    serious = [m for m in inspect_nwbfile(nwbfile_path=path)
               if m.importance in (Importance.CRITICAL, Importance.ERROR, Importance.PYNWB_VALIDATION)]
    assert serious == []


def test_nwb_traces_are_written_a_buffer_of_frames_at_a_time(tmp_path, monkeypatch):
    """The export never reads a whole unit x frame array: every read the writer makes is a
    buffer of at most NWB_BUFFER_VALUES values, and they cover the traces exactly."""
    pytest.importorskip("pynwb")
    import calcium_dask.nwb as nwb

    monkeypatch.setattr(nwb, "NWB_BUFFER_VALUES", 2 * K * 7)  # 14 frames of K units a read
    monkeypatch.setattr(nwb, "NWB_CHUNK_VALUES", K * 7)
    reads = []
    make = nwb._trace_iterator

    def spying(data):
        it = make(data)
        original = it._get_data
        it._get_data = lambda selection: reads.append(selection) or original(selection)
        return it

    monkeypatch.setattr(nwb, "_trace_iterator", spying)
    r = make_results()
    r.to_nwb(str(tmp_path / "r.nwb"))
    assert len(reads) >= 2 * (T // 14)  # two series, several buffers each
    assert all((s[0].stop - s[0].start) * K <= 2 * K * 7 for s in reads)
    import pynwb

    with pynwb.NWBHDF5IO(str(tmp_path / "r.nwb"), "r") as io:
        got = io.read().processing["ophys"]["DfOverF"]["RoiResponseSeries"].data[:]
    np.testing.assert_allclose(got.T, np.asarray(r.F_dff))


def test_export_cli(tmp_path, capsys):
    url = str(tmp_path / "r.zarr")
    make_results().to_zarr(url)
    with pytest.raises(SystemExit) as e:
        main(["export", url, "--nwb", str(tmp_path / "a.nwb"), "--accepted-only"])
    assert e.value.code == 0 and "3 units" in capsys.readouterr().out
    ResultsStore(url)  # the store is left as it was
    assert open_results(url).ds.sizes["unit"] == K
