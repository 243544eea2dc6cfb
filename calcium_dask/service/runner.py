"""The runner: takes queued runs from the database and runs them on the one Dask client.

A run is a batch session run by :func:`calcium_dask.batch.run_session` (``run_pipeline``
stage by stage, resuming from the store's completion marks), in a thread of this process,
``max_concurrent`` at a time. The store's marks are the truth of a run's stages: they are
read when the run starts and after each stage, so a run taken over after a crash shows the
stages it had finished and does not redo them.

One control thread connects to the scheduler (and keeps trying while it is unreachable),
claims queued runs, renews the leases of its running runs, passes on cancellations and
writes the running passes' progress to the database twice a second.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from ..errors import one_line
from ..run_context import RunContext, run_context
from . import queue
from .db import Database, describe_error
from .models import Run, RunStage, utcnow
from .paths import AllowedRoots

__all__ = ["Runner", "RunnerStatus"]

log = logging.getLogger("calcium_dask.service")

WAITING = "waiting for the Dask scheduler"
SCHEDULER_LOST = ("scheduler-connection-lost", "lost the connection to the scheduler")
WORKER_NICE = 10  # the local cluster's workers yield the CPU to the web server (and the runner)
MAX_ATTEMPTS = 5  # starts of one run (service restarts, lost schedulers) before it is failed


@dataclass
class _Active:
    """A run this service is running: its thread, cancel switch and current pass."""

    run_id: int
    stages: list[str]
    ctx: RunContext = field(default_factory=RunContext)
    thread: threading.Thread | None = None
    current: str | None = None  # the stage running now
    label: str | None = None  # its current pass
    done: int = 0
    total: int = 0
    marks: dict[str, Any] = field(default_factory=dict)
    pass_t0: float = 0.0
    dirty: bool = False


@dataclass
class RunnerStatus:
    """What ``/healthz`` reports of the runner."""

    scheduler: str | None  # the address, or None for the service's own local cluster
    scheduler_error: str | None
    running: list[int]
    max_concurrent: int


class Runner:
    """Runs queued runs, ``max_concurrent`` at a time, on one ``distributed`` client.

    Parameters
    ----------
    db : Database
    roots : AllowedRoots
        Checked again when a run starts (a link may have changed since it was submitted).
    owner : str
        This service's name in the database; a restarted service with the same name takes
        back the runs it was running at once (others wait for their lease to run out).
    scheduler : str, optional
        Scheduler address; without one a local cluster of ``n_workers`` is started.
    client : distributed.Client, optional
        Use this client (tests, notebooks) instead of connecting.
    """

    def __init__(self, db: Database, roots: AllowedRoots, owner: str, *, scheduler: str | None = None,
                 n_workers: int | None = None, max_concurrent: int = 2, client: Any = None,
                 lease: float = 30.0, poll: float = 0.5, connect_timeout: float = 10.0) -> None:
        self.db, self.roots, self.owner = db, roots, owner
        self.scheduler, self.n_workers = scheduler, n_workers
        self.max_concurrent, self.lease, self.poll = max_concurrent, lease, poll
        self.connect_timeout = connect_timeout
        self.client, self._own_client = client, client is None
        self.scheduler_error: str | None = None
        self._active: dict[int, _Active] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_orphan_check = 0.0
        self._waiting_note: str | None = None

    # -- control ---------------------------------------------------------------------
    def start(self) -> None:
        """Take back this service's interrupted runs, then start the control thread."""
        for rid in queue.requeue_orphans(self.db, self.owner):
            log.info("run %s: requeued (interrupted); it resumes from its completion marks", rid)
        self._thread = threading.Thread(target=self._loop, name="calcium-dask-runner", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the queue now (a run was submitted or retried)."""
        self._wake.set()

    def cancel(self, run_id: int) -> None:
        """Cancel a run this service is running (its tasks are cancelled on the cluster)."""
        with self._lock:
            act = self._active.get(run_id)
        if act is not None:
            act.ctx.cancel()

    def status(self) -> RunnerStatus:
        with self._lock:
            running = sorted(self._active)
        return RunnerStatus(self.scheduler, self.scheduler_error, running, self.max_concurrent)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking runs; the running ones are cancelled and queued again (they resume later)."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            active = list(self._active.values())
        for act in active:
            act.ctx.cancel()
        for act in active:
            if act.thread is not None:
                act.thread.join(timeout)
        if self._thread is not None:  # it may be waiting for a scheduler to answer: it closes what it gets
            self._thread.join(min(timeout, 2.0))
        self._close_client()

    def _close_client(self) -> None:
        with self._lock:
            client, self.client = (self.client, None) if self._own_client else (None, self.client)
        if client is not None:
            cluster = client.cluster
            client.close()
            if cluster is not None:
                cluster.close()

    # -- the control thread ------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._ensure_client():
                    self._dispatch()
                self._heartbeat()
                if time.monotonic() - self._last_orphan_check > self.lease / 2:
                    self._last_orphan_check = time.monotonic()
                    queue.requeue_orphans(self.db, self.owner, own=False)  # other services' expired leases
            except SQLAlchemyError as e:
                log.warning("database unavailable: %s", describe_error(e))
            except Exception:  # noqa: BLE001 - the control thread must outlive any one failure
                log.exception("runner: unexpected error")
            self._wake.wait(self.poll)
            self._wake.clear()
        self._close_client()

    def _client_ok(self) -> bool:
        return self.client is not None and self.client.status == "running"

    def _ensure_client(self) -> bool:
        """A running client, connecting when there is none; False (and why) while unreachable."""
        if self._client_ok():
            self._note_waiting(None)
            return True
        if not self._own_client or self.client is not None and self.client.status == "connecting":
            status = "no client" if self.client is None else f"client {self.client.status}"
            self._note_waiting(f"{self.scheduler or 'local cluster'}: {status}")
            return False  # a client handed to us, or distributed reconnecting by itself
        from ..cluster import LowerPriority, connect

        try:
            if self._own_client and self.client is not None:
                self.client.close()
            self.client = None
            if self.scheduler:
                self.client = connect(self.scheduler, timeout=self.connect_timeout, quiet=True)
            else:  # workers beside the web server: they compute in the time it leaves them
                self.client = connect(None, n_workers=self.n_workers, dashboard_address=None, quiet=True)
                self.client.register_plugin(LowerPriority(WORKER_NICE))
            log.info("connected to the Dask scheduler %s", self.client.scheduler.address)
            self._note_waiting(None)
            return True
        except Exception as e:  # noqa: BLE001 - ClusterError, OSError, timeouts: wait and retry
            self._note_waiting(one_line(e))
            return False

    def _note_waiting(self, error: str | None) -> None:
        """Say on every queued run why it waits (and stop saying it once the scheduler is back)."""
        self.scheduler_error = error
        note = f"{WAITING}: {error}" if error else None
        if note is None and self._waiting_note is None:
            return
        with self.db.session() as s:
            if note:  # runs submitted since are told too
                s.execute(update(Run).where(Run.state == "queued", Run.message.is_distinct_from(note))
                          .values(message=note))
            else:
                s.execute(update(Run).where(Run.state == "queued", Run.message.like(f"{WAITING}%"))
                          .values(message=None))
        self._waiting_note = note

    def _dispatch(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if len(self._active) >= self.max_concurrent:
                    return
            rid = queue.claim_next(self.db, self.owner, self.lease)
            if rid is None:
                return
            self._launch(rid)

    def _launch(self, rid: int) -> None:
        with self.db.session() as s:
            until = s.scalar(select(Run.until).where(Run.id == rid))
        act = _Active(rid, queue.stage_names(until))
        act.ctx.on_progress = lambda label, done, total: self._on_progress(act, label, done, total)
        act.thread = threading.Thread(target=self._execute, args=(act,), name=f"calcium-dask-run-{rid}", daemon=True)
        with self._lock:
            self._active[rid] = act
        act.thread.start()

    def _heartbeat(self) -> None:
        with self._lock:
            active = list(self._active.values())
        if not active:
            return
        asked = queue.renew_leases(self.db, self.owner, [a.run_id for a in active], self.lease)
        for act in active:
            if act.run_id in asked and not act.ctx.cancelled:  # asked through another service
                act.ctx.cancel()
        for act in active:
            if act.dirty:
                act.dirty = False
                self._write_progress(act)

    # -- one run, in its own thread ----------------------------------------------------------
    def _execute(self, act: _Active) -> None:
        outcome: tuple[str, str | None] = ("failed", "internal error")
        try:
            outcome = self._run(act)
        except Exception as e:  # noqa: BLE001 - a bad record must not kill the thread silently
            outcome = ("failed", f"{type(e).__name__}: {one_line(e, 300)}")
            log.exception("run %s failed", act.run_id)
        finally:
            self._record_end(act, *outcome)
            with self._lock:
                self._active.pop(act.run_id, None)
            self._wake.set()

    def _run(self, act: _Active) -> tuple[str, str | None]:
        """Run it; (state, message): done, failed, cancelled, or queued (to resume later)."""
        from ..batch import Session, run_session
        from ..params import Params

        try:  # the database may go down between the claim and here: the run waits for it, queued
            with self.db.session() as s:
                run = s.get(Run, act.run_id)
                session = Session(name=run.name, input=run.input, output=run.output,
                                  params=Params.from_dict(run.params), until=run.until,
                                  open_kwargs=dict(run.open_kwargs))
                attempts = run.attempts
        except SQLAlchemyError:
            return "queued", "the database was unavailable as the run started; it starts again when it is back"
        try:  # again: a link may have changed since the run was submitted
            self.roots.check_input(session.input)
            self.roots.check_output(session.output)
        except Exception as e:  # noqa: BLE001 - PathRefused, PathInvalid
            return "failed", one_line(e)
        self._sync_marks(act, session.output)
        if act.ctx.cancelled:
            return self._cancelled()
        client = self.client
        if client is None:
            return "queued", f"{WAITING}: not connected"
        with client.as_current(), run_context(act.ctx):
            result = run_session(session, echo=lambda line: self._on_line(act, session.output, line))
        self._sync_marks(act, session.output)
        if act.ctx.cancelled:
            return self._cancelled()
        if not result.failed:
            return "done", None
        reason = result.status.removeprefix("failed: ")
        lost = not self._client_ok() or any(s in reason for s in SCHEDULER_LOST)
        if lost and attempts < MAX_ATTEMPTS:
            return "queued", f"the Dask scheduler was lost ({reason}); the run resumes when it is back"
        return "failed", reason

    def _cancelled(self) -> tuple[str, str | None]:
        if self._stop.is_set():
            return "queued", "the service stopped; the run resumes from its completion marks when it starts again"
        return "cancelled", "cancelled while running (its tasks were cancelled on the cluster)"

    def _record_end(self, act: _Active, state: str, message: str | None) -> None:
        """Write the run's end, retrying while the database is down (nothing is lost)."""
        units = act.marks.get("cnmf", {}).get("units")
        accepted = act.marks.get("evaluate", {}).get("accepted")
        done = sum(s in act.marks for s in act.stages)
        delay = 0.5
        while True:
            try:
                self._write_progress(act, final=True)
                if state == "queued":
                    queue.requeue(self.db, act.run_id, message or "queued again")
                else:
                    queue.finish(self.db, act.run_id, state, message, units=units, accepted=accepted,
                                 progress=1.0 if state == "done" else done / max(len(act.stages), 1))
                return
            except SQLAlchemyError as e:
                if self._stop.is_set():
                    log.error("run %s: could not record its end (%s): it resumes at the next start",
                              act.run_id, describe_error(e))
                    return
                log.warning("run %s: database unavailable (%s); retrying", act.run_id, describe_error(e))
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    # -- progress ----------------------------------------------------------------------------
    def _on_progress(self, act: _Active, label: str, done: int, total: int) -> None:
        if done == 0:
            act.pass_t0 = time.perf_counter()
            self._log(act.run_id, f"{act.current or 'run'}: {label}: {total} tasks")
        elif done == total:
            self._log(act.run_id, f"{act.current or 'run'}: {label}: {total} tasks done in "
                                  f"{time.perf_counter() - act.pass_t0:.1f} s")
        act.label, act.done, act.total, act.dirty = label, done, total, True

    def _on_line(self, act: _Active, output: str, line: str) -> None:
        self._log(act.run_id, line)
        self._sync_marks(act, output)

    def _log(self, run_id: int, line: str, level: str = "info") -> None:
        try:
            queue.add_log(self.db, run_id, line, level)
        except SQLAlchemyError:  # the log is best effort; the run goes on
            pass

    def _sync_marks(self, act: _Active, output: str) -> None:
        """Read the store's completion marks: the stages done, and which one runs now."""
        from ..store import ResultsStore

        try:
            marks = ResultsStore(output).stages()
        except Exception:  # noqa: BLE001 - not written yet, or unreadable: keep what we knew
            return
        act.marks = {k: v for k, v in marks.items() if k in act.stages}
        act.current = next((s for s in act.stages if s not in act.marks), None)
        act.label, act.done, act.total = None, 0, 0
        try:
            self._write_progress(act)
        except SQLAlchemyError:
            act.dirty = True

    def _write_progress(self, act: _Active, final: bool = False) -> None:
        """The run's stages and overall progress, from the marks and the current pass."""
        n = max(len(act.stages), 1)
        frac = act.done / act.total if act.total else 0.0
        with self.db.session() as s:
            rows = {r.stage: r for r in s.scalars(select(RunStage).where(RunStage.run_id == act.run_id))}
            for name in act.stages:
                row = rows.get(name)
                if row is None:
                    continue
                mark = act.marks.get(name)
                if mark is not None:
                    if row.state != "done":
                        row.state, row.finished_at = "done", utcnow()
                    row.seconds, row.details, row.done, row.total = mark.get("seconds"), mark, row.total, row.total
                elif name == act.current and not final:
                    if row.state != "running":
                        row.state, row.started_at = "running", utcnow()
                    row.pass_label, row.done, row.total = act.label, act.done, act.total
                elif row.state == "running":  # the run ended before this stage did
                    row.state = "pending"
            s.execute(update(Run).where(Run.id == act.run_id).values(
                progress=(len(act.marks) + (0 if final else frac)) / n))
