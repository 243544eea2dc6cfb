"""benchmarks/bench_service.py runs (tiny sizes), checks every run, prints its figures, cleans up."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bench_service_loads_the_service_while_runs_compute(tmp_path, capsys, monkeypatch):
    pytest.importorskip("fastapi")
    pytest.importorskip("aiohttp")
    bench = _load("bench_service")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its work folder, deleted at the end
    out = bench.main(["--frames", "600", "--size", "64", "--submissions", "3", "--reads", "20",
                      "--concurrency", "8", "2", "--workers", "1", "--until", "motion", "--timeout", "300"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("command: python ") and "--submissions 3" in lines[0]
    assert (out["submitted"], out["listed"], out["once"], out["done"], out["errors"]) == (3, 5, True, True, [])
    assert [lv["concurrency"] for lv in out["levels"]] == [8, 2]
    for lv, line in zip(out["levels"], [ln for ln in lines if "GET /api/runs/{id}" in ln]):
        assert 0 < lv["read_p50_ms"] <= lv["read_p99_ms"] and f"p99 {lv['read_p99_ms']:.1f} ms" in line
    assert lines[-1] == "runs: 5 submitted, 5 listed, each exactly once: True, all done: True"
    assert list(tmp_path.iterdir()) == []
