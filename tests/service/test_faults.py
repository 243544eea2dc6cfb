"""Faults: the scheduler unreachable, a worker killed, PostgreSQL restarted, a read-only or full database.

Each gives a clear state and message, and no run is lost.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from calcium_dask.service.app import create_app
from calcium_dask.service.db import Database
from calcium_dask.service.runner import Runner
from calcium_dask.service.status import TTL as STATUS_TTL

from .conftest import make_harness, wait_state
from .pg import free_port, wait_for


def test_runs_wait_for_an_unreachable_scheduler_and_run_once_it_is_up(sqlite_db, tmp_path, movie):
    from distributed import LocalCluster

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    h = make_harness(sqlite_db, tmp_path, movie)
    h.service.runner = Runner(sqlite_db, h.service.config.roots, "svc", scheduler=address, poll=0.1,
                              connect_timeout=1)
    with TestClient(create_app(h.service), headers=h.headers) as api:
        created = api.post("/api/runs", json=h.body("late", until="motion"))
        assert created.status_code == 201
        run = wait_for(lambda: (r := api.get("/api/runs/1").json())["message"] and r, timeout=30)
        assert run["state"] == "queued"
        assert run["message"].startswith(f"waiting for the Dask scheduler: cannot reach the Dask scheduler at {address}")
        health = api.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        assert health.json()["scheduler"].startswith("unreachable: cannot reach")
        late = api.post("/api/runs", json=h.body("later", until="motion")).json()  # said at once
        assert late["message"].startswith("waiting for the Dask scheduler")
        with LocalCluster(scheduler_port=port, host="127.0.0.1", n_workers=1, threads_per_worker=2, processes=False,
                          dashboard_address="127.0.0.1:0"):
            runs = [wait_state(api.get, rid) for rid in (1, late["id"])]
            assert [r["state"] for r in runs] == ["done", "done"] and runs[0]["message"] is None
            assert api.get("/healthz").json()["status"] == "ok"


def test_a_worker_killed_mid_run_does_not_fail_the_run(sqlite_db, tmp_path, movie, client):
    h = make_harness(sqlite_db, tmp_path, movie, client=client)
    pids = client.run(os.getpid)
    with TestClient(create_app(h.service), headers=h.headers) as api:
        rid = api.post("/api/runs", json=h.body("killed")).json()["id"]

        def computing():
            run = api.get(f"/api/runs/{rid}").json()
            return any(s["state"] == "running" and s["total"] > 0 for s in run["stages"])

        wait_for(computing, timeout=120, interval=0.02)
        victim, pid = next(iter(pids.items()))
        os.kill(pid, signal.SIGKILL)
        run = wait_state(api.get, rid, timeout=180)
    assert run["state"] == "done", run["message"]
    client.wait_for_workers(2, timeout=60)  # the nanny started a new one
    assert pid not in client.run(os.getpid).values()


def test_postgresql_stopped_and_restarted_mid_run(pg_cluster, tmp_path, movie, client):
    db = Database(pg_cluster.create_database())
    db.upgrade()
    h = make_harness(db, tmp_path, movie, client=client)
    try:
        with TestClient(create_app(h.service), headers=h.headers) as api:
            rid = api.post("/api/runs", json=h.body("pg", until="cnmf")).json()["id"]
            wait_for(lambda: api.get(f"/api/runs/{rid}").json()["state"] == "running", timeout=60)
            pg_cluster.stop()
            time.sleep(STATUS_TTL + 0.1)  # the last status read is answered from memory that long
            down = api.get(f"/api/runs/{rid}")
            assert down.status_code == 503 and down.headers["retry-after"] == "5"
            detail = down.json()["detail"]
            assert detail.startswith("database unavailable (postgresql+psycopg://calcium:***@127.0.0.1:")
            assert pg_cluster.password not in detail and "\n" not in detail
            health = api.get("/healthz")
            assert health.status_code == 503 and health.json()["database"].startswith("unavailable: ")
            assert api.post("/api/runs", json=h.body("refused")).status_code == 503
            pg_cluster.start()
            run = wait_state(api.get, rid, timeout=180)
            assert run["state"] == "done", run["message"]
            assert [r["id"] for r in api.get("/api/runs").json()["runs"]] == [rid]  # one run, none half-made
            assert api.get("/healthz").status_code == 200
    finally:
        if db.ping() is not None:
            pg_cluster.start()
        db.close()


@pytest.mark.parametrize("how", ["uri", "chmod"])
def test_a_read_only_database_stops_the_service_with_one_line(tmp_path, capsys, how):
    from click.testing import CliRunner

    from calcium_dask.cli import cli, main

    path = tmp_path / "state" / "service.db"
    made = CliRunner().invoke(cli, ["serve", "create-token", "--db", f"sqlite:///{path}"])
    assert made.exit_code == 0
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root writes read-only files")
        path.chmod(0o444)
        path.parent.chmod(0o555)
        url = f"sqlite:///{path}"
    else:  # what SQLite reports for a read-only file, whoever runs the test
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    try:
        with pytest.raises(SystemExit) as code:
            main(["serve", "--db", url, "--state-dir", str(tmp_path / "state2"), "--allowed-root", str(tmp_path),
                  "--port", "0"])
    finally:
        path.parent.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert code.value.code == 2 and len(err) == 1
    assert "cannot write to the database (attempt to write a readonly database)" in err[0]


def test_a_full_database_refuses_writes_keeps_reads_and_leaves_nothing_half_written(sqlite_db, tmp_path, movie):
    h = make_harness(sqlite_db, tmp_path, movie)
    with TestClient(create_app(h.service), headers=h.headers) as api:
        assert api.post("/api/runs", json=h.body("first")).status_code == 201
        with sqlite_db.engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        event.listen(sqlite_db.engine, "connect",
                     lambda dbapi, _: dbapi.execute(f"PRAGMA max_page_count = {pages}"))  # no room to grow
        sqlite_db.engine.dispose()
        accepted, refused = 1, None
        for i in range(300):
            r = api.post("/api/runs", json=h.body(f"r{i}", name="n" * 190))
            if r.status_code != 201:
                refused = r
                break
            accepted += 1
        assert refused is not None and refused.status_code == 503
        assert refused.json()["detail"].endswith("database or disk is full")
        listed = api.get("/api/runs", params={"limit": 500})
        assert listed.status_code == 200 and listed.json()["total"] == accepted
        assert all(len(r["stages"]) == 3 for r in listed.json()["runs"])
