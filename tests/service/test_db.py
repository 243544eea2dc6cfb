"""The database, on SQLite and on a real PostgreSQL: migrations, tokens kept hashed, the run queue."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import inspect, select, text, update

from calcium_dask.service import queue
from calcium_dask.service.auth import TokenChecker, create_token, digest, load_token_file, revoke_token
from calcium_dask.service.db import Database, DatabaseError
from calcium_dask.service.models import Base, Event, Run, RunStage, Token, utcnow
from calcium_dask.batch import Session
from calcium_dask.params import Params
from calcium_dask.service.queue import RunConflict, RunNotFound


def _spec(name: str = "a", output: str = "/r/a.zarr", until: str | None = None) -> Session:
    return Session(name, "/raw/a.tif", output, Params.from_caiman({"fr": 30}), until=until)


def test_migrations_build_the_schema_the_models_describe(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
    db.upgrade()  # again: nothing to do, nothing lost
    assert set(inspect(db.engine).get_table_names()) >= {"runs", "run_stages", "events", "log_lines", "tokens",
                                                         "batches", "alembic_version"}


def test_tokens_are_stored_only_as_digests(db, tmp_path):
    token = create_token(db, "alice")
    with db.session() as s:
        rows = s.execute(select(Token.name, Token.digest, Token.source)).all()
    assert [(r.name, r.source) for r in rows] == [("alice", "create-token")]
    assert rows[0].digest == digest(token) != token and token not in rows[0].digest
    dump = "\n".join(str(v) for r in rows for v in r)
    assert token not in dump
    checker = TokenChecker(db)
    assert checker.check(token) is not None and checker.check(token + "x") is None and checker.check("") is None
    assert revoke_token(db, "alice") == 1
    assert TokenChecker(db).check(token) is None


def test_token_file_tokens_are_accepted_and_dropped_ones_revoked(db, tmp_path):
    f = tmp_path / "tokens"
    f.write_text("# lab tokens\nfirst-token-0123456789\n\nsecond-token-0123456789\n")
    assert load_token_file(db, f) == 2
    checker = TokenChecker(db)
    assert checker.check("first-token-0123456789") and checker.check("second-token-0123456789")
    f.write_text("second-token-0123456789\n")
    assert load_token_file(db, f) == 1
    fresh = TokenChecker(db)
    assert fresh.check("first-token-0123456789") is None and fresh.check("second-token-0123456789")
    f.write_text("short\n")
    with pytest.raises(Exception, match="shorter than 16"):
        load_token_file(db, f)
    with pytest.raises(Exception, match="cannot read"):
        load_token_file(db, tmp_path / "missing")


def test_submit_makes_a_queued_run_with_its_stages(db):
    rid = queue.submit(db, _spec(until="cnmf"))
    with db.session() as s:
        run = s.get(Run, rid)
        assert run.state == "queued" and run.params == Params.from_caiman({"fr": 30}).to_dict()
        assert [(st.stage, st.state) for st in run.stages] == [("motion", "pending"), ("cnmf", "pending")]
        assert [e.kind for e in s.scalars(select(Event).where(Event.run_id == rid))] == ["queued"]


def test_two_active_runs_never_write_one_store(db):
    first = queue.submit(db, _spec("a", "/r/same.zarr"))
    with pytest.raises(RunConflict, match=f"run {first} writes /r/same.zarr"):
        queue.submit(db, _spec("b", "/r/same.zarr"))
    with pytest.raises(RunConflict):
        queue.submit_batch(db, "b", [_spec("c", "/r/other.zarr"), _spec("d", "/r/same.zarr")])
    with db.session() as s:  # the batch was all or nothing
        assert s.scalar(select(Run.id).where(Run.output == "/r/other.zarr")) is None
    queue.finish(db, first, "done")
    second = queue.submit(db, _spec("b", "/r/same.zarr"))  # finished: the store is free again
    with pytest.raises(RunConflict):
        queue.retry(db, first)  # it cannot come back while the new one is active
    assert second != first


def test_each_queued_run_is_claimed_exactly_once_under_contention(db):
    ids = [queue.submit(db, _spec(f"r{i}", f"/r/{i}.zarr")) for i in range(12)]
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()

    def worker(owner: str) -> None:
        while (rid := queue.claim_next(db, owner, lease=30)) is not None:
            with lock:
                claimed.append((owner, rid))

    threads = [threading.Thread(target=worker, args=(f"svc{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(rid for _, rid in claimed) == ids
    with db.session() as s:
        rows = s.execute(select(Run.id, Run.state, Run.owner, Run.attempts)).all()
    assert all(r.state == "running" and r.attempts == 1 for r in rows)
    assert {r.id: r.owner for r in rows} == {rid: owner for owner, rid in claimed}


def test_orphans_return_to_the_queue_and_live_leases_stay(db):
    mine, theirs, alive = (queue.submit(db, _spec(n, f"/r/{n}.zarr")) for n in ("mine", "theirs", "alive"))
    for owner in ("me", "dead", "other"):
        assert queue.claim_next(db, owner, lease=30) is not None
    with db.session() as s:  # "dead" stopped renewing its lease a while ago
        s.execute(update(Run).where(Run.owner == "dead").values(lease_until=utcnow() - timedelta(seconds=5)))
    assert queue.requeue_orphans(db, "me", own=False) == [theirs]
    assert sorted(queue.requeue_orphans(db, "me")) == [mine]  # at my start: my own runs too
    with db.session() as s:
        states = dict(s.execute(select(Run.id, Run.state)).all())
        msg = s.scalar(select(Run.message).where(Run.id == mine))
    assert states == {mine: "queued", theirs: "queued", alive: "running"}
    assert "resumes from its store's completion marks" in msg


def test_cancel_and_retry_follow_the_run_states(db):
    queued, running = queue.submit(db, _spec("q", "/r/q.zarr")), queue.submit(db, _spec("r", "/r/r.zarr"))
    assert queue.claim_next(db, "me", 30) == queued
    assert queue.claim_next(db, "me", 30) == running
    queue.requeue(db, queued, "back")
    assert queue.request_cancel(db, queued) == "cancelled"
    assert queue.request_cancel(db, running) == "running"  # the runner stops it
    assert queue.renew_leases(db, "me", [running], 30) == {running}
    with pytest.raises(RunConflict, match="already cancelled"):
        queue.request_cancel(db, queued)
    with pytest.raises(RunConflict, match="only failed or cancelled"):
        queue.retry(db, running)
    queue.retry(db, queued)
    with db.session() as s:
        run = s.get(Run, queued)
        assert (run.state, run.finished_at, run.cancel_requested) == ("queued", None, False)
    with pytest.raises(RunNotFound):
        queue.request_cancel(db, 9999)


def test_a_running_run_whose_cancel_was_asked_is_cancelled_when_orphaned(db):
    rid = queue.submit(db, _spec())
    queue.claim_next(db, "me", 30)
    queue.request_cancel(db, rid)
    queue.requeue_orphans(db, "me")
    with db.session() as s:
        assert s.scalar(select(Run.state).where(Run.id == rid)) == "cancelled"


def test_deleting_a_run_deletes_its_stages_and_events(db):
    rid = queue.submit(db, _spec())
    queue.add_log(db, rid, "x" * 5000)
    with db.session() as s:
        s.delete(s.get(Run, rid))
    with db.session() as s:
        assert s.scalars(select(RunStage)).all() == [] and s.scalars(select(Event)).all() == []


def test_bad_urls_and_missing_drivers_are_one_line_errors(tmp_path):
    with pytest.raises(DatabaseError, match="not a database URL"):
        Database("not a url")
    with pytest.raises(DatabaseError, match="no driver"):
        Database("nosuchdb://x/y")
