"""The JSON API: runs and batches (submit, list, read, cancel, retry, log), login."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import func, select

from ..errors import StoreError
from . import queue
from .auth import COOKIE, request_token
from .models import RUN_STAGES, RUNS, STATES, Event, LogLine, utcnow
from .queue import RunNotFound
from .schemas import BatchOut, Login, RunCreate, RunList, RunOut, RunRef, StageOut

__all__ = ["router", "require_token", "service_of", "run_out", "render_runs"]

router = APIRouter()
BATCH_TYPES = ("application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
SAFE = ("GET", "HEAD", "OPTIONS")


def service_of(request: Request) -> Any:
    return request.app.state.service


def _token(request: Request) -> str | None:
    return request_token(request.headers.get("authorization"), request.headers.get("cookie"))


def token_id(request: Request) -> int | None:
    """The id of the request's token (header, else the dashboard's cookie), or None."""
    return service_of(request).tokens.check(_token(request))


async def require_token(request: Request) -> int:
    """Dependency: the token's id; 401 without a valid token.

    A token checked within the last seconds is known without the database (and without a
    worker thread). A request that authenticates with the cookie and changes something must
    send JSON or YAML: a form on another site can send neither, so it cannot act with the
    cookie (CSRF).
    """
    tid = await service_of(request).tokens.check_async(_token(request))
    if tid is None:
        raise HTTPException(401, "a valid token is required (Authorization: Bearer TOKEN)",
                            headers={"WWW-Authenticate": "Bearer"})
    if request.method not in SAFE and "authorization" not in request.headers:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in BATCH_TYPES:
            raise HTTPException(403, "send JSON (Content-Type: application/json)")
    return tid


Authed = Annotated[int, Depends(require_token)]


# -- records -> JSON ---------------------------------------------------------------------------
# Reads go through SQLAlchemy Core, not the ORM: a status read is the hot path of the
# service (dashboards poll it every second), and rows are 2-3 times cheaper than objects.

LISTED = [c for c in RUNS.c if c.name != "params"]  # a list shows no parameters: not decoded either


def _stage_out(st: Any) -> StageOut:
    progress = 1.0 if st["state"] == "done" else (st["done"] / st["total"] if st["total"] else 0.0)
    return StageOut(stage=st["stage"], state=st["state"], progress=round(progress, 4), pass_label=st["pass_label"],
                    done=st["done"], total=st["total"], seconds=st["seconds"], details=st["details"])


def run_out(run: Any, stages: list[Any], *, with_params: bool = False) -> RunOut:
    """A run's row and its stages' rows as the API shows them."""
    end: datetime | None = run["finished_at"] or (utcnow() if run["state"] == "running" else None)
    seconds = (end - run["started_at"]).total_seconds() if run["started_at"] and end else None
    fields = {k: run[k] for k in ("id", "name", "state", "input", "output", "until", "batch_id", "created_at",
                                  "started_at", "finished_at", "message", "units", "accepted", "attempts",
                                  "cancel_requested")}
    return RunOut(**fields, seconds=None if seconds is None else round(seconds, 1),
                  progress=round(run["progress"], 4), stages=[_stage_out(s) for s in stages],
                  params=run["params"] if with_params else None)


def _runs_out(conn: Any, runs: list[Any], *, with_params: bool = False) -> list[RunOut]:
    """``runs`` (rows) with their stages, read in one more query."""
    by_run: dict[int, list[Any]] = {r["id"]: [] for r in runs}
    if by_run:
        for st in conn.execute(select(RUN_STAGES).where(RUN_STAGES.c.run_id.in_(list(by_run)))
                               .order_by(RUN_STAGES.c.run_id, RUN_STAGES.c.position)).mappings():
            by_run[st["run_id"]].append(st)
    return [run_out(r, by_run[r["id"]], with_params=with_params) for r in runs]


def _get_run(svc: Any, run_id: int) -> RunOut:
    """One run, with its stages and parameters; RunNotFound (404) if there is none."""
    with svc.db.engine.connect() as conn:
        row = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).mappings().first()
        if row is None:
            raise RunNotFound(f"no run {run_id}")
        return _runs_out(conn, [row], with_params=True)[0]


# -- submitting ------------------------------------------------------------------------------

def _default_name(inputs: str | list[str]) -> str:
    first = inputs[0] if isinstance(inputs, list) else inputs
    base = os.path.basename(first.rstrip("/")) or first
    return os.path.splitext(base)[0][:200] or "run"


def _spec(svc: Any, body: RunCreate) -> Any:
    """Check a submission as ``calcium-dask run`` would; the run to queue (a batch Session)."""
    from ..batch import Session
    from ..params import Params
    from ..pipeline import STAGES

    params = Params.from_caiman(body.params)  # ParamsError: the CLI's one-line message, 422
    if body.until is not None and body.until not in STAGES:
        raise StoreError(f"unknown stage '{body.until}'; stages are: {', '.join(STAGES)}")
    roots = svc.config.roots
    output = roots.check_output(body.output)
    inputs = roots.check_input(body.input)
    roots.check_nested(inputs, output)
    open_kwargs = {k: v for k, v in (("engine", body.engine), ("dataset", body.dataset), ("plane", body.plane))
                   if v is not None}
    return Session(name=body.name or _default_name(inputs), input=inputs, output=output, params=params,
                   until=body.until, open_kwargs=open_kwargs)


def _queued(svc: Any, rid: int) -> dict[str, Any]:
    if svc.runner is not None:
        svc.runner.wake()
    out: dict[str, Any] = {"id": rid, "state": "queued"}
    error = svc.runner.scheduler_error if svc.runner is not None else None
    if error:
        from .runner import WAITING

        out["message"] = f"{WAITING}: {error}"
    return out


@router.post("/api/runs", status_code=201, tags=["runs"])
async def create_run(body: RunCreate, request: Request, tid: Authed) -> JSONResponse:
    """Queue a run of the pipeline on a movie."""
    svc = service_of(request)
    rid = await svc.submit(lambda: queue.submit(svc.db, _spec(svc, body), tid))
    return JSONResponse(_queued(svc, rid), status_code=201, headers={"Location": f"/api/runs/{rid}"})


@router.post("/api/batches", status_code=201, response_model=BatchOut, tags=["runs"])
async def create_batch(request: Request, tid: Authed, name: str = Query("batch", max_length=200)) -> BatchOut:
    """Queue every session of a batch manifest (YAML or JSON, as for ``calcium-dask batch``)."""
    from .manifests import parse_manifest

    svc = service_of(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    specs = await svc.submit(parse_manifest, svc, body, ctype, svc.config.state_dir)
    batch_id, ids = await svc.submit(queue.submit_batch, svc.db, name, specs, tid)
    if svc.runner is not None:
        svc.runner.wake()
    return BatchOut(id=batch_id, name=name, runs=[RunRef(id=i, name=s.name, state="queued") for i, s in zip(ids, specs)])


# -- reading ---------------------------------------------------------------------------------

@router.get("/api/runs", response_model=RunList, tags=["runs"])
def list_runs(request: Request, _: Authed, state: str | None = Query(None, description=", ".join(STATES)),
              name: str | None = Query(None, max_length=200, description="Runs whose name contains this."),
              batch_id: int | None = None, limit: int = Query(50, ge=1, le=500),
              offset: int = Query(0, ge=0)) -> RunList:
    """Runs, newest first, filtered by state, name and batch, a page at a time."""
    if state is not None and state not in STATES:
        raise HTTPException(422, f"unknown state '{state}'; states are: {', '.join(STATES)}")
    where = []
    if state:
        where.append(RUNS.c.state == state)
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(RUNS.c.name.like(f"%{escaped}%", escape="\\"))
    if batch_id is not None:
        where.append(RUNS.c.batch_id == batch_id)
    with service_of(request).db.engine.connect() as conn:
        total = conn.execute(select(func.count(RUNS.c.id)).where(*where)).scalar() or 0
        rows = conn.execute(select(*LISTED).where(*where).order_by(RUNS.c.id.desc()).limit(limit).offset(offset))
        return RunList(runs=_runs_out(conn, list(rows.mappings())), total=total, limit=limit, offset=offset)


@router.get("/api/runs/{run_id}", response_model=RunOut, tags=["runs"])
def get_run(run_id: int, request: Request, _: Authed) -> Response:
    """A run: its state, stages, progress, error message and summary.

    Repeated reads within half a second are answered from memory (``service.status``)."""
    svc = service_of(request)
    since = svc.status.mark()
    body = render_runs(svc, [run_id]).get(run_id)
    if body is None:
        raise RunNotFound(f"no run {run_id}")
    svc.status.put(run_id, body, since)
    return Response(body, media_type="application/json")


def render_runs(svc: Any, ids: list[int]) -> dict[int, bytes]:
    """The status JSON of each run of ``ids`` that exists, read in two queries for them all:
    :func:`get_run`'s answer, and the status refresher's batch."""
    with svc.db.engine.connect() as conn:
        rows = list(conn.execute(select(RUNS).where(RUNS.c.id.in_(ids))).mappings())
        return {r.id: r.model_dump_json().encode() for r in _runs_out(conn, rows, with_params=True)}


@router.get("/api/runs/{run_id}/log", response_class=PlainTextResponse, tags=["runs"])
def get_log(run_id: int, request: Request, _: Authed, tail: int = Query(2000, ge=1, le=100_000)) -> str:
    """A run's log and events, oldest first (the last ``tail`` lines)."""
    svc = service_of(request)
    _get_run(svc, run_id)
    with svc.db.session() as s:
        logs = s.execute(select(LogLine.time, LogLine.level, LogLine.message).where(LogLine.run_id == run_id)
                         .order_by(LogLine.id.desc()).limit(tail)).all()
        events = s.execute(select(Event.time, Event.kind, Event.message).where(Event.run_id == run_id)
                           .order_by(Event.id.desc()).limit(tail)).all()
    lines = sorted([(t, f"[{lvl}] {msg}") for t, lvl, msg in logs] + [(t, f"[event] {msg}") for t, _, msg in events],
                   key=lambda x: x[0])[-tail:]
    return "".join(f"{t.strftime('%Y-%m-%dT%H:%M:%SZ')} {text}\n" for t, text in lines)


# -- acting ----------------------------------------------------------------------------------

@router.post("/api/runs/{run_id}/cancel", status_code=202, tags=["runs"])
def cancel_run(run_id: int, request: Request, _: Authed) -> dict[str, Any]:
    """Cancel a run: a queued one at once, a running one's tasks on the cluster."""
    svc = service_of(request)
    state = queue.request_cancel(svc.db, run_id)
    svc.status.drop(run_id)
    if state == "running" and svc.runner is not None:
        svc.runner.cancel(run_id)
    return {"id": run_id, "state": state, "cancel_requested": state == "running"}


@router.post("/api/runs/{run_id}/retry", status_code=202, tags=["runs"])
def retry_run(run_id: int, request: Request, _: Authed) -> dict[str, Any]:
    """Queue a failed or cancelled run again; it resumes from its store's completion marks."""
    svc = service_of(request)
    queue.retry(svc.db, run_id)
    svc.status.drop(run_id)
    return _queued(svc, run_id)


@router.get("/api/openapi.json", include_in_schema=False)
def openapi(request: Request, _: Authed) -> dict[str, Any]:
    """The OpenAPI schema of this API."""
    return request.app.openapi()


# -- the dashboard's login -----------------------------------------------------------------

@router.post("/api/login", tags=["auth"])
def login(body: Login, request: Request, response: Response) -> dict[str, str]:
    """Check a token and keep it in an HTTP-only cookie for the dashboard."""
    if service_of(request).tokens.check(body.token) is None:
        raise HTTPException(401, "this token is not valid")
    response.set_cookie(COOKIE, body.token, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https", max_age=7 * 24 * 3600)
    return {"status": "ok"}


@router.post("/api/logout", tags=["auth"])
def logout(response: Response) -> dict[str, str]:
    response.delete_cookie(COOKIE, path="/")
    return {"status": "ok"}
