"""The ASGI application: the HTTP API, the dashboard, ``/metrics`` and ``/healthz``.

Everything except ``/healthz``, the login page and the static files needs a token, sent as
``Authorization: Bearer TOKEN`` or, from the dashboard, the cookie set by ``/api/login``.
Errors are JSON ``{"detail": "one line"}``: 401 no or bad token, 403 a path outside the
allowed roots, 404 no such run, 409 a state conflict, 413 a body over the limit, 422 bad
parameters or paths (the same one-line messages as the CLI), 503 the database is down.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from ..errors import CalciumDaskError, one_line
from .auth import TokenChecker, request_token
from .db import Database, describe_error
from .paths import AllowedRoots, PathRefused
from .queue import RunConflict, RunNotFound
from .runner import Runner
from .runner_process import RunnerProcess
from .status import CachedStatus, StatusCache, StatusRefresher, send_json

__all__ = ["ServiceConfig", "Service", "create_app"]

REQUEST_THREADS = 8
MAX_BODY = 1 << 20  # 1 MiB: a manifest of thousands of sessions still fits
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@dataclass(frozen=True)
class ServiceConfig:
    """What a service needs to know besides its database and runner."""

    roots: AllowedRoots
    state_dir: Path
    max_body: int = MAX_BODY
    cors_origins: tuple[str, ...] = ()  # none: no cross-origin access at all


_T = TypeVar("_T")


@dataclass
class Service:
    """The parts of a running service, shared by every request."""

    config: ServiceConfig
    db: Database
    runner: Runner | RunnerProcess | None = None
    lock: Any = None  # the state folder's lock file, held while the service lives
    tokens: TokenChecker = field(init=False)
    status: StatusCache = field(init=False)  # runs' status JSON, read back for a short while
    _writer: anyio.CapacityLimiter | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.tokens = TokenChecker(self.db)
        self.status = StatusCache()

    async def submit(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` on a worker thread, one submission at a time.

        A submission's checks and inserts hold the interpreter lock for a few milliseconds;
        twenty of them on as many threads would each take the lock in turn with the event
        loop, which answers the status reads. One at a time, the loop waits for one thread
        (the database takes its writes one at a time anyway)."""
        if self._writer is None:
            self._writer = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._writer)

    async def token(self, headers: list[tuple[bytes, bytes]]) -> int | None:
        """The id of the valid token in raw ASGI ``headers``, or None (the database is asked,
        on a worker thread, when the checker's cache does not know it)."""
        try:
            return await self.tokens.check_async(_token_of(headers))
        except SQLAlchemyError:  # the API answers it (503, the database is down)
            return None


def _token_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    found = {k: v.decode("latin-1") for k, v in headers if k in (b"authorization", b"cookie")}
    return request_token(found.get(b"authorization"), found.get(b"cookie"))


def create_app(service: Service, *, echo: Callable[[str], None] | None = None) -> FastAPI:
    """The FastAPI application of ``service`` (its runner starts and stops with the app).

    ``echo`` receives a line when the service has stopped."""
    from . import api, metrics, pages

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # requests are short and hold the GIL: a few threads serve them faster than anyio's 40
        anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
        refresher = StatusRefresher(service.status, lambda ids: api.render_runs(service, ids))
        refreshing = asyncio.create_task(refresher.run())
        if service.runner is not None:
            service.runner.start()
        try:
            yield
        finally:
            refreshing.cancel()
            if service.runner is not None:
                interrupted = service.runner.status().running
                service.runner.stop()
                if echo is not None:
                    echo(f"calcium-dask service stopped ({len(interrupted)} running runs queued again: "
                         "they resume at the next start)")

    # the schema is served with a token, at /api/openapi.json; no interactive docs (they load
    # scripts from a CDN, which the pages' CSP forbids)
    app = FastAPI(title="calcium-dask service", version=__version__, lifespan=lifespan,
                  description="Submit calcium-imaging sessions, watch their runs, read their results.",
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.service = service
    _add_error_handlers(app)
    app.include_router(api.router)
    app.include_router(metrics.router)
    app.include_router(pages.results_router)
    app.include_router(pages.router)
    pages.mount_static(app)
    # innermost, so CORS, the body limit and the security headers apply to cached reads too
    app.add_middleware(CachedStatus, cache=service.status, token_of=service.token)
    if service.config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(service.config.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodyLimit, max_bytes=service.config.max_body)
    app.add_middleware(SecurityHeaders)
    return app


# -- errors ----------------------------------------------------------------------------------

def _detail(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _validation_line(e: RequestValidationError) -> str:
    errors = e.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def _add_error_handlers(app: FastAPI) -> None:
    svc: Service = app.state.service

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        return _detail(422, _validation_line(e))

    @app.exception_handler(CalciumDaskError)
    async def _user_error(request: Request, e: CalciumDaskError) -> JSONResponse:
        status = (403 if isinstance(e, PathRefused) else 404 if isinstance(e, RunNotFound)
                  else 409 if isinstance(e, RunConflict) else 422)
        return _detail(status, one_line(e))

    @app.exception_handler(SQLAlchemyError)
    async def _database_down(request: Request, e: SQLAlchemyError) -> JSONResponse:
        return _detail(503, f"database unavailable ({svc.db.describe()}): {describe_error(e)}",
                       headers={"Retry-After": "5"})


# -- middleware ------------------------------------------------------------------------------

class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (by Content-Length, or as they stream in)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _send_json(send, 413, f"request body larger than {self.max_bytes} bytes")
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)  # FastAPI answers an HTTPException while reading
            return message

        await self.app(scope, counted, send)


async def _send_json(send: Send, status: int, detail: str) -> None:
    await send_json(send, status, json.dumps({"detail": detail}).encode())


class SecurityHeaders:
    """No sniffing, no framing, no referrer; a strict CSP on pages that set none themselves."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                         (b"x-frame-options", b"DENY"), (b"content-security-policy", PAGE_CSP.encode())]
                headers += [(k, v) for k, v in extra if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
