"""``/metrics`` (Prometheus text: runs by state, stage durations) and ``/healthz``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select

from .._version import __version__
from .api import Authed, service_of
from .models import STATES, Run, RunStage
from .schemas import Health

__all__ = ["router", "BUCKETS"]

router = APIRouter()
#: stage duration histogram buckets, seconds: a test movie to a terabyte session
BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


class _Collector:
    """Reads the database at each scrape: the figures are the same whichever service is asked."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

        with self.svc.db.session() as s:
            counts = dict(s.execute(select(Run.state, func.count(Run.id)).group_by(Run.state)).all())
            durations = s.execute(select(RunStage.stage, RunStage.seconds)
                                  .where(RunStage.state == "done", RunStage.seconds.is_not(None))).all()
        runs = GaugeMetricFamily("calcium_dask_runs", "Runs in the database, by state", labels=["state"])
        for state in STATES:
            runs.add_metric([state], counts.get(state, 0))
        yield runs
        hist = HistogramMetricFamily("calcium_dask_stage_duration_seconds",
                                     "Seconds each finished pipeline stage took (from its completion mark)",
                                     labels=["stage"])
        by_stage: dict[str, list[float]] = {}
        for stage, seconds in durations:
            by_stage.setdefault(stage, []).append(float(seconds))
        for stage, values in sorted(by_stage.items()):
            buckets = [(str(b), sum(v <= b for v in values)) for b in BUCKETS] + [("+Inf", len(values))]
            hist.add_metric([stage], buckets, sum(values))
        yield hist
        runner = self.svc.runner
        if runner is not None:
            status = runner.status()
            active = GaugeMetricFamily("calcium_dask_runner_active_runs", "Runs this service is running now")
            active.add_metric([], len(status.running))
            yield active
            up = GaugeMetricFamily("calcium_dask_scheduler_up", "1 when this service reaches its Dask scheduler")
            up.add_metric([], 0 if status.scheduler_error else 1)
            yield up


@router.get("/metrics", tags=["operations"])
def metrics(request: Request, _: Authed) -> Response:
    """Prometheus text format (authenticated: give the scraper a token)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(service_of(request)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", response_model=Health, tags=["operations"])
def healthz(request: Request) -> JSONResponse:
    """Database and scheduler status, without a token (for probes); 503 when the database is down."""
    svc = service_of(request)
    db_error = svc.db.ping()
    runner = svc.runner.status() if svc.runner is not None else None
    if runner is None:
        scheduler = "not running runs"
    elif runner.scheduler_error:
        scheduler = f"unreachable: {runner.scheduler_error}"
    else:
        scheduler = "ok"
    ok = db_error is None and (runner is None or runner.scheduler_error is None)
    health = Health(status="ok" if ok else "degraded",
                    database="ok" if db_error is None else f"unavailable: {db_error}", scheduler=scheduler,
                    running=len(runner.running) if runner else 0, version=__version__)
    return JSONResponse(health.model_dump(), status_code=200 if db_error is None else 503)
