"""The dashboard's pages (runs, one run, login), its static files, a run's report and summary images."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from .._version import __version__
from ..errors import StoreError
from .api import Authed, _get_run, service_of, token_id

__all__ = ["router", "results_router", "mount_static", "REPORT_CSP", "SUMMARY_IMAGES"]

HERE = Path(__file__).resolve().parent
router = APIRouter(include_in_schema=False)  # the dashboard's pages
results_router = APIRouter()  # what the pages show of a run's results, part of the API
#: the report is self-contained HTML with inline scripts: it runs sandboxed, in an origin of
#: its own, so nothing in it can use the dashboard's cookie or call the API
REPORT_CSP = ("sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
              "style-src 'unsafe-inline'; img-src data: blob:; font-src data:")
SUMMARY_IMAGES = ("mean", "correlation", "max", "std")


def _templates() -> Jinja2Templates:
    from jinja2 import Environment, FileSystemLoader

    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    return Jinja2Templates(env=env)


TEMPLATES = _templates()


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, name, {"version": __version__, **context}, status_code=status)


def _login(request: Request) -> HTMLResponse:
    """The login page, with 401: every other page needs a token."""
    return _page(request, "login.html", status=401)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return _page(request, "login.html")


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request) -> HTMLResponse:
    if token_id(request) is None:
        return _login(request)
    from ..pipeline import STAGES

    return _page(request, "dashboard.html", stages=list(STAGES))


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(run_id: int, request: Request) -> HTMLResponse:
    if token_id(request) is None:
        return _login(request)
    run = _get_run(service_of(request), run_id)
    return _page(request, "run.html", run=run, images=SUMMARY_IMAGES)


# -- results --------------------------------------------------------------------------------

def _store(svc: Any, run_id: int) -> Any:
    from ..store import ResultsStore

    run = _get_run(svc, run_id)
    store = ResultsStore(run.output)
    if not store.exists():
        raise HTTPException(404, f"run {run_id} has no results store yet ({run.output})")
    return store


@results_router.get("/api/runs/{run_id}/report", response_class=HTMLResponse, tags=["runs"])
def report(run_id: int, request: Request, _: Authed) -> FileResponse:
    """The run's HTML report (made from its store, again whenever a stage completes)."""
    import dask

    svc = service_of(request)
    store = _store(svc, run_id)
    key = hashlib.sha256(json.dumps(store.stages(), sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(svc.config.state_dir) / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"run-{run_id}-{key}.html"
    if not path.exists():
        from ..viz.report import write_report

        tmp = folder / f".run-{run_id}-{key}.{os.getpid()}.{id(request)}.html"
        try:
            with dask.config.set(scheduler="threads"):  # small reads of the store, here
                write_report(store, tmp)
        except StoreError as e:
            tmp.unlink(missing_ok=True)
            raise HTTPException(404, f"run {run_id}: no report yet ({e})") from None
        os.replace(tmp, path)  # whole or absent: a reader never sees half a report
        for old in folder.glob(f"run-{run_id}-*.html"):
            if old != path:
                old.unlink(missing_ok=True)
    return FileResponse(path, media_type="text/html", headers={"Content-Security-Policy": REPORT_CSP})


@results_router.get("/api/runs/{run_id}/images/{name}.png", tags=["runs"])
def summary_image(run_id: int, name: str, request: Request, _: Authed) -> Response:
    """A summary image of the corrected movie (mean, correlation, max, std) as PNG."""
    import dask
    import numpy as np
    from matplotlib.image import imsave

    if name not in SUMMARY_IMAGES:
        raise HTTPException(404, f"no image '{name}'; images are: {', '.join(SUMMARY_IMAGES)}")
    store = _store(service_of(request), run_id)
    try:
        with dask.config.set(scheduler="threads"):
            img = np.asarray(store.read("summary")[name].values, dtype=np.float64)
    except (StoreError, KeyError):
        raise HTTPException(404, f"run {run_id} has no {name} image yet") from None
    finite = img[np.isfinite(img)]
    lo, hi = np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0)
    buf = io.BytesIO()
    imsave(buf, np.nan_to_num(img, nan=lo), vmin=lo, vmax=hi if hi > lo else lo + 1, cmap="gray", format="png")
    return Response(buf.getvalue(), media_type="image/png", headers={"Cache-Control": "private, max-age=5"})
