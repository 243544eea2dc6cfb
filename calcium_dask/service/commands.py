"""The service's commands: ``serve`` (and ``serve create-token``), ``submit``, ``status``, ``watch``, ``cancel``.

Only click is imported here: ``calcium-dask --help`` stays fast, and works without the
``service`` extra.
"""

from __future__ import annotations

from typing import Any

import click

__all__ = ["serve_command", "submit_command", "status_command", "watch_command", "cancel_command"]

MAX_BODY = 1 << 20
ENGINES = ["tiff", "zarr", "hdf5", "nwb", "npy"]


def _db_option(f: Any) -> Any:
    return click.option("--db", "db_url", envvar="CALCIUM_DASK_DB", default=None, metavar="URL",
                        help="SQLAlchemy database URL, e.g. postgresql://user:pw@host/db (also $CALCIUM_DASK_DB; "
                             "default: a SQLite file in --state-dir).")(f)


def _state_option(f: Any) -> Any:
    return click.option("--state-dir", default="calcium-dask-service", show_default=True,
                        type=click.Path(file_okay=False),
                        help="Folder of the service's SQLite database, reports and lock file.")(f)


@click.group("serve", invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback: only this machine; 0.0.0.0 to open it up).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port (0: any free port, printed at start).")
@_db_option
@_state_option
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Dask scheduler address (default: a local cluster started by the service).")
@click.option("--workers", "n_workers", type=click.IntRange(min=1), default=None,
              help="Workers of the local cluster (default: one per core).")
@click.option("--allowed-root", "roots", multiple=True, metavar="DIR|URL",
              help="Inputs and outputs must lie under one of these (repeatable; at least one).")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="File of accepted tokens, one a line (besides those made by create-token).")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=2, show_default=True,
              help="Runs computing at the same time; the others wait in the queue.")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="Allow browser pages from this origin to call the API (repeatable; default: none).")
@click.option("--max-body", type=click.IntRange(min=1024), default=MAX_BODY, show_default=True,
              help="Largest request body, in bytes.")
@click.pass_context
def serve_command(ctx: click.Context, host: str, port: int, db_url: str | None, state_dir: str,
                  scheduler: str | None, n_workers: int | None, roots: tuple[str, ...], token_file: str | None,
                  max_concurrent: int, cors_origins: tuple[str, ...], max_body: int) -> None:
    """Run the analysis service: an HTTP API and a web dashboard of runs on one Dask cluster.

    Every request needs a token (make one with `calcium-dask serve create-token`). Runs
    survive the service: a restarted service resumes them from their stores' completion marks.
    """
    if ctx.invoked_subcommand is not None:
        return
    from .server import ServeOptions, serve

    serve(ServeOptions(roots=roots, state_dir=state_dir, db_url=db_url, host=host, port=port, scheduler=scheduler,
                       n_workers=n_workers, token_file=token_file, max_concurrent=max_concurrent,
                       cors_origins=cors_origins, max_body=max_body),
          echo=lambda line: click.echo(line, err=True))


def _database(db_url: str | None, state_dir: str) -> Any:
    from .db import Database, default_url

    db = Database(db_url or default_url(state_dir))
    db.upgrade()
    return db


@serve_command.command("create-token")
@_db_option
@_state_option
@click.option("--name", default="token", show_default=True, help="A label for the token (who or what uses it).")
def create_token_command(db_url: str | None, state_dir: str, name: str) -> None:
    """Make an API token and print it (only its hash is stored: keep it now)."""
    from .auth import create_token

    db = _database(db_url, state_dir)
    click.echo(create_token(db, name))
    click.echo(f"token '{name}' stored (hashed) in {db.describe()}; it is shown only once", err=True)


@serve_command.command("revoke-token")
@_db_option
@_state_option
@click.argument("name")
def revoke_token_command(db_url: str | None, state_dir: str, name: str) -> None:
    """Revoke every token called NAME."""
    from .auth import revoke_token

    n = revoke_token(_database(db_url, state_dir), name)
    click.echo(f"{n} token(s) revoked")


# -- the client commands ------------------------------------------------------------------------

def _client_options(f: Any) -> Any:
    f = click.option("--token", envvar="CALCIUM_DASK_TOKEN", default=None,
                     help="API token (default: $CALCIUM_DASK_TOKEN).")(f)
    return click.option("--service", "url", envvar="CALCIUM_DASK_SERVICE", default="http://127.0.0.1:8000",
                        show_default=True, help="The service's URL (also $CALCIUM_DASK_SERVICE).")(f)


def _client(url: str, token: str | None) -> Any:
    from .client import Client

    return Client(url, token)


def _describe(run: Any) -> str:
    stages = ", ".join(f"{s.stage} {s.state}" + (f" {s.progress:.0%}" if s.state == "running" else "")
                       for s in run.stages)
    extra = "".join(f", {k} {v}" for k, v in (("units", run.units), ("accepted", run.accepted)) if v is not None)
    line = f"run {run.id} {run.name}: {run.state} ({stages}{extra})"
    return line + (f": {run.message}" if run.message else "")


@click.command("submit")
@click.argument("movie", nargs=-1)
@click.option("--out", default=None, help="Results store (zarr; path or URL) under an allowed root of the service.")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Submit every session of this batch manifest instead.")
@click.option("--params", "params_file", type=click.Path(dir_okay=False), default=None,
              help="YAML or JSON parameter file (CaImAn names).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Override one parameter (repeatable).")
@click.option("--until", default=None, help="Stop after this stage.")
@click.option("--name", default=None, help="The run's name (default: the movie's file name).")
@click.option("--engine", type=click.Choice(ENGINES), default=None)
@click.option("--dataset", default=None, help="HDF5 dataset, zarr array or NWB series name.")
@click.option("--plane", type=int, default=None, help="Plane/channel of 4-D data.")
@click.option("--wait", is_flag=True, help="Then watch the run until it ends.")
@_client_options
@click.pass_context
def submit_command(ctx: click.Context, movie: tuple[str, ...], out: str | None, manifest: str | None,
                   params_file: str | None, assignments: tuple[str, ...], until: str | None, name: str | None,
                   engine: str | None, dataset: str | None, plane: int | None, wait: bool, url: str,
                   token: str | None) -> None:
    """Submit MOVIE to a calcium-dask service (or a batch with --manifest); print the run's id."""
    from ..params import Params

    if manifest:
        if movie or out:
            raise click.UsageError("give either MOVIE and --out, or --manifest")
        with _client(url, token) as c:
            batch = c.submit_batch(manifest, name=name)
        for r in batch.runs:
            click.echo(f"{r.id}\t{r.name}\t{r.state}")
        return
    if not movie or not out:
        raise click.UsageError("give MOVIE and --out (or --manifest)")
    params = Params.load(params_file) if params_file else Params()
    params = params.with_overrides(list(assignments)) if assignments else params
    with _client(url, token) as c:
        run = c.submit(list(movie) if len(movie) > 1 else movie[0], out, params, until=until, name=name,
                       engine=engine, dataset=dataset, plane=plane)
        click.echo(run.id)
        click.echo(_describe(run), err=True)
        if wait:
            _watch(ctx, c, run.id)


@click.command("status")
@click.argument("run_id", type=int, required=False)
@click.option("--state", default=None, help="Only runs in this state (queued, running, done, failed, cancelled).")
@click.option("--name", default=None, help="Only runs whose name contains this.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_client_options
def status_command(run_id: int | None, state: str | None, name: str | None, limit: int, as_json: bool, url: str,
                   token: str | None) -> None:
    """Show one run (RUN_ID) or the latest runs."""
    import json

    with _client(url, token) as c:
        runs = [c.status(run_id)] if run_id is not None else c.runs(state=state, name=name, limit=limit)
    if as_json:
        payload = [r.model_dump(mode="json") for r in runs]
        click.echo(json.dumps(payload[0] if run_id is not None else payload, indent=1))
        return
    for r in runs:
        click.echo(_describe(r))


def _watch(ctx: click.Context, c: Any, run_id: int) -> None:
    run = c.wait(run_id, raise_on_failure=False)
    click.echo(_describe(run), err=True)
    if run.state != "done":
        ctx.exit(1)


@click.command("watch")
@click.argument("run_id", type=int)
@_client_options
@click.pass_context
def watch_command(ctx: click.Context, run_id: int, url: str, token: str | None) -> None:
    """Follow a run with a progress bar until it ends (exit 1 unless it is done)."""
    with _client(url, token) as c:
        _watch(ctx, c, run_id)


@click.command("cancel")
@click.argument("run_id", type=int)
@_client_options
def cancel_command(run_id: int, url: str, token: str | None) -> None:
    """Cancel a run (a running run's tasks are cancelled on the cluster)."""
    with _client(url, token) as c:
        state = c.cancel(run_id)
    click.echo(f"run {run_id}: {'cancelled' if state == 'cancelled' else 'cancelling'}")
