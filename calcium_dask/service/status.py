"""Status reads answered from memory: ``GET /api/runs/{id}`` is what dashboards and clients poll.

A run's JSON is rendered from the database at most once per ``TTL`` seconds (by the API's
handler, :func:`calcium_dask.service.api.get_run`) and answered from memory in between by an
ASGI middleware ahead of the framework's routing: under hundreds of simultaneous polls a read
costs a token look-up in the checker's cache and a dictionary look-up, instead of two queries,
a hop to a worker thread and a validation of the response. A read may lag the database by up
to ``TTL``; the service's own changes to a run (cancel, retry) drop its entry at once. A
request without a valid token, a run not in memory, a database that cannot be asked: all go
through the API as before, so answers and errors are the API's.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["StatusCache", "CachedStatus", "TTL", "send_json"]

TTL = 0.5  # seconds: dashboards poll each second, the runner writes progress every few
MAX_ENTRIES = 4096  # expired entries are swept past this many runs
PATH = re.compile(r"/api/runs/(\d{1,18})")


class StatusCache:
    """Each run's rendered status JSON, kept ``ttl`` seconds (safe to share between threads)."""

    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._entries: dict[int, tuple[bytes, float]] = {}  # run id -> (body, valid until)

    def get(self, run_id: int) -> bytes | None:
        """The run's JSON if it was rendered less than ``ttl`` seconds ago."""
        entry = self._entries.get(run_id)
        return entry[0] if entry is not None and entry[1] > time.monotonic() else None

    def put(self, run_id: int, body: bytes) -> None:
        now = time.monotonic()
        if len(self._entries) >= MAX_ENTRIES:
            self._entries = {k: v for k, v in list(self._entries.items()) if v[1] > now}
        self._entries[run_id] = (body, now + self.ttl)

    def drop(self, run_id: int) -> None:
        """Forget a run's status (after this service changed it)."""
        self._entries.pop(run_id, None)


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
