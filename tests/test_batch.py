"""``calcium-dask batch``: sessions checked up front, run side by side on one cluster, resumable."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from calcium_dask.batch import ManifestError, load_manifest
from calcium_dask.cli import demo_params, main
from calcium_dask.datasets import SimulationParams, write_movie
from calcium_dask.store import ResultsStore

PARAMS = demo_params(30.0).replace(**{"motion.strides": (32, 32), "motion.overlaps": (16, 16)})


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two tiny simulated sessions and a file named like a movie that is not one."""
    d = tmp_path_factory.mktemp("batch")
    for i in (1, 2):
        sp = SimulationParams.preset("small", T=150, H=64, W=64, K=6, seed=i)
        write_movie(d / "raw" / f"s{i}" / "movie.tif", sp, workers=1)
    (d / "raw" / "broken").mkdir()
    (d / "raw" / "broken" / "movie.tif").write_text("not a movie\n")
    return d


def _manifest(d: Path, sessions: list[dict[str, Any]], **top: Any) -> Path:
    path = d / "manifest.yaml"
    path.write_text(yaml.safe_dump({"params": PARAMS.to_dict(), **top, "sessions": sessions}, sort_keys=False))
    return path


def _sessions() -> list[dict[str, Any]]:
    """Relative paths: relative to the manifest's folder."""
    return [
        {"name": "s1", "input": "raw/s1/movie.tif", "output": "out/s1.zarr"},
        {"name": "s2", "input": "raw/s2/movie.tif", "output": "out/s2.zarr", "until": "motion",
         "overrides": {"merging.merge_thr": 0.8}},
        {"name": "broken", "input": "raw/broken/movie.tif", "output": "out/broken.zarr"},
    ]


def _batch(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(["batch", *args])
    out, err = capsys.readouterr()
    return e.value.code, out, err


def _read_csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {row["session"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def first_run(client, data):
    """The batch once: s1 whole, s2 up to motion, broken fails (after passing validation)."""
    path = _manifest(data, _sessions())
    out, err = io.StringIO(), io.StringIO()  # capsys is per test: capture this module-wide run by hand
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
        main(["batch", str(path), "--scheduler", client.scheduler.address, "--summary", str(data / "summary.csv")])
    return e.value.code, out.getvalue(), err.getvalue(), data


def test_failing_session_is_reported_and_the_others_finish(first_run):
    code, out, err, d = first_run
    assert code == 1, err
    rows = _read_csv(d / "summary.csv")
    assert list(rows) == ["s1", "s2", "broken"]
    assert rows["s1"]["status"] == "done" and int(rows["s1"]["units"]) > 0
    assert 0 < int(rows["s1"]["accepted"]) <= int(rows["s1"]["units"])
    assert rows["s2"]["status"] == "done" and rows["s2"]["units"] == "" and rows["s2"]["accepted"] == ""
    assert rows["broken"]["status"].startswith("failed: ") and "broken/movie.tif" in rows["broken"]["status"]
    assert "\n" not in rows["broken"]["status"]
    assert set(ResultsStore(str(d / "out" / "s1.zarr")).stages()) == {"motion", "cnmf", "evaluate"}
    assert set(ResultsStore(str(d / "out" / "s2.zarr")).stages()) == {"motion"}
    assert "broken" in out and "s1" in out  # the rich table


def test_sessions_are_isolated(first_run):
    *_, d = first_run
    p1 = ResultsStore(str(d / "out" / "s1.zarr")).root(mode="r").attrs["params"]
    p2 = ResultsStore(str(d / "out" / "s2.zarr")).root(mode="r").attrs["params"]
    assert p1["merging"]["merge_thr"] == 0.85 and p2["merging"]["merge_thr"] == 0.8
    assert p1 == PARAMS.to_dict()


def test_progress_lines_name_their_session(first_run):
    _, _, err, _ = first_run
    tagged = [line for line in err.splitlines() if line.startswith("[")]
    assert all(re.fullmatch(r"\[(s1|s2|broken)\] \S.*", line) for line in tagged), tagged
    for stage in ("motion", "cnmf", "evaluate"):
        assert any(line.startswith(f"[s1] {stage}: done in ") for line in tagged), tagged
    assert any(line.startswith("[broken] failed: ") for line in tagged)
    assert "1 of 3 sessions failed" in err


def test_rerun_skips_complete_sessions_and_resumes_the_others(first_run, client, capsys):
    _, _, _, d = first_run
    sessions = _sessions()
    del sessions[1]["until"]  # s2 now goes on to cnmf and evaluate
    path = _manifest(d, sessions)
    code, _, err = _batch(capsys, str(path), "--scheduler", client.scheduler.address, "--quiet",
                          "--max-concurrent", "3", "--summary", str(d / "summary.json"))
    assert code == 1
    rows = {r["session"]: r for r in json.loads((d / "summary.json").read_text())}
    assert rows["s1"]["status"] == "skipped (complete)" and rows["s1"]["units"] > 0
    assert rows["s2"]["status"] == "resumed (from cnmf)" and rows["s2"]["accepted"] is not None
    assert rows["broken"]["status"].startswith("failed: ")
    assert not [line for line in err.splitlines() if line.startswith("[")]  # --quiet


def test_all_sessions_done_exits_zero(first_run, client, capsys):
    _, _, _, d = first_run
    path = _manifest(d, _sessions()[:1])
    code, out, _ = _batch(capsys, str(path), "--scheduler", client.scheduler.address, "--quiet")
    assert code == 0 and "skipped (complete)" in out


# -- validation: everything is checked before anything runs ----------------------------------

DROP = object()  # a session key to delete

#: case -> (top-level keys set, {session index: keys set}, the error expected)
CASES: dict[str, tuple[dict, dict, str]] = {
    "unknown top-level key": ({"sesions": []}, {}, r"unknown key 'sesions' \(did you mean 'sessions'"),
    "unknown session key": ({}, {0: {"outptu": "x.zarr"}},
                            r"session 's1': unknown key 'outptu' \(did you mean 'output'"),
    "missing input file": ({}, {1: {"input": "raw/s3/movie.tif"}},
                           r"session 's2': input .*raw/s3/movie.tif does not exist"),
    "glob matching nothing": ({}, {1: {"input": "raw/s2/*.h5"}}, r"session 's2': input .*no file matches"),
    "same output": ({}, {1: {"output": "out/../out/s1.zarr"}},
                    r"sessions 's1' and 's2' write the same results store"),
    "nested outputs": ({}, {1: {"output": "out/s1.zarr/inner.zarr"}}, r"nested results stores"),
    "output inside an input": ({}, {1: {"output": "raw/s1/movie.tif/r.zarr"}}, r"inside the input of session 's1'"),
    "duplicate name": ({}, {1: {"name": "s1"}}, r"two sessions are named 's1'"),
    "unknown parameter override": ({}, {0: {"overrides": {"merge_thresh": 0.8}}},
                                   r"session 's1': overrides: .*merge_thresh"),
    "out-of-range override": ({}, {0: {"overrides": {"merging.merge_thr": 7}}},
                              r"session 's1': overrides: .*merge_thr"),
    "bad shared params": ({"params": {"gSigg": [4, 4]}}, {}, r"params: .*gSigg"),
    "unknown stage": ({}, {0: {"until": "cmnf"}}, r"unknown stage 'cmnf'"),
    "missing output": ({}, {0: {"output": DROP}}, r"session 's1': 'output' is missing"),
    "bad name": ({}, {0: {"name": "a b"}}, r"'name' must be"),
    "no sessions": ({"sessions": []}, {}, r"'sessions' must be a non-empty list"),
    "output outside the roots": ({"allowed_roots": ["raw", "out"]}, {0: {"output": "elsewhere/s1.zarr"}},
                                 r"session 's1': output .*elsewhere/s1.zarr is outside the allowed roots"),
    "input escaping a root with ..": ({"allowed_roots": ["raw/s1", "out"]}, {1: {"input": "raw/s1/../s2/movie.tif"}},
                                      r"session 's2': input .*raw/s2/movie.tif is outside the allowed roots"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_manifest_is_rejected_before_anything_runs(data, tmp_path, capsys, case):
    top, changes, message = CASES[case]
    d = tmp_path / "m"
    d.mkdir()
    (d / "raw").symlink_to(data / "raw")
    sessions = _sessions()
    for i, keys in changes.items():
        for k, v in keys.items():
            sessions[i].pop(k) if v is DROP else sessions[i].__setitem__(k, v)
    path = _manifest(d, sessions)
    if top:
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **top}, sort_keys=False))
    code, out, err = _batch(capsys, str(path), "--scheduler", "tcp://127.0.0.1:1")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("calcium-dask: error: "), err
    assert re.search(message, lines[0]), lines[0]
    assert "cannot reach" not in err
    assert not (d / "out").exists() and not (d / "elsewhere").exists()


def test_every_problem_is_named_in_the_one_line(data, tmp_path):
    sessions = _sessions()
    sessions[0]["outptu"] = "x"
    sessions[2]["name"] = "s2"
    with pytest.raises(ManifestError) as e:
        load_manifest(_manifest(data, sessions))
    assert "outptu" in str(e.value) and "two sessions are named 's2'" in str(e.value)


def test_symlink_out_of_the_roots_is_rejected(data, tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link.tif").symlink_to(data / "raw" / "s1" / "movie.tif")
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"allowed_roots": ["root"], "sessions": [
        {"name": "x", "input": "root/link.tif", "output": "root/x.zarr"}]}))
    with pytest.raises(ManifestError, match="outside the allowed roots"):
        load_manifest(path)


def test_summary_suffix_is_checked_first(data, capsys):
    code, _, err = _batch(capsys, str(_manifest(data, _sessions())), "--summary", "out.txt")
    assert code == 2 and "must end in .csv or .json" in err


def test_inputs_are_checked_through_fsspec(tmp_path):
    """URLs are checked with their filesystem (here fsspec's in-memory one)."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/batch-test/present.tif", b"II*\x00")
    sessions = [{"name": "a", "input": "memory://batch-test/present.tif", "output": str(tmp_path / "a.zarr")},
                {"name": "b", "input": "memory://batch-test/absent.tif", "output": str(tmp_path / "b.zarr")}]
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"sessions": sessions}))
    with pytest.raises(ManifestError) as e:
        load_manifest(path)
    assert "session 'b': input memory://batch-test/absent.tif does not exist" in str(e.value)
    assert "session 'a'" not in str(e.value)
    fs.rm("/batch-test", recursive=True)


def test_deploy_example_manifest_passes_every_check_but_storage(monkeypatch, tmp_path):
    """The ConfigMap's manifest (s3:// URLs of an example lab) is well formed."""
    import calcium_dask.batch as batch

    docs = yaml.safe_load_all((Path(__file__).parents[1] / "deploy" / "configmap-manifest.yaml").read_text())
    text = next(d for d in docs if d and d.get("kind") == "ConfigMap")["data"]["manifest.yaml"]
    (tmp_path / "manifest.yaml").write_text(text)
    checked = []
    monkeypatch.setattr(batch, "_check_paths", lambda s, roots, problems: checked.append(s.name))
    m = load_manifest(tmp_path / "manifest.yaml")
    assert checked == [s.name for s in m.sessions] and len(m.sessions) == 3
    by_name = {s.name: s for s in m.sessions}
    assert by_name["m01-2024-05-02"].params.motion.max_shifts == (10, 10)
    assert by_name["m02-2024-05-01"].until == "motion"
