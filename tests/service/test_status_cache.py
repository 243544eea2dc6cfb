"""Status reads answered from memory: fresh for a short while, dropped on the service's own changes,
never without a valid token, with the same body and headers as the API's own answer."""

from __future__ import annotations

import asyncio
import sys
import time
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from calcium_dask.service.auth import TokenChecker, create_token, revoke_token
from calcium_dask.service.models import Run
from calcium_dask.service.status import StatusCache, StatusRefresher


def _rename(db, run_id: int, name: str) -> None:
    """Change a run behind the service's back (as another process's write would)."""
    with db.session() as s:
        s.execute(update(Run).where(Run.id == run_id).values(name=name))


def test_a_cached_status_is_what_the_api_rendered_until_it_expires(api, harness, monkeypatch):
    harness.service.status.ttl = 60.0
    rid = api.post("/api/runs", json=harness.body(name="first")).json()["id"]
    rendered = api.get(f"/api/runs/{rid}")
    assert rendered.status_code == 200 and rendered.json()["name"] == "first"
    _rename(harness.service.db, rid, "second")
    again = api.get(f"/api/runs/{rid}")
    assert again.json() == rendered.json() and again.content == rendered.content  # from memory
    assert again.headers["content-type"] == "application/json"
    assert again.headers["x-content-type-options"] == "nosniff"  # the middlewares still apply
    assert api.get("/api/runs").json()["runs"][0]["name"] == "second"  # other reads are not cached
    later = time.monotonic() + 61
    monkeypatch.setattr("calcium_dask.service.status.time", SimpleNamespace(monotonic=lambda: later))
    assert api.get(f"/api/runs/{rid}").json()["name"] == "second"  # expired: rendered again


def test_cancel_and_retry_drop_the_cached_status(api, harness):
    harness.service.status.ttl = 60.0
    rid = api.post("/api/runs", json=harness.body()).json()["id"]
    assert api.get(f"/api/runs/{rid}").json()["state"] == "queued"
    api.post(f"/api/runs/{rid}/cancel")
    assert api.get(f"/api/runs/{rid}").json()["state"] == "cancelled"
    api.post(f"/api/runs/{rid}/retry")
    assert api.get(f"/api/runs/{rid}").json()["state"] == "queued"


def test_a_cached_status_still_needs_a_valid_token(api, harness):
    harness.service.status.ttl = 60.0
    rid = api.post("/api/runs", json=harness.body()).json()["id"]
    assert api.get(f"/api/runs/{rid}").status_code == 200  # in memory now
    anonymous = TestClient(api.app)
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Basic {harness.token}"},
                    {"Cookie": "calcium_dask_token=wrong"}):
        r = anonymous.get(f"/api/runs/{rid}", headers=headers)
        assert r.status_code == 401 and r.json()["detail"].startswith("a valid token is required"), headers
    assert anonymous.get(f"/api/runs/{rid}", headers={"Cookie": f"calcium_dask_token={harness.token}"}).status_code == 200
    assert api.get("/api/runs/999").status_code == 404


def test_the_token_cache_answers_without_the_database_only_while_fresh(sqlite_db, monkeypatch):
    token = create_token(sqlite_db, "alice")
    tokens = TokenChecker(sqlite_db)
    assert tokens.cached(token) is None  # never checked
    tid = tokens.check(token)
    assert tid is not None and tokens.cached(token) == tid
    assert tokens.cached("cdt_other") is None and tokens.cached(None) is None
    revoke_token(sqlite_db, "alice")
    monkeypatch.setattr("calcium_dask.service.auth.CACHE_SECONDS", 0.0)
    fresh = TokenChecker(sqlite_db)
    assert fresh.check(token) is None and fresh.cached(token) is None


def test_the_status_cache_forgets_expired_runs_past_its_size(monkeypatch):
    monkeypatch.setattr("calcium_dask.service.status.MAX_ENTRIES", 4)
    cache = StatusCache(ttl=0.0)
    for i in range(4):
        cache.put(i, b"{}")
    assert all(cache.get(i) is None for i in range(4))  # expired at once
    cache.ttl = 60.0
    cache.put(9, b'{"id": 9}')
    assert cache.get(9) == b'{"id": 9}' and len(cache._entries) == 1
    cache.drop(9)
    assert cache.get(9) is None


def test_simultaneous_reads_of_an_expired_status_render_it_once(api, harness, monkeypatch):
    """Hundreds of polls arriving together after a pause rendered each run once per poll;
    they wait for the one rendering in progress instead."""
    from concurrent.futures import ThreadPoolExecutor

    rid = api.post("/api/runs", json=harness.body()).json()["id"]
    cache = harness.service.status
    cache.ttl = 60.0  # the refresher does not render it again meanwhile
    real_put, puts = cache.put, []

    def slow_put(run_id, body, since=None):  # the rendering takes a while: the other reads arrive meanwhile
        puts.append(run_id)
        time.sleep(0.3)
        real_put(run_id, body, since)

    monkeypatch.setattr(cache, "put", slow_put)
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: api.get(f"/api/runs/{rid}"), range(20)))
    assert {r.status_code for r in answers} == {200}
    assert len({r.content for r in answers}) == 1
    assert puts == [rid]


def test_reads_arriving_as_their_token_expires_ask_the_database_once(api, harness, monkeypatch):
    """The checker's cache forgets a token for all its requests at once: they wait for the
    one look-up, and are still answered from the status cache."""
    from concurrent.futures import ThreadPoolExecutor

    rid = api.post("/api/runs", json=harness.body()).json()["id"]
    assert api.get(f"/api/runs/{rid}").status_code == 200
    tokens = harness.service.tokens
    tokens._cache.clear()  # the token's entry expired
    real, looked = tokens._look_up, []

    def slow_look_up(d):
        looked.append(d)
        time.sleep(0.3)
        return real(d)

    monkeypatch.setattr(tokens, "_look_up", slow_look_up)
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: api.get(f"/api/runs/{rid}"), range(20)))
    assert {r.status_code for r in answers} == {200}
    assert len(looked) == 1


def test_a_polled_status_is_rendered_ahead_in_one_batch(api, harness, monkeypatch):
    """While a run is polled its status is rendered again before it expires, off the
    request path: reads after the first never render, yet see the database's changes."""
    import calcium_dask.service.api as api_module

    harness.service.status.ttl = 0.2
    ids = [api.post("/api/runs", json=harness.body(f"r{i}", name=f"first{i}")).json()["id"] for i in range(3)]
    for rid in ids:
        assert api.get(f"/api/runs/{rid}").json()["name"].startswith("first")
    single, batches = [], []
    real = api_module.render_runs

    def render(svc, ids):  # the API's handler on a read, or the refresher
        frame, on_read = sys._getframe(1), False
        while frame is not None and not on_read:
            on_read, frame = frame.f_code.co_name == "get_run", frame.f_back
        (single if on_read else batches).append(sorted(ids))
        return real(svc, ids)

    monkeypatch.setattr(api_module, "render_runs", render)
    _rename(harness.service.db, ids[1], "second")
    deadline = time.monotonic() + 10
    while (api.get(f"/api/runs/{ids[1]}").json()["name"] != "second" or len(batches) < 3) \
            and time.monotonic() < deadline:
        [api.get(f"/api/runs/{rid}") for rid in ids]
        time.sleep(0.02)
    cached = api.get(f"/api/runs/{ids[1]}")
    assert cached.json()["name"] == "second" and not single
    assert batches[-1] == sorted(ids)  # the polled runs, together once each was rendered ahead
    monkeypatch.undo()
    harness.service.status.drop(ids[1])
    assert api.get(f"/api/runs/{ids[1]}").content == cached.content  # what the API renders


def test_a_rendering_begun_before_a_drop_is_not_kept():
    cache = StatusCache(ttl=60.0)
    since = cache.mark()  # a rendering starts reading the database...
    cache.drop(7)  # ...the service cancels the run meanwhile
    cache.put(7, b'{"state": "running"}', since)
    assert cache.get(7) is None  # the older state is not served
    cache.put(7, b'{"state": "cancelled"}', cache.mark())
    assert cache.get(7) == b'{"state": "cancelled"}'


def test_the_refresher_renders_only_runs_being_read_and_outlives_a_failure(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("calcium_dask.service.status.time", SimpleNamespace(monotonic=lambda: clock[0]))
    cache = StatusCache(ttl=1.0)
    for rid in (1, 2, 3):
        cache.put(rid, b"old")
    cache.get(1), cache.get(2)  # 3 is in memory but nobody reads it
    asked = []

    def render(ids):
        asked.append(sorted(ids))
        return {1: b"new"}  # run 2 is gone

    refresher = StatusRefresher(cache, render, keep=5.0)
    assert asyncio.run(refresher.refresh()) == 0 and not asked  # nothing expires before the next look
    clock[0] += 0.6
    assert asyncio.run(refresher.refresh()) == 1 and asked == [[1, 2]]
    assert cache.due(0.5) == []  # 1 fresh again, 2 forgotten
    assert cache.get(1) == b"new" and cache.get(2) is None

    def down(ids):
        raise RuntimeError("database is down")

    refresher.render = down
    clock[0] += 1.1
    assert asyncio.run(refresher.refresh()) == 0 and cache.get(1) is None  # expired: the API answers
    refresher.render = render
    assert asyncio.run(refresher.refresh()) == 1 and cache.get(1) == b"new"
    clock[0] += 10  # nobody has read it for longer than keep
    assert cache.due(0.5, keep=5.0) == []
