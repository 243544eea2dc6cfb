"""The benchmark scripts run (on a tiny movie) and clean up after themselves (the whole-pipeline ones
are marked slow: `python -m pytest -m slow tests/test_benchmarks.py`)."""

from __future__ import annotations

import importlib.util
import sys
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bench_motion_prints_its_figures_and_deletes_its_output(tmp_path, capsys):
    bench = _load("bench_motion")
    out = tmp_path / "out"
    out.mkdir()
    bench.main(["--size", "64", "--frames", "120", "--workers", "1", "--modes", "rigid",
                "--dir", str(tmp_path / "movies"), "--out-dir", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("command: python ") and "--out-dir" in lines[0]
    size, frames, mode, workers, run, seconds, fps, peak = lines[-1].split()
    assert (size, frames, mode, workers, run) == ("64", "120", "rigid", "1", "1") and float(fps) > 0
    assert list(out.iterdir()) == []  # the corrected movie is gone
    bench.main(["--size", "64", "--frames", "120", "--workers", "1", "--modes", "rigid",
                "--dir", str(tmp_path / "movies"), "--out-dir", str(out), "--keep"])
    assert [p.name for p in out.iterdir()] == ["out_64_120_rigid_1.zarr"]


@pytest.mark.slow
def test_bench_motion_repeats_settings_in_turn_and_summarises_them(tmp_path, capsys):
    bench = _load("bench_motion")
    bench.main(["--size", "64", "--frames", "120", "--workers", "1", "--modes", "rigid", "pw_rigid",
                "--dir", str(tmp_path / "movies"), "--repeat", "2"])
    lines = capsys.readouterr().out.splitlines()
    runs = [ln.split() for ln in lines if ln.split()[:2] == ["64", "120"]]
    # four runs, the modes alternating, then one summary row per mode
    assert [r[2] for r in runs] == ["rigid", "pw_rigid", "rigid", "pw_rigid", "rigid", "pw_rigid"]
    assert any(ln.startswith("summary") for ln in lines)
    for mode, row in zip(("rigid", "pw_rigid"), runs[4:]):
        assert row[4] == "1"  # every run was the first on its cluster
        fps = [float(r[6]) for r in runs[:4] if r[2] == mode]
        median, lo, hi = (float(v) for v in row[5:8])
        assert (lo, hi) == (round(min(fps), 1), round(max(fps), 1))
        # each printed figure is rounded to 0.1: the mean of two is off by <= 0.05, the
        # printed median by <= 0.05 more
        assert lo <= median <= hi and abs(median - sum(fps) / 2) <= 0.1 + 1e-9


def test_bench_motion_warm_runs_reuse_the_cluster_and_are_summarised_apart(tmp_path, capsys, monkeypatch):
    import calcium_dask.cluster

    bench = _load("bench_motion")
    out = tmp_path / "out"
    out.mkdir()
    clusters = []
    connect = calcium_dask.cluster.connect
    monkeypatch.setattr(calcium_dask.cluster, "connect", lambda **kw: clusters.append(kw) or connect(**kw))
    bench.main(["--size", "64", "--frames", "120", "--workers", "1", "--modes", "rigid",
                "--dir", str(tmp_path / "movies"), "--out-dir", str(out), "--warm", "2"])
    lines = capsys.readouterr().out.splitlines()
    rows = [ln.split() for ln in lines if ln.split()[:2] == ["64", "120"]]
    assert [r[4] for r in rows] == ["1", "2", "3", "1", "2+"]  # three runs, then the summary
    assert len(clusters) == 1  # the three runs shared one cluster
    later = [float(r[6]) for r in rows[1:3]]
    median, lo, hi = (float(v) for v in rows[4][5:8])
    assert (lo, hi) == (round(min(later), 1), round(max(later), 1))
    assert list(out.iterdir()) == []  # every run's output is deleted


@pytest.mark.slow
def test_bench_motion_accuracy_scores_a_simulated_movie_against_its_ceiling(tmp_path, capsys):
    from calcium_dask.datasets import GroundTruth
    from calcium_dask.io import open_movie
    from calcium_dask.datasets.scoring import score_mean_image

    bench = _load("bench_motion_accuracy")
    sim = ["--set", "T=200", "--set", "H=80", "--set", "W=80", "--set", "K=8", "--set", "nr_mean_free=false",
           "--set", "nr_timescale_s=4"]
    rows = bench.main(["--preset", "small", "--seeds", "3", *sim, "--dir", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("command: python ") and "nr_mean_free=false" in lines[0]
    (row,) = rows
    preset, seed, rmse, crisp, corr, ceiling, gap = lines[-1].split()[:7]
    assert (preset, seed) == ("small", "3") and float(rmse) == round(row["rmse"], 3) and row["rmse"] < 0.2
    assert float(gap) == round(row["ceiling"] - row["corr"], 5)
    assert abs(row["crisp"] - 1) < 0.03 and abs(row["ceiling"] - row["corr"]) < 0.001
    # the ceiling keeps the movie's mean deformation: the true motion undone entirely does
    # better, and this movie's mean deformation is not negligible
    (movie_dir,) = [d for d in tmp_path.iterdir() if d.name.startswith("small_3_")]
    with np.load(movie_dir / "truth.npz") as z:
        truth = {k: z[k] for k in ("shifts", "nr_field", "nr_By", "nr_Bx", "clean_mean")}
    raw = open_movie(str(movie_dir / "movie.tif")).data
    exact = score_mean_image(bench.truth_mean(raw, truth, keep_static=False), truth["clean_mean"])["corr"]
    assert exact > 0.9995 and exact - row["ceiling"] > 1e-3  # here 0.9998 and 0.004
    assert GroundTruth.load(movie_dir / "truth.npz").params.nr_mean_free is False


@pytest.mark.slow
def test_bench_planes_times_a_session_against_its_planes_and_scores_both(tmp_path, capsys, client):
    bench = _load("bench_planes")
    bench.main(["--size", "48", "--frames", "60", "--planes", "2", "--repeat", "1", "--no-warmup",
                "--dir", str(tmp_path / "sim")], client=client)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("command: python benchmarks/bench_planes.py --size 48")
    repeat = next(ln for ln in lines if ln.startswith("repeat 1:"))
    total = float(repeat.split("one by one ")[1].split(" s")[0])
    session = float(repeat.split("session ")[1].split(" s")[0])
    # the printed times are rounded to 0.1 s
    assert abs(float(repeat.rsplit("ratio ", 1)[1]) - session / total) <= 0.06 / total * (1 + session / total)
    assert any(ln.startswith("summary: session / sum of single runs: median") for ln in lines)
    rows = [ln.split() for ln in lines if ln.split() and ln.split()[0] in ("0", "1")]
    assert [r[0] for r in rows] == ["0", "1"]
    for _, f1_s, f1_a, sh_s, sh_a in rows:  # the same planes, the same results
        assert f1_s == f1_a and sh_s == sh_a and 0 <= float(f1_s) <= 1
    assert "F1 0.0000 (target <= 0.01: met)" in lines[-1]
    stores = [p for p in (tmp_path / "sim").iterdir() if p.name.startswith("stores_")]
    assert stores == []  # every results store deleted
    assert sorted(p.name for p in (tmp_path / "sim").glob("*.tif")) == ["alone0.tif", "alone1.tif", "session.tif"]


@pytest.mark.slow
def test_bench_tracking_scores_registration_after_the_pipeline_and_cleans_up(tmp_path, capsys):
    bench = _load("bench_tracking")
    work = tmp_path / "work"
    results = bench.main(["--settings", "caiman2", "--size", "64", "--frames", "100", "--workers", "1",
                          "--scaling", "3", "60", "--scaling-size", "160", "--dir", str(work)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("command: python ") and "--scaling-size" in lines[0]
    (sc,) = results.values()
    score_line = next(ln for ln in lines if ln.strip().startswith("pairs among units found on both days"))
    assert f"precision {sc['precision']:.4f}, recall {sc['recall']:.4f}" in score_line
    assert 0 <= sc["recall"] <= 1 and sc["pairs_true"] >= 1  # two 64 px days share a few neurons
    scaling = [ln for ln in lines if ln.strip().startswith("pairs: precision")]
    assert scaling and "tracked as one" in scaling[0]
    assert any("matching + consistent identities" in ln and "MiB" in ln for ln in lines)
    assert not work.exists()  # movies and per-day results are deleted without --keep


def test_bench_patch_times_a_patch_and_checks_its_fit(capsys):
    row = _load("bench_patch").main(["--frames", "300", "--side", "31", "--repeat", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("command: python ") and "--frames 300" in lines[0]
    side, frames, first, median, lo, hi, corr = lines[-1].split()
    assert (side, frames) == ("31", "300") and float(median) == round(row["median"], 3)
    assert float(first) > 0 and lo == hi == median  # one timed call
    assert row["footprint_corr_min"] > 0.9  # the fit it timed found the planted neurons


@pytest.mark.slow
def test_bench_startup_times_the_cli_and_a_whole_run(tmp_path, capsys):
    rows = _load("bench_startup").main(["--size", "48", "--frames", "80", "--workers", "1", "--cli-repeat", "1",
                                        "--dir", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("command: python ") and "--frames 80" in lines[0]
    assert lines[1].startswith("calcium-dask --version: median ") and lines[2].startswith("calcium-dask --help: ")
    header = lines[-2].split()
    assert header == ["run", "wall", "workers_up", "first_task", "motion", "cnmf", "evaluate", "in_stages"]
    (row,) = rows
    # the probe saw the worker start and the first task, in that order, within the run
    assert 0 < row["workers_up"] < row["first_task"] < row["wall"]
    assert 0 < row["in_stages"] < 1 and lines[-1].split()[-1] == f"{100 * row['in_stages']:.0f}%"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["movie_48_80.tif", "params.json", "truth.npz"]


@pytest.mark.slow
def test_bench_long_measures_every_process_at_each_length_and_cleans_up(tmp_path, capsys):
    _load("bench_long").main(["--frames", "1000", "2000", "--base", "1000", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "command: python benchmarks/bench_long.py --frames 1000 2000" in out
    for name in ("client", "scheduler", "worker1", "worker2"):
        assert f"peak RSS {name}" in out
    assert "s/frame  motion" in out and "accepted F1" in out
    assert "client peak RSS in (pass): after " in out and "(all units " in out  # the client's passes, detection
    assert not list(tmp_path.glob("long_*.zarr"))


@pytest.mark.slow
def test_bench_save_movie_runs_each_form_and_compares_their_frames(capsys):
    _load("bench_save_movie").main(["--preset", "small", "--set", "T=400", "--repeats", "1"])
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in out if line.split()[:1] in (["float32"], ["compact"], ["none"])}
    assert set(rows) == {"float32", "compact", "none"}
    assert float(rows["none"][-6]) == 0.0 < float(rows["compact"][-6]) < float(rows["float32"][-6])  # movie/in
    assert "float32 0.000" in out[-1] and "none 0.000" in out[-1]


@pytest.mark.slow
def test_bench_report_opens_a_long_report_beside_the_demos(capsys):
    pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("needs Debian's chromium")
    _load("bench_report").main(["--factor", "3", "--repeats", "1"])
    out = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in out if line.split()[:1] in (["1000"], ["3000"])]
    assert [r[0] for r in rows] == ["1000", "3000"] and all(float(r[3]) > 0 for r in rows)
    assert out[-1].startswith("open time, long over demo:")


@pytest.mark.slow
def test_bench_onephoton_scores_a_miniscope_movie_and_cleans_up(tmp_path, capsys):
    bench = _load("bench_onephoton")
    work = tmp_path / "work"
    bench.main(["--size", "64", "--frames", "300", "--seeds", "5", "--workers", "1", "--memory-limit", "1GB",
                "--dir", str(work)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("command: python benchmarks/bench_onephoton.py")
    (line,) = [x for x in lines if x.startswith("seed 5:")]
    rmse, none = (float(v) for v in re.search(r"motion RMSE ([\d.]+) px \(uncorrected ([\d.]+)\)", line).groups())
    assert rmse < none and float(re.search(r"accepted F1 ([\d.]+)", line).group(1)) > 0.3, line
    assert not work.exists()
