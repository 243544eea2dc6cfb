"""benchmarks/bench_service.py runs (tiny sizes), checks every run, prints its figures, cleans up."""

from __future__ import annotations

import importlib.util
import shutil
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
    readers = ["aiohttp", "ab"] if shutil.which("ab") else ["aiohttp"]  # ApacheBench: apache2-utils
    out = bench.main(["--frames", "600", "--size", "64", "--submissions", "3", "--reads", "20",
                      "--concurrency", "8", "2", "--workers", "1", "--until", "motion", "--timeout", "300",
                      "--reader", "both" if len(readers) == 2 else "aiohttp"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("command: python ") and "--submissions 3" in lines[0]
    n = 3 * len(readers)  # each reader's first burst has its own submissions
    assert (out["submitted"], out["listed"], out["once"], out["done"], out["errors"]) == (n, n + 2, True, True, [])
    assert [(lv["concurrency"], lv["reader"]) for lv in out["levels"]] == [(c, r) for c in (8, 2) for r in readers]
    for lv, line in zip(out["levels"], [ln for ln in lines if "GET /api/runs/{id}" in ln]):
        assert 0 <= lv["read_p50_ms"] <= lv["read_p99_ms"] and f"p99 {lv['read_p99_ms']:.1f} ms" in line
        assert f"by {lv['reader']}," in line and (lv["read_p99_ms"] > 0 or lv["reader"] == "ab")  # ab: whole ms
    assert lines[-1] == f"runs: {n + 2} submitted, {n + 2} listed, each exactly once: True, all done: True"
    assert list(tmp_path.iterdir()) == []
