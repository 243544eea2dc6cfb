"""`calcium-dask run` killed with SIGKILL in each stage: never looks complete, resumes to the same result.

Each kill takes the whole process group (the CLI, its LocalCluster's nannies and workers),
as a power cut or an OOM killer would. Kill points are drawn at random inside each stage,
found by polling the store (the corrected movie's array appears when motion correction
starts, the root document is rewritten when a run starts, the stage marks when a stage
ends); set ``CALCIUM_DASK_FAULT_SEED`` to replay a sequence.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from calcium_dask import StoreError
from calcium_dask.pipeline import run_pipeline
from calcium_dask.compute import set_quiet
from calcium_dask.results import open_results

from .conftest import COMPARED, PARAMS, assert_same_results, snapshot

SEED = int(os.environ.get("CALCIUM_DASK_FAULT_SEED", "20240611"))
START_TIMEOUT = 120  # a cold CLI (imports, cluster start, numba caches) under load


def _root(out: Path) -> dict:
    try:
        return json.loads((out / "zarr.json").read_text()).get("attributes", {})
    except (FileNotFoundError, ValueError):
        return {}


def _stages(out: Path) -> set[str]:
    return set(_root(out).get("stages", {}))


def _start(movie: Path, out: Path, params_file: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "calcium_dask", "run", str(movie), "--out", str(out),
           "--params", str(params_file), "--workers", "2", "--quiet"]
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(what: str, cond, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (code {proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            _kill_group(proc)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def _group_members(pgid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["pid"]):
        try:  # a zombie is dead already (waiting for init to reap it)
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (ProcessLookupError, psutil.Error):
            pass
    return out


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the run's whole process group and check that nothing of it survives."""
    pgid = proc.pid  # start_new_session: the CLI leads its own group
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while (left := _group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes of the killed run survive: {[p.pid for p in left]}"


def _assert_consistent(out: Path, reference, running: str, before: set[str]) -> set[str]:
    """After a kill: what is marked complete is complete and right; nothing else looks complete."""
    after = _stages(out)
    assert before <= after <= set(COMPARED)
    if running not in before:
        # the kill landed inside `running`: its mark may only exist if the stage ended in the
        # few milliseconds between our last look and the kill (possible for the short evaluation)
        assert running not in after or running == "evaluate", (running, after)
    done = [s for s in COMPARED if s in after]
    if done:
        expected = snapshot_keys(done)
        assert_same_results(snapshot(str(out), stages=done),
                            {k: v for k, v in reference.arrays.items() if k in expected})
    if "cnmf" not in after:
        with pytest.raises(StoreError):
            open_results(str(out))
    return after


def snapshot_keys(stages: list[str]) -> set[str]:
    return {f"{g or ''}/{n}" for s in stages for g, names in COMPARED[s].items() for n in names}


def test_sigkill_in_each_stage_then_resume(sim_small, reference, params_file, tmp_path):
    rng = random.Random(SEED)
    out, log = tmp_path / "run.zarr", tmp_path / "cli.log"
    movie = Path(sim_small)
    journal = []

    # 1. killed during motion correction (its output array exists once the stage has started)
    t0 = time.time()
    proc = _start(movie, out, params_file, log)
    _wait_for("motion correction to start", (out / "movie" / "corrected" / "zarr.json").exists, proc, log)
    time.sleep(rng.uniform(0.0, 0.5))
    before = _stages(out)
    _kill_group(proc)
    after = _assert_consistent(out, reference, "motion", before)
    journal.append(("motion", round(time.time() - t0, 1), sorted(after)))

    # 2. resumed, killed during CNMF (motion is redone if it was not marked; the root document
    #    is rewritten when the run starts, and CNMF starts as soon as motion is marked)
    t0 = time.time()
    start_ns = time.time_ns()
    proc = _start(movie, out, params_file, log)

    def cnmf_started() -> bool:
        try:
            fresh = (out / "zarr.json").stat().st_mtime_ns >= start_ns
        except FileNotFoundError:
            return False
        return fresh and "motion" in _stages(out)

    _wait_for("CNMF to start", cnmf_started, proc, log)
    time.sleep(rng.uniform(0.2, max(0.5, 0.8 * reference.seconds["cnmf"])))
    before = _stages(out)
    _kill_group(proc)
    after = _assert_consistent(out, reference, "cnmf", before)
    journal.append(("cnmf", round(time.time() - t0, 1), sorted(after)))

    # 3. resumed, killed during evaluation (starts when CNMF is marked)
    t0 = time.time()
    proc = _start(movie, out, params_file, log)
    _wait_for("evaluation to start", lambda: "cnmf" in _stages(out), proc, log)
    time.sleep(rng.uniform(0.0, 0.1))
    before = _stages(out)
    _kill_group(proc)
    after = _assert_consistent(out, reference, "evaluate", before)
    journal.append(("evaluate", round(time.time() - t0, 1), sorted(after)))

    # 4. a rerun (the same resume logic as the CLI, on the session's cluster) finishes and
    #    equals the undisturbed run
    set_quiet(True)
    try:
        summary = run_pipeline(str(movie), str(out), PARAMS)
    finally:
        set_quiet(False)
    status = {r["stage"]: r["status"] for r in summary.rows}
    for stage in ("motion", "cnmf", "evaluate"):
        assert status[stage] == ("done before" if stage in after else "ran"), (status, journal)
    assert _stages(out) == {"motion", "cnmf", "evaluate"}
    assert_same_results(snapshot(str(out)), reference.arrays)
    res = open_results(str(out))
    assert len(res.idx_components) == int(reference.arrays["/accepted"].sum())
    print(f"seed {SEED}; kills (stage, seconds, marks after the kill): {journal}")


def test_results_of_an_unfinished_cnmf_rerun_do_not_look_complete(reference, tmp_path, monkeypatch):
    import shutil

    import calcium_dask.pipeline as pipeline

    out = tmp_path / "rerun.zarr"
    shutil.copytree(reference.url, out)

    def crash(*args, **kwargs):
        raise RuntimeError("killed")  # dies inside the stage, after the pipeline cleared its mark

    monkeypatch.setitem(pipeline.STAGES, "cnmf", crash)
    with pytest.raises(RuntimeError, match="killed"):
        run_pipeline(_input_of(reference.url), str(out), PARAMS, from_stage="cnmf")
    assert _stages(out) == {"motion"}  # the marks are right ...
    with pytest.raises(StoreError):
        open_results(str(out))  # ... but the old units are served as the results


def _input_of(url: str) -> str:
    return _root(Path(url))["input"]
