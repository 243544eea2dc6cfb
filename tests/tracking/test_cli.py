"""calcium-dask register, report of a tracking store, and simulate --sessions."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from calcium_dask.cli import main
from calcium_dask.datasets import GroundTruth
from calcium_dask.datasets.sessions import SessionsTruth

from .stores import write_store


def _run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_register_writes_the_tracking_store_and_prints_a_summary(three_days, tmp_path, capsys):
    urls, _, _ = three_days
    out = tmp_path / "tracking.zarr"
    code, stdout, stderr = _run(["register", *urls, "--out", str(out), "--reference", "0",
                                 "--set", "tracking.max_dist=8"], capsys)
    assert code == 0, stderr
    ds = xr.open_zarr(str(out))
    assert ds.attrs["reference"] == 0 and ds.attrs["params"]["max_dist"] == 8.0
    assert "day0: " in stdout and "tracked units" in stdout and "in every registered session" in stdout
    # the HTML report of a tracking store
    code, stdout, _ = _run(["report", str(out), "-o", str(tmp_path / "t.html"), "--max-traces", "1"], capsys)
    html = (tmp_path / "t.html").read_text()
    assert code == 0 and "calcium-dask tracking report" in html and "Contours across sessions" in html
    assert html.count("data:image/png;base64,") >= 3 and "could not draw" not in html


def test_register_names_a_session_it_cannot_register_and_exits_1(three_days, tmp_path, capsys):
    urls, _, _ = three_days
    fp = xr.open_zarr(urls[0], consolidated=False)["footprints"].values
    odd = write_store(tmp_path / "odd.zarr", fp[:, :80], np.ones((80, 96)), np.ones((80, 96)))
    code, stdout, stderr = _run(["register", urls[0], urls[1], odd, "--out", str(tmp_path / "t.zarr"), "--quiet"],
                                capsys)
    assert code == 1
    assert "calcium-dask: warning: odd: not registered: 80x96 pixels" in stderr
    assert xr.open_zarr(str(tmp_path / "t.zarr"))["registered"].values.tolist() == [True, True, False]


def test_register_user_errors_exit_2_with_one_line(three_days, tmp_path, capsys):
    urls, _, _ = three_days
    code, _, stderr = _run(["register", urls[0], "--out", str(tmp_path / "t.zarr")], capsys)
    assert code == 2 and "at least two results stores" in stderr
    code, _, stderr = _run(["register", urls[0], str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "t.zarr")],
                           capsys)
    assert code == 2 and stderr.strip().endswith("missing.zarr: no results store here") and len(
        stderr.strip().splitlines()) == 1
    code, _, stderr = _run(["register", *urls, "--out", urls[0]], capsys)
    assert code == 2 and "not a tracking store" in stderr


def test_simulate_sessions_writes_days_with_identities(tmp_path, capsys):
    out = tmp_path / "sim"
    code, stdout, stderr = _run(["simulate", str(out), "--sessions", "2", "--set", "T=40", "--set", "H=64",
                                 "--set", "W=64", "--set", "K=10", "--set", "max_rotation=2", "--format", "zarr"],
                                capsys)
    assert code == 0, stderr
    truth = SessionsTruth.load(out / "sessions.npz")
    assert truth.n_sessions == 2 and truth.params.max_rotation == 2
    for d in range(2):
        day = GroundTruth.load(out / f"day{d}" / "truth.npz")
        assert day.K == len(truth.identities[d]) and (out / f"day{d}" / "movie.zarr").exists()
    code, _, stderr = _run(["simulate", str(out / "m.tif"), "--set", "max_shift=3"], capsys)
    assert code == 2 and "max_shift needs --sessions" in stderr
