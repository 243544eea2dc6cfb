"""The benchmark scripts run (on a tiny movie) and clean up after themselves."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
