"""Fixtures of the service tests: databases (SQLite and a real PostgreSQL), services, a live server, a movie."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

pytest.importorskip("fastapi")

from calcium_dask.service.app import Service, ServiceConfig, create_app  # noqa: E402
from calcium_dask.service.auth import create_token  # noqa: E402
from calcium_dask.service.db import Database  # noqa: E402
from calcium_dask.service.paths import AllowedRoots  # noqa: E402
from calcium_dask.service.runner import Runner  # noqa: E402

from .pg import PostgresCluster, find_bindir, wait_for  # noqa: E402

FINISHED = ("done", "failed", "cancelled")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL server; skipped only when its binaries are not installed."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install -y postgresql)")
    cluster = PostgresCluster.create(bindir)
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_database(pg_cluster) -> str:
    """One migrated PostgreSQL database for the tests (emptied before each)."""
    url = pg_cluster.create_database()
    d = Database(url)
    d.upgrade()
    d.close()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """An empty database of each kind: a new SQLite file, or the PostgreSQL one emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    url = request.getfixturevalue("pg_database")
    d = Database(url)
    with d.engine.begin() as conn:
        conn.execute(text("TRUNCATE tokens, batches, runs, run_stages, events, log_lines RESTART IDENTITY CASCADE"))
    d.close()
    return url


@pytest.fixture
def db(db_url) -> Iterator[Database]:
    d = Database(db_url)
    d.upgrade()
    yield d
    d.close()


@pytest.fixture
def sqlite_db(tmp_path) -> Iterator[Database]:
    """A new SQLite database (for the tests that need no second database)."""
    d = Database(f"sqlite:///{tmp_path / 'service.db'}")
    d.upgrade()
    yield d
    d.close()


@pytest.fixture(scope="session")
def movie(tmp_path_factory) -> Path:
    """A small simulated movie (300 frames of 64x64, 6 neurons) in a folder of its own."""
    from calcium_dask.datasets import SimulationParams, write_movie

    d = tmp_path_factory.mktemp("service_raw")
    return write_movie(d / "movie.tif", SimulationParams.preset("small", T=300, H=64, W=64, K=6, seed=3))


@dataclass
class Harness:
    """A service on a database, with a token and a results folder under its allowed roots."""

    service: Service
    token: str
    results: Path
    movie: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def body(self, store: str = "run", **extra) -> dict:
        """A submission of the movie into ``results/<store>.zarr``, with ``extra`` fields."""
        return {"input": str(self.movie), "output": str(self.results / f"{store}.zarr"), "params": {"fr": 30},
                **extra}


def make_harness(db: Database, tmp_path: Path, movie: Path, *, client=None, max_concurrent: int = 2,
                 **config) -> Harness:
    results = tmp_path / "results"
    results.mkdir(parents=True, exist_ok=True)
    roots = AllowedRoots.from_options([str(movie.parent), str(results)])
    runner = Runner(db, roots, "test-service", client=client, max_concurrent=max_concurrent, poll=0.1) \
        if client is not None else None
    service = Service(ServiceConfig(roots, tmp_path / "state", **config), db, runner)
    return Harness(service, create_token(db, "tester"), results, movie)


@pytest.fixture
def harness(db, tmp_path, movie) -> Harness:
    """A service without a runner: runs stay queued (API tests)."""
    return make_harness(db, tmp_path, movie)


@pytest.fixture
def api(harness):
    """A test client of ``harness``'s app (its token in the headers)."""
    from fastapi.testclient import TestClient

    with TestClient(create_app(harness.service), headers=harness.headers) as c:
        yield c


@pytest.fixture
def running(db, tmp_path, movie, client):
    """A service whose runner runs on the session's local cluster, and its test client."""
    from fastapi.testclient import TestClient

    h = make_harness(db, tmp_path, movie, client=client)
    with TestClient(create_app(h.service), headers=h.headers) as c:
        yield h, c


@contextmanager
def live_server(service: Service) -> Iterator[str]:
    """``service`` served by uvicorn in a thread on a free loopback port; its URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def wait_state(get, run_id: int, states=FINISHED, timeout: float = 120.0) -> dict:
    """Poll ``get(path)`` (a test client's or httpx's) until the run is in one of ``states``."""
    def ready():
        run = get(f"/api/runs/{run_id}").json()
        return run if run["state"] in states else None

    ready.__name__ = f"run {run_id} to be {'/'.join(states)}"
    return wait_for(ready, timeout=timeout, interval=0.1)


def wait_stage(get, run_id: int, stage: str, timeout: float = 120.0) -> dict:
    """Poll until the run's ``stage`` is done; the run."""
    def ready():
        run = get(f"/api/runs/{run_id}").json()
        done = {s["stage"] for s in run["stages"] if s["state"] == "done"}
        if run["state"] in FINISHED and stage not in done:
            raise AssertionError(f"run {run_id} ended {run['state']} before {stage}: {run['message']}")
        return run if stage in done else None

    ready.__name__ = f"stage {stage} of run {run_id}"
    return wait_for(ready, timeout=timeout, interval=0.05)


__all__ = ["Harness", "make_harness", "live_server", "wait_state", "wait_stage"]
