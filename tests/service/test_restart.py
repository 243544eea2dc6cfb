"""Runs survive the service: SIGKILL it mid-run, start it again, and every run finishes once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

import httpx
import psutil
import pytest
from click.testing import CliRunner

from calcium_dask.cli import cli
from calcium_dask.service.db import Database, default_url
from calcium_dask.store import ResultsStore

from .conftest import wait_stage, wait_state
from .pg import wait_for

LISTENING = re.compile(r"calcium-dask service on (http://\S+)")


class ServiceProcess:
    """``calcium-dask serve`` in a subprocess on a free port (its stderr kept for the asserts)."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "calcium_dask", "serve", "--port", "0", *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = wait_for(self._url, timeout=120)

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())

    def _url(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the service exited ({self.proc.returncode}): {self.lines[-5:]}")
        found = [m.group(1) for ln in self.lines if (m := LISTENING.search(ln))]
        return found[0] if found else None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(60)
        self._reader.join(10)
        return code


@pytest.fixture
def state(tmp_path, movie):
    """A state folder with a token (made by the CLI), and a results folder."""
    results = tmp_path / "results"
    results.mkdir()
    out = CliRunner().invoke(cli, ["serve", "create-token", "--state-dir", str(tmp_path / "state"), "--name", "t"])
    assert out.exit_code == 0, out.output
    token = out.stdout.strip().splitlines()[0]
    return tmp_path / "state", token, results


def test_a_killed_service_resumes_its_runs_without_duplicates(state, movie, client):
    state_dir, token, results = state
    args = ["--state-dir", str(state_dir), "--scheduler", client.scheduler.address, "--max-concurrent", "1",
            "--allowed-root", str(movie.parent), "--allowed-root", str(results)]
    first = ServiceProcess(*args)
    assert first.url.startswith("http://127.0.0.1:")  # loopback by default
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=first.url, headers=headers, timeout=30) as api:
        body = {"input": str(movie), "params": {"fr": 30}}
        long_run = api.post("/api/runs", json={**body, "output": str(results / "a.zarr")}).json()["id"]
        waiting = api.post("/api/runs", json={**body, "output": str(results / "b.zarr"), "until": "motion"}).json()["id"]
        run = wait_stage(api.get, long_run, "motion")
    assert run["state"] == "running", "the run ended before the service could be killed"
    motion_mark = ResultsStore(str(results / "a.zarr")).stages()["motion"]
    children = psutil.Process(first.proc.pid).children(recursive=True)  # the runner process
    assert children
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"left running after the service was killed: {[p.cmdline() for p in alive]}"

    db = Database(default_url(state_dir))
    with db.engine.connect() as conn:  # what the killed service left: a run marked running
        from sqlalchemy import text

        states = dict(conn.execute(text("SELECT id, state FROM runs")).all())
    db.close()
    assert states == {long_run: "running", waiting: "queued"}

    second = ServiceProcess(*args)
    with httpx.Client(base_url=second.url, headers=headers, timeout=30) as api:
        done = [wait_state(api.get, rid) for rid in (long_run, waiting)]
        listed = api.get("/api/runs").json()
        log = api.get(f"/api/runs/{long_run}/log").text
    assert [r["state"] for r in done] == ["done", "done"], [r["message"] for r in done]
    assert listed["total"] == 2 and sorted(r["id"] for r in listed["runs"]) == [long_run, waiting]
    assert done[0]["attempts"] == 2 and done[1]["attempts"] == 1
    assert ResultsStore(str(results / "a.zarr")).stages()["motion"] == motion_mark  # resumed, not redone
    assert "requeued: the service running it stopped" in log and "resumed (from" in log
    assert second.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once done
    assert "calcium-dask service stopped (0 running runs queued again" in second.lines[-1]


def test_one_state_folder_serves_one_service(state, movie, capsys):
    from calcium_dask.cli import main
    from calcium_dask.service.server import ServeOptions, ServiceError, build

    state_dir, _, results = state
    opts = ServeOptions(roots=[str(results)], state_dir=str(state_dir), scheduler="tcp://127.0.0.1:9")
    first, _ = build(opts)
    with pytest.raises(ServiceError, match="another calcium-dask service is using this state folder"):
        build(opts)
    with pytest.raises(SystemExit) as code:
        main(["serve", "--state-dir", str(state_dir), "--allowed-root", str(results), "--port", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code.value.code == 2 and len(err) == 1 and "another calcium-dask service" in err[0]
    first.lock.close()  # released: the folder can be served again
    again, _ = build(opts)
    again.lock.close()
    first.db.close()
    again.db.close()


def test_serve_hides_its_startup_objects_from_the_collector(state, monkeypatch):
    """A full collection over the imported modules' objects took ~0.1-0.3 s, during which
    no request was answered; frozen before serving, they are never scanned again."""
    import gc

    import uvicorn

    from calcium_dask.service.server import ServeOptions, serve

    state_dir, _, results = state
    frozen = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: frozen.append(gc.get_freeze_count()))
    try:
        serve(ServeOptions(roots=[str(results)], state_dir=str(state_dir), scheduler="tcp://127.0.0.1:9",
                           port=0), echo=lambda line: None)
    finally:
        gc.unfreeze()
    assert frozen and frozen[0] > 100_000
