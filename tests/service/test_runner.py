"""Runs computing on a real local cluster: stages from the store's marks, resume, cancel, the queue."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from calcium_dask.service.app import create_app
from calcium_dask.store import ResultsStore

from .conftest import make_harness, wait_stage, wait_state
from .pg import wait_for


@pytest.fixture
def served(sqlite_db, tmp_path, movie, client):
    h = make_harness(sqlite_db, tmp_path, movie, client=client)
    with TestClient(create_app(h.service), headers=h.headers) as c:
        yield h, c


def test_a_run_goes_through_every_stage_as_its_store_records_them(served):
    h, api = served
    rid = api.post("/api/runs", json=h.body("full", params={"fr": 30, "K": 4})).json()["id"]
    run = wait_state(api.get, rid)
    assert run["state"] == "done", run["message"]
    marks = ResultsStore(run["output"]).stages()
    assert [s["stage"] for s in run["stages"]] == list(marks) == ["motion", "cnmf", "evaluate"]
    for stage in run["stages"]:
        assert stage["state"] == "done" and stage["progress"] == 1
        assert stage["seconds"] == marks[stage["stage"]]["seconds"] and stage["details"] == marks[stage["stage"]]
    assert (run["units"], run["accepted"]) == (marks["cnmf"]["units"], marks["evaluate"]["accepted"])
    assert run["units"] > 0 and run["progress"] == 1 and run["seconds"] > 0 and run["message"] is None
    log = api.get(f"/api/runs/{rid}/log").text
    assert "motion: motion correction:" in log and "tasks done in" in log and "[event] done" in log
    assert "cnmf: done in" in log and "evaluate: done in" in log
    report = api.get(f"/api/runs/{rid}/report")
    assert report.status_code == 200 and "<html" in report.text.lower()
    assert report.headers["content-security-policy"].startswith("sandbox allow-scripts")
    png = api.get(f"/api/runs/{rid}/images/correlation.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = api.get("/metrics").text
    assert 'calcium_dask_stage_duration_seconds_count{stage="cnmf"} 1.0' in metrics


def test_the_runner_records_runs_in_postgresql_too(running):
    h, api = running
    rid = api.post("/api/runs", json=h.body("pg", until="motion")).json()["id"]
    run = wait_state(api.get, rid)
    assert run["state"] == "done" and run["progress"] == 1, run["message"]
    (stage,) = run["stages"]
    assert stage["details"] == ResultsStore(run["output"]).stages()["motion"]
    assert "[event] done" in api.get(f"/api/runs/{rid}/log").text


def test_a_run_resumes_from_the_stages_its_store_has(served, client):
    from calcium_dask.params import Params
    from calcium_dask.pipeline import run_pipeline

    h, api = served
    out = h.results / "half.zarr"
    with client.as_current():
        run_pipeline(str(h.movie), str(out), Params.from_caiman({"fr": 30}), until="motion")
    motion_mark = ResultsStore(str(out)).stages()["motion"]
    rid = api.post("/api/runs", json=h.body("half")).json()["id"]
    run = wait_state(api.get, rid)
    assert run["state"] == "done", run["message"]
    assert ResultsStore(str(out)).stages()["motion"] == motion_mark  # not redone
    log = api.get(f"/api/runs/{rid}/log").text
    assert "resumed (from cnmf)" in log and "motion correction" not in log


def test_cancelling_a_running_run_cancels_its_tasks_then_retry_resumes(served, client):
    h, api = served
    rid = api.post("/api/runs", json=h.body("cancel")).json()["id"]

    def computing():
        run = api.get(f"/api/runs/{rid}").json()
        return any(s["state"] == "running" and s["total"] > 0 for s in run["stages"]) and run

    wait_for(computing, timeout=120, interval=0.05)
    r = api.post(f"/api/runs/{rid}/cancel")
    assert r.status_code == 202 and r.json()["state"] in ("running", "cancelled")
    run = wait_state(api.get, rid, timeout=60)
    assert run["state"] == "cancelled" and "cancelled while running" in run["message"]
    assert "evaluate" not in ResultsStore(run["output"]).stages()
    wait_for(lambda: all(not v for v in client.processing().values()), timeout=30)  # nothing left computing
    assert api.post(f"/api/runs/{rid}/retry").status_code == 202
    run = wait_state(api.get, rid)
    assert run["state"] == "done" and run["attempts"] == 2


def test_runs_wait_their_turn_at_most_max_concurrent_at_once(sqlite_db, tmp_path, movie, client):
    h = make_harness(sqlite_db, tmp_path, movie, client=client, max_concurrent=1)
    with TestClient(create_app(h.service), headers=h.headers) as api:
        ids = [api.post("/api/runs", json=h.body(f"q{i}", until="motion")).json()["id"] for i in range(3)]
        most = 0
        while True:
            runs = api.get("/api/runs").json()["runs"]
            most = max(most, sum(r["state"] == "running" for r in runs))
            if all(r["state"] in ("done", "failed", "cancelled") for r in runs):
                break
            time.sleep(0.05)
        assert most == 1 and all(r["state"] == "done" for r in runs)
        started = [api.get(f"/api/runs/{i}").json()["started_at"] for i in ids]
        assert started == sorted(started)  # first come, first served


def test_a_stage_is_shown_done_as_soon_as_its_mark_is_written(served):
    h, api = served
    rid = api.post("/api/runs", json=h.body("live")).json()["id"]
    run = wait_stage(api.get, rid, "motion")
    states = {s["stage"]: s["state"] for s in run["stages"]}
    if run["state"] == "running":  # seen mid-run: what follows motion is not done yet
        assert states["evaluate"] != "done"
    assert wait_state(api.get, rid)["state"] == "done"
