"""The runner in a process of its own, beside the web server.

In the web server's process the runner's threads (the pipelines' Dask clients building
graphs and writing store metadata) and the local cluster's scheduler took the interpreter
lock for most of each second while runs computed: status reads waited for it (p99 of 200
reads at once 400-650 ms). :class:`RunnerProcess` runs the same :class:`~.runner.Runner` in
a child process and offers the web app the runner's interface: the queue, leases,
progress and cancellations already go through the database; a pipe carries the rest
(wake up, cancel now, stop; the runner's status back).

The child ends with its parent: when the pipe closes (the service stopped, or was killed)
it exits at once, as the runner's threads did with the service, and its runs are taken back
by the next service from their leases and completion marks.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import threading
from dataclasses import dataclass
from typing import Any

from .runner import RunnerStatus

__all__ = ["RunnerProcess", "RunnerSpec"]

log = logging.getLogger("calcium_dask.service")

STATUS_EVERY = 0.25  # seconds between the child's looks at its runner's status
#: the child's CPU priority below the web server's (Unix nice): its pipelines' clients can
#: wait a few milliseconds, a status read should not (its local workers get theirs on top)
RUNNER_NICE = 5


@dataclass(frozen=True)
class RunnerSpec:
    """What the child needs to build its :class:`~.runner.Runner` (all picklable)."""

    db_url: str
    roots: tuple[str, ...]
    owner: str
    scheduler: str | None = None
    n_workers: int | None = None
    max_concurrent: int = 2


class RunnerProcess:
    """A :class:`~.runner.Runner` in a child process, with the runner's methods.

    Parameters
    ----------
    spec : RunnerSpec
    """

    def __init__(self, spec: RunnerSpec) -> None:
        self.spec = spec
        self._status = RunnerStatus(spec.scheduler, None, [], spec.max_concurrent)
        self._conn: Any = None
        self._proc: Any = None
        self._send_lock = threading.Lock()
        self._reader: threading.Thread | None = None

    @property
    def scheduler_error(self) -> str | None:
        return self._status.scheduler_error

    def start(self) -> None:
        """Start the child (a new interpreter: this process serves requests on threads)."""
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=run_child, args=(self.spec, child), name="calcium-dask-runner")
        self._proc.start()
        child.close()
        atexit.register(self._end)  # before multiprocessing's own exit handler joins it
        self._reader = threading.Thread(target=self._read, name="calcium-dask-runner-status", daemon=True)
        self._reader.start()

    def wake(self) -> None:
        """Look at the queue now (a run was submitted or retried)."""
        self._send(("wake",))

    def cancel(self, run_id: int) -> None:
        """Cancel a run the child is running (it would see the request in the database too)."""
        self._send(("cancel", run_id))

    def status(self) -> RunnerStatus:
        """The child's last report (at most :data:`STATUS_EVERY` seconds old)."""
        return self._status

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the child's runner (its running runs are queued again) and wait for it."""
        if self._proc is None:
            return
        self._send(("stop", timeout))
        self._proc.join(timeout + 5)
        if self._proc.is_alive():
            log.warning("runner process did not stop in %.0f s: killed", timeout + 5)
            self._proc.kill()
            self._proc.join(5)
        self._conn.close()

    def _end(self) -> None:
        """At this process's exit: a child not stopped is killed (its runs resume elsewhere)."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()

    def _send(self, message: tuple) -> None:
        if self._conn is None:
            return
        try:
            with self._send_lock:
                self._conn.send(message)
        except (OSError, EOFError, ValueError):  # the child has ended: nothing to tell it
            pass

    def _read(self) -> None:
        while True:
            try:
                self._status = self._conn.recv()
            except (OSError, EOFError, ValueError):
                return


def run_child(spec: RunnerSpec, conn: Any) -> None:
    """The child's main: a runner, told by the pipe; exits when the pipe closes."""
    from ..compute import set_quiet
    from .db import Database
    from .paths import AllowedRoots
    from .runner import Runner

    if hasattr(os, "nice"):
        os.nice(RUNNER_NICE)  # before any thread starts: they all inherit it
    logging.basicConfig(level=os.environ.get("CALCIUM_DASK_LOG_LEVEL", "WARNING").upper(),
                        format="%(name)s: %(message)s")
    set_quiet(True)  # runs report to the database
    db = Database(spec.db_url)
    runner = Runner(db, AllowedRoots.from_options(spec.roots), spec.owner, scheduler=spec.scheduler,
                    n_workers=spec.n_workers, max_concurrent=spec.max_concurrent)
    runner.start()
    stopping = threading.Event()
    threading.Thread(target=_report, args=(runner, conn, stopping), daemon=True).start()
    while True:
        try:
            message = conn.recv()
        except (OSError, EOFError):  # the service is gone: end now, as its own threads would
            os._exit(0)
        if message[0] == "wake":
            runner.wake()
        elif message[0] == "cancel":
            runner.cancel(message[1])
        elif message[0] == "stop":
            stopping.set()
            runner.stop(message[1])
            conn.send(runner.status())
            db.close()
            return


def _report(runner: Any, conn: Any, stopping: threading.Event) -> None:
    """Send the runner's status to the parent whenever it changes."""
    last = None
    while not stopping.wait(STATUS_EVERY):
        status = runner.status()
        if status != last:
            try:
                conn.send(status)
            except (OSError, ValueError):
                return
            last = status
