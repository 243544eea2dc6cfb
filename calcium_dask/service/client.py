"""``calcium_dask.service.Client``: submit runs to a service and wait for them, from a notebook or a script.

>>> from calcium_dask.service import Client
>>> svc = Client("http://127.0.0.1:8000", token="cdt_...")       # or $CALCIUM_DASK_TOKEN
>>> run = svc.submit("/data/raw/m01.tif", "/data/results/m01.zarr", params={"fr": 30, "K": 4})
>>> svc.wait(run.id)                                             # a progress bar until it ends
>>> res = svc.results(run.id)                                    # a calcium_dask Results
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import CalciumDaskError
from .schemas import BatchOut, RunList, RunOut

__all__ = ["Client", "ServiceRequestError", "RunFailed", "TOKEN_ENV", "SERVICE_ENV", "DEFAULT_URL"]

TOKEN_ENV = "CALCIUM_DASK_TOKEN"
SERVICE_ENV = "CALCIUM_DASK_SERVICE"
DEFAULT_URL = "http://127.0.0.1:8000"
FINISHED = ("done", "failed", "cancelled")


class ServiceRequestError(CalciumDaskError, OSError):
    """The service refused a request (its one-line reason) or cannot be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RunFailed(CalciumDaskError, RuntimeError):
    """A run waited for ended ``failed`` or ``cancelled``."""

    def __init__(self, run: RunOut) -> None:
        super().__init__(f"run {run.id} ({run.name}) {run.state}: {run.message or 'no message'}")
        self.run = run


def _absolute(path: Any) -> Any:
    """Local paths made absolute (the service does not share our working folder); URLs unchanged."""
    if isinstance(path, (list, tuple)):
        return [_absolute(p) for p in path]
    s = os.fspath(path)
    return s if "://" in s else os.path.abspath(os.path.expanduser(s))


class Client:
    """A connection to a ``calcium-dask serve`` service.

    Parameters
    ----------
    url : str, optional
        The service (default ``$CALCIUM_DASK_SERVICE`` or ``http://127.0.0.1:8000``).
    token : str, optional
        An API token (default ``$CALCIUM_DASK_TOKEN``).
    timeout : float
        Seconds to wait for each HTTP request.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0) -> None:
        import httpx

        self.url = (url or os.environ.get(SERVICE_ENV) or DEFAULT_URL).rstrip("/")
        token = token or os.environ.get(TOKEN_ENV)
        if not token:
            raise ServiceRequestError(f"no token: pass token= or set ${TOKEN_ENV}")
        self._http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection (also at the end of a ``with`` block)."""
        self._http.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # -- HTTP ----------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise ServiceRequestError(f"cannot reach the service at {self.url} ({type(e).__name__}: {e})") from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail") or r.reason_phrase
            except ValueError:
                detail = r.text.strip()[:300] or r.reason_phrase
            raise ServiceRequestError(f"{self.url}: {detail} (HTTP {r.status_code})", r.status_code)
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text

    # -- runs ----------------------------------------------------------------------------
    def submit(self, input: Any, output: str | os.PathLike, params: Any = None, *, until: str | None = None,
               name: str | None = None, engine: str | None = None, dataset: str | None = None,
               plane: int | None = None) -> RunOut:
        """Queue a run of the pipeline; the run as the service sees it.

        ``params`` is a :class:`~calcium_dask.Params` or a dict with CaImAn's names.
        """
        if params is not None and hasattr(params, "to_dict"):
            params = params.to_dict()
        body = {"input": _absolute(input), "output": _absolute(output), "params": dict(params or {}),
                "until": until, "name": name, "engine": engine, "dataset": dataset, "plane": plane}
        out = self._call("POST", "/api/runs", json={k: v for k, v in body.items() if v is not None or k == "until"})
        return self.status(out["id"])

    def submit_batch(self, manifest: str | os.PathLike | Mapping[str, Any], *, name: str | None = None) -> BatchOut:
        """Queue every session of a batch manifest (a YAML file, or the same as a dict).

        Relative paths in a manifest file are taken relative to its folder, as
        ``calcium-dask batch`` does."""
        import yaml

        if isinstance(manifest, Mapping):
            doc, base, label = dict(manifest), Path.cwd(), "batch"
        else:
            path = Path(manifest)
            doc, base, label = yaml.safe_load(path.read_text()), path.resolve().parent, path.stem
        sessions = doc.get("sessions") if isinstance(doc, dict) else None
        for s in sessions if isinstance(sessions, list) else []:
            if isinstance(s, dict):
                for key in ("input", "output"):
                    if isinstance(s.get(key), (str, list)):
                        s[key] = _relative_to(s[key], base)
        out = self._call("POST", "/api/batches", params={"name": name or label}, json=doc)
        return BatchOut.model_validate(out)

    def status(self, run_id: int) -> RunOut:
        """A run's state, stages, progress and summary."""
        return RunOut.model_validate(self._call("GET", f"/api/runs/{int(run_id)}"))

    def runs(self, *, state: str | None = None, name: str | None = None, limit: int = 50,
             offset: int = 0) -> list[RunOut]:
        """Runs, newest first (filtered by state and by a part of their name)."""
        query = {k: v for k, v in {"state": state, "name": name, "limit": limit, "offset": offset}.items()
                 if v is not None}
        return RunList.model_validate(self._call("GET", "/api/runs", params=query)).runs

    def cancel(self, run_id: int) -> str:
        """Cancel a run; its state after the request (``cancelled``, or ``running`` while it stops)."""
        return self._call("POST", f"/api/runs/{int(run_id)}/cancel")["state"]

    def retry(self, run_id: int) -> str:
        """Queue a failed or cancelled run again (it resumes from its completion marks)."""
        return self._call("POST", f"/api/runs/{int(run_id)}/retry")["state"]

    def log(self, run_id: int) -> str:
        """The run's log, as text."""
        return self._call("GET", f"/api/runs/{int(run_id)}/log")

    def wait(self, run_id: int, *, timeout: float | None = None, poll: float = 1.0, progress: bool = True,
             raise_on_failure: bool = True) -> RunOut:
        """Wait until a run ends, with a progress bar; the finished run.

        Raises
        ------
        RunFailed
            The run ended ``failed`` or ``cancelled`` (unless ``raise_on_failure=False``).
        TimeoutError
            ``timeout`` seconds went by first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _Bar(run_id) if progress else None
        try:
            while True:
                run = self.status(run_id)
                if bar is not None:
                    bar.update(run)
                if run.state in FINISHED:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"run {run_id} is still {run.state} after {timeout} s")
                time.sleep(poll)
        finally:
            if bar is not None:
                bar.close()
        if raise_on_failure and run.state != "done":
            raise RunFailed(run)
        return run

    def results(self, run_id: int, *, storage_options: dict | None = None) -> Any:
        """The run's results (:class:`calcium_dask.Results`), read from its store."""
        from ..results import open_results

        return open_results(self.status(run_id).output, storage_options=storage_options)


def _relative_to(value: Any, base: Path) -> Any:
    """A manifest's local path made absolute, relative to the manifest's folder."""
    if isinstance(value, list):
        return [_relative_to(v, base) for v in value]
    if not isinstance(value, str) or "://" in value:
        return value
    p = os.path.expanduser(value)
    return p if os.path.isabs(p) else os.path.normpath(base / p)


class _Bar:
    """A rich progress bar of a run's overall progress, labelled with its current stage and pass."""

    def __init__(self, run_id: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._p = Progress(TextColumn("[bold]run {task.fields[rid]}[/] {task.description}"), BarColumn(),
                           TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                           console=Console(stderr=True))
        self._p.start()
        self._task = self._p.add_task("queued", total=1.0, rid=run_id)

    def update(self, run: RunOut) -> None:
        current = next((s for s in run.stages if s.state == "running"), None)
        what = run.state if current is None else f"{current.stage}: {current.pass_label or ''}".rstrip(": ")
        self._p.update(self._task, completed=run.progress, description=what)

    def close(self) -> None:
        self._p.stop()
