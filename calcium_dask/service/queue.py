"""The run queue in the database: submit, claim, lease, finish, cancel, retry, requeue.

Every change of a run's state is one conditional UPDATE (``... WHERE state = 'queued'``),
so two services sharing a database never both take a run, and a run's state is never
written from a stale read. The database also refuses two active runs writing one store.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..batch import Session
from ..errors import CalciumDaskError
from .db import Database
from .models import ACTIVE, EVENTS, FINISHED, RUN_STAGES, RUNS, Batch, Event, LogLine, Run, utcnow

__all__ = ["RunConflict", "RunNotFound", "submit", "submit_batch", "claim_next", "requeue_orphans",
           "renew_leases", "finish", "requeue", "request_cancel", "retry", "add_event", "add_log", "stage_names"]

MAX_LOG_LINE = 2000  # characters kept of one log line


class RunConflict(CalciumDaskError, ValueError):
    """The request contradicts a run's state or another run (HTTP 409)."""


class RunNotFound(CalciumDaskError, LookupError):
    """No run has this id (HTTP 404)."""


def stage_names(until: str | None) -> list[str]:
    """The pipeline's stages a run goes through."""
    from ..pipeline import STAGES

    names = list(STAGES)
    return names[: names.index(until) + 1] if until else names


def _key(output: str) -> str:
    return hashlib.sha256(output.encode("utf-8")).hexdigest()


def _insert_runs(s: Any, specs: list[Session], token_id: int | None, batch_id: int | None,
                 message: str = "") -> list[int]:
    """Insert queued runs, their stages and their "queued" events; the runs' ids.

    Core INSERT statements on the tables (the stages and events of all runs in one each):
    the ORM's unit of work, then its bulk inserts, took most of a submission's CPU, while
    status reads waited for the interpreter."""
    now = utcnow()
    ids = [s.scalar(insert(RUNS).values(
        name=spec.name, state="queued", input=spec.input, output=spec.output, active_output=_key(spec.output),
        params=spec.params.to_dict(), until=spec.until, open_kwargs=dict(spec.open_kwargs), batch_id=batch_id,
        token_id=token_id, progress=0.0, cancel_requested=False, attempts=0, created_at=now).returning(RUNS.c.id))
        for spec in specs]
    if ids:
        s.execute(insert(RUN_STAGES), [dict(run_id=rid, position=i, stage=name, state="pending", done=0, total=0)
                                     for rid, spec in zip(ids, specs)
                                     for i, name in enumerate(stage_names(spec.until))])
        s.execute(insert(EVENTS), [dict(run_id=rid, kind="queued", time=now, message=f"queued: {spec.name}{message}")
                                  for rid, spec in zip(ids, specs)])
    return ids


def _conflict(db: Database, outputs: list[str]) -> RunConflict:
    with db.session() as s:
        rows = s.execute(select(Run.id, Run.output).where(Run.active_output.in_([_key(o) for o in outputs]))).all()
    named = ", ".join(f"run {r.id} writes {r.output}" for r in rows) or "another run writes the same store"
    return RunConflict(f"{named}; wait for it to finish or cancel it first")


def submit(db: Database, spec: Session, token_id: int | None = None) -> int:
    """Queue one run (a batch session: checked paths, validated parameters); its id.

    RunConflict if an active run writes the same store."""
    try:
        with db.session() as s:
            return _insert_runs(s, [spec], token_id, None)[0]
    except IntegrityError:
        raise _conflict(db, [spec.output]) from None


def submit_batch(db: Database, name: str, specs: list[Session], token_id: int | None = None) -> tuple[int, list[int]]:
    """Queue the runs of a batch together (all or none); the batch's id and the runs' ids."""
    try:
        with db.session() as s:
            batch_id = s.scalar(insert(Batch).values(name=name[:200], token_id=token_id).returning(Batch.id))
            return batch_id, _insert_runs(s, specs, token_id, batch_id, f" (batch {batch_id})")
    except IntegrityError:
        raise _conflict(db, [spec.output for spec in specs]) from None


def claim_next(db: Database, owner: str, lease: float) -> int | None:
    """Take the oldest queued run for ``owner``; its id, or None when the queue is empty."""
    while True:
        with db.session() as s:
            rid = s.scalar(select(Run.id).where(Run.state == "queued").order_by(Run.id).limit(1))
            if rid is None:
                return None
            now = utcnow()
            res = s.execute(update(Run).where(Run.id == rid, Run.state == "queued").values(
                state="running", owner=owner, lease_until=now + timedelta(seconds=lease), message=None,
                attempts=Run.attempts + 1, started_at=func.coalesce(Run.started_at, now)))
            if res.rowcount == 1:
                s.add(Event(run_id=rid, kind="started", message=f"started by {owner}"))
                return rid
        # another service took it between the two statements: try the next one


def requeue_orphans(db: Database, owner: str, *, own: bool = True) -> list[int]:
    """Queue again the running runs whose service is gone: with ``own``, ``owner``'s (this
    service's previous life, at its start), and those of other services whose lease ran out.
    A run whose cancellation was asked is cancelled instead."""
    expired = (Run.owner != owner) & (Run.lease_until < utcnow())
    orphaned = (Run.state == "running") & (or_(Run.owner == owner, expired) if own else expired)
    with db.session() as s:
        rows = s.execute(select(Run.id, Run.cancel_requested).where(orphaned)).all()
        for r in rows:
            if r.cancel_requested:
                _finish(s, r.id, "cancelled", "cancelled (the service stopped while cancelling it)")
                continue
            s.execute(update(Run).where(Run.id == r.id, Run.state == "running").values(
                state="queued", owner=None, lease_until=None,
                message="the service running it stopped; it resumes from its store's completion marks"))
            s.add(Event(run_id=r.id, kind="requeued", message="requeued: the service running it stopped"))
    return [r.id for r in rows]


def renew_leases(db: Database, owner: str, run_ids: list[int], lease: float) -> set[int]:
    """Extend ``owner``'s leases on ``run_ids``; the ids of those whose cancellation was asked."""
    if not run_ids:
        return set()
    with db.session() as s:
        s.execute(update(Run).where(Run.id.in_(run_ids), Run.owner == owner, Run.state == "running")
                  .values(lease_until=utcnow() + timedelta(seconds=lease)))
        return set(s.scalars(select(Run.id).where(Run.id.in_(run_ids), Run.cancel_requested.is_(True))))


def _finish(s: Any, run_id: int, state: str, message: str | None, **values: Any) -> None:
    s.execute(update(Run).where(Run.id == run_id).values(
        state=state, message=message, finished_at=utcnow(), owner=None, lease_until=None, active_output=None,
        cancel_requested=False, **values))
    s.add(Event(run_id=run_id, kind=state, message=message or state))


def finish(db: Database, run_id: int, state: str, message: str | None = None, **values: Any) -> None:
    """Record the end of a run (``done``, ``failed`` or ``cancelled``) and what it found."""
    assert state in FINISHED, state
    with db.session() as s:
        _finish(s, run_id, state, message, **values)


def requeue(db: Database, run_id: int, message: str) -> None:
    """Put a running run back in the queue (e.g. the scheduler was lost): it will resume."""
    with db.session() as s:
        s.execute(update(Run).where(Run.id == run_id, Run.state == "running").values(
            state="queued", owner=None, lease_until=None, message=message))
        s.add(Event(run_id=run_id, kind="requeued", message=message))


def _state(s: Any, run_id: int) -> str:
    state = s.scalar(select(Run.state).where(Run.id == run_id))
    if state is None:
        raise RunNotFound(f"no run {run_id}")
    return state


def request_cancel(db: Database, run_id: int) -> str:
    """Cancel a queued run now, or ask the service running it to cancel it; the new state."""
    with db.session() as s:
        state = _state(s, run_id)
        if state in FINISHED:
            raise RunConflict(f"run {run_id} is already {state}")
        res = s.execute(update(Run).where(Run.id == run_id, Run.state == "queued").values(cancel_requested=True))
        if res.rowcount == 1:
            _finish(s, run_id, "cancelled", "cancelled before it started")
            return "cancelled"
        s.execute(update(Run).where(Run.id == run_id, Run.state == "running").values(cancel_requested=True))
        s.add(Event(run_id=run_id, kind="cancel", message="cancellation requested"))
        return "running"


def retry(db: Database, run_id: int) -> None:
    """Queue a failed or cancelled run again: it resumes from its store's completion marks."""
    try:
        with db.session() as s:
            state = _state(s, run_id)
            if state in ACTIVE or state == "done":
                raise RunConflict(f"run {run_id} is {state}; only failed or cancelled runs can be retried")
            output = s.scalar(select(Run.output).where(Run.id == run_id))
            s.execute(update(Run).where(Run.id == run_id, Run.state == state).values(
                state="queued", message=None, finished_at=None, cancel_requested=False,
                active_output=_key(output)))
            s.add(Event(run_id=run_id, kind="retry", message="queued again (resumes from its completion marks)"))
    except IntegrityError:
        raise _conflict(db, [output]) from None


def add_event(db: Database, run_id: int | None, kind: str, message: str) -> None:
    with db.session() as s:
        s.add(Event(run_id=run_id, kind=kind, message=message))


def add_log(db: Database, run_id: int, message: str, level: str = "info") -> None:
    with db.session() as s:
        s.add(LogLine(run_id=run_id, level=level, message=message[:MAX_LOG_LINE]))
