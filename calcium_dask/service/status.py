"""Status reads answered from memory: ``GET /api/runs/{id}`` is what dashboards and clients poll.

A run's JSON is rendered from the database when it is first read (by the API's handler,
:func:`calcium_dask.service.api.get_run`) and answered from memory afterwards by an ASGI
middleware ahead of the framework's routing: under hundreds of simultaneous polls a read costs
a token look-up in the checker's cache and a dictionary look-up, instead of two queries, a hop
to a worker thread and a validation of the response. While a run is polled, a
:class:`StatusRefresher` renders it again before its entry expires, with every other polled
run in one batch (two queries for them all, measured 4-5 times cheaper a run than one at a
time): a burst of polls after a pause finds its answers ready instead of rendering each run
once more on the request path. A read may lag the database by up to ``TTL``; the service's
own changes to a run (cancel, retry) drop its entry at once, and a rendering begun before
such a drop is not kept. A request without a valid token, a run not in memory, a database
that cannot be asked: all go through the API as before, so answers and errors are the API's.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["StatusCache", "StatusRefresher", "CachedStatus", "TTL", "KEEP_WARM", "send_json"]

log = logging.getLogger("calcium_dask.service")

TTL = 0.5  # seconds: dashboards poll each second, the runner writes progress every few
MAX_ENTRIES = 4096  # expired entries are swept past this many runs
KEEP_WARM = 30.0  # seconds after its last read that a run's status is still rendered ahead
MAX_WARM = 256  # runs rendered ahead at most (the most recently read): a batch of ~30 ms at most
PATH = re.compile(r"/api/runs/(\d{1,18})")


class StatusCache:
    """Each run's rendered status JSON, kept ``ttl`` seconds (safe to share between threads)."""

    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._entries: dict[int, tuple[bytes, float]] = {}  # run id -> (body, valid until)
        self._read: dict[int, float] = {}  # run id -> when it was last read
        self._dropped: dict[int, int] = {}  # run id -> the mark of its last drop
        self._marks = 0

    def get(self, run_id: int) -> bytes | None:
        """The run's JSON if it was rendered less than ``ttl`` seconds ago."""
        now = time.monotonic()
        self._read[run_id] = now
        entry = self._entries.get(run_id)
        return entry[0] if entry is not None and entry[1] > now else None

    def mark(self) -> int:
        """A mark to take before reading the database: :meth:`put` with it keeps the body only
        if the run was not dropped since (its rendering may predate the change)."""
        self._marks += 1
        return self._marks

    def put(self, run_id: int, body: bytes, since: int | None = None) -> None:
        """Keep ``body`` as the run's status for ``ttl`` seconds (not if the run was dropped
        after the mark ``since``)."""
        if since is not None and self._dropped.get(run_id, -1) >= since:
            return
        now = time.monotonic()
        if len(self._entries) >= MAX_ENTRIES:
            self._entries = {k: v for k, v in list(self._entries.items()) if v[1] > now}
            self._prune_reads(now, KEEP_WARM)
            # a rendering outlives thousands of marks only if something is badly wrong
            self._dropped = {k: m for k, m in list(self._dropped.items()) if m > self._marks - MAX_ENTRIES}
        self._entries[run_id] = (body, now + self.ttl)

    def drop(self, run_id: int) -> None:
        """Forget a run's status (after this service changed it)."""
        self._entries.pop(run_id, None)
        self._dropped[run_id] = self.mark()

    def forget(self, run_id: int) -> None:
        """Forget a run that does not exist: no entry, and not rendered ahead any more."""
        self._entries.pop(run_id, None)
        self._read.pop(run_id, None)

    def _prune_reads(self, now: float, keep: float) -> None:
        self._read = {k: t for k, t in list(self._read.items()) if t > now - keep}

    def due(self, within: float, keep: float = KEEP_WARM) -> list[int]:
        """Runs rendered before and read in the last ``keep`` seconds whose status expires in
        the next ``within`` (at most ``MAX_WARM``, the most recently read). A run never
        rendered, or dropped, is left to its next read (the API renders it once)."""
        now = time.monotonic()
        if len(self._read) > MAX_ENTRIES:  # reads of runs that never existed pile up otherwise
            self._prune_reads(now, keep)
        read = [(t, k) for k, t in list(self._read.items()) if t > now - keep and k in self._entries]
        read = sorted(read, reverse=True)[:MAX_WARM] if len(read) > MAX_WARM else read
        return [k for _, k in read if self._entries[k][1] < now + within]


class StatusRefresher:
    """Renders the statuses being polled before they expire, in one batch on a worker thread.

    ``render(ids)`` gives the JSON of each of ``ids`` that exists (a run missing from its
    answer is forgotten). Every ``cache.ttl / 4`` seconds, when a run read in the last ``keep``
    seconds expires within ``ttl / 2``, every such run expiring within ``3 ttl / 4`` is
    rendered: each again a quarter of ``ttl`` or more before it expires (less the rendering's
    own time), so that none expires between two looks, and the runs fall into one batch. A failed rendering
    (the database down) leaves the entries to expire: reads then go to the API, which
    answers the error."""

    def __init__(self, cache: StatusCache, render: Callable[[list[int]], dict[int, bytes]],
                 keep: float = KEEP_WARM) -> None:
        self.cache, self.render, self.keep = cache, render, keep
        self._failing = False

    async def run(self) -> None:
        """Refresh until cancelled."""
        while True:
            await asyncio.sleep(self.cache.ttl / 4)
            await self.refresh()

    async def refresh(self) -> int:
        """Render the runs due now; how many were rendered."""
        import anyio.to_thread

        ttl = self.cache.ttl
        if not self.cache.due(ttl / 2, self.keep):
            return 0
        ids = self.cache.due(3 * ttl / 4, self.keep)  # the next look's too: one batch, not two
        since = self.cache.mark()
        try:
            bodies = await anyio.to_thread.run_sync(self.render, ids)
        except Exception as e:  # noqa: BLE001 - the loop must outlive a database outage
            if not self._failing:
                log.warning("status refresh failed (reads ask the database instead): %s", e)
            self._failing = True
            return 0
        self._failing = False
        for run_id in ids:
            if run_id in bodies:
                self.cache.put(run_id, bodies[run_id], since)
            else:
                self.cache.forget(run_id)
        return len(bodies)


class CachedStatus:
    """ASGI middleware: a fresh cached status answers ``GET /api/runs/{id}`` for a known token.

    ``await token_of(headers)`` gives a request's valid token id, or None: the API then
    answers (401), as it does every other request. Reads of a run whose status is
    being rendered wait for that rendering instead of starting their own: after a pause
    every entry has expired, and hundreds of polls arriving at once for a few runs rendered
    each run hundreds of times (2 ms of CPU each) where once is enough."""

    def __init__(self, app: ASGIApp, cache: StatusCache, token_of: Callable[[list[tuple[bytes, bytes]]], Awaitable[int | None]]) -> None:
        self.app, self.cache, self.token_of = app, cache, token_of
        self._rendering: dict[int, asyncio.Event] = {}  # run id -> set when its rendering ends

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        run_id = await self._cacheable(scope)
        if run_id is None:
            await self.app(scope, receive, send)
            return
        body = self.cache.get(run_id)
        if body is None and run_id in self._rendering:
            await self._rendering[run_id].wait()
            body = self.cache.get(run_id)  # None if it was not a 200 (404, 503...): ask the API
        if body is not None:
            await send_json(send, 200, body)
            return
        done = self._rendering.setdefault(run_id, asyncio.Event())
        try:
            await self.app(scope, receive, send)  # the API renders it and puts it in the cache
        finally:
            if self._rendering.get(run_id) is done:
                del self._rendering[run_id]
            done.set()

    async def _cacheable(self, scope: Scope) -> int | None:
        """The run id of a status read with a valid token, else None."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        m = PATH.fullmatch(scope["path"])
        if m is None or await self.token_of(scope["headers"]) is None:
            return None
        return int(m.group(1))


async def send_json(send: Send, status: int, body: bytes) -> None:
    """Answer an ASGI request with ``body``, a JSON document, from a middleware."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
