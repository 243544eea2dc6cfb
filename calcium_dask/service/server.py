"""Starting the service: state folder, database, tokens, runner, then uvicorn on one socket."""

from __future__ import annotations

import fcntl
import gc
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, select

from ..errors import CalciumDaskError, one_line
from .app import MAX_BODY, Service, ServiceConfig, create_app
from .auth import load_token_file
from .db import Database, default_url
from .models import Token
from .paths import AllowedRoots
from .runner_process import RunnerProcess, RunnerSpec

__all__ = ["ServeOptions", "ServiceError", "build", "serve"]


class ServiceError(CalciumDaskError, OSError):
    """The service cannot start (its state folder is in use, the address is taken...)."""


@dataclass(frozen=True)
class ServeOptions:
    """``calcium-dask serve``'s options."""

    roots: Sequence[str]
    state_dir: str = "calcium-dask-service"
    db_url: str | None = None
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 8000
    scheduler: str | None = None
    n_workers: int | None = None
    token_file: str | None = None
    max_concurrent: int = 2
    cors_origins: tuple[str, ...] = ()
    max_body: int = MAX_BODY


def _lock(state_dir: Path) -> IO[Any]:
    """Hold ``service.lock`` for the life of this process: one service per state folder."""
    path = state_dir / "service.lock"
    f = open(path, "a+")  # noqa: SIM115 - held open until the process ends
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise ServiceError(f"{state_dir}: another calcium-dask service is using this state folder "
                           f"({path} is locked)") from None
    return f


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)  # from now on connections wait in the backlog: the address printed works
    except OSError as e:
        raise ServiceError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.set_inheritable(True)
    return sock


def build(opts: ServeOptions, *, echo: Any = None) -> tuple[Service, Any]:
    """The service and its app, ready to serve: state folder locked, database migrated and
    writable, tokens of ``--token-file`` accepted, roots checked."""
    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    if not opts.roots:
        raise ServiceError("give at least one --allowed-root: runs may only read and write under one")
    roots = AllowedRoots.from_options(opts.roots)
    state_dir = Path(opts.state_dir).expanduser().resolve()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ServiceError(f"{state_dir}: cannot create the state folder ({e.strerror or e})") from None
    lock = _lock(state_dir)
    db_url = opts.db_url or default_url(state_dir)
    db = Database(db_url)
    db.upgrade()
    db.check_writable()
    if opts.token_file:
        say(f"{opts.token_file}: {load_token_file(db, opts.token_file)} tokens accepted")
    with db.session() as s:
        if not s.scalar(select(func.count(Token.id)).where(Token.revoked.is_(False))):
            say("warning: no token yet; make one with: calcium-dask serve create-token "
                f"--db '{db.describe()}'")
    owner = f"{socket.gethostname()}:{state_dir}"
    # the runner in a process of its own: its pipelines' clients and the local scheduler
    # would otherwise share this process's interpreter lock with the requests
    runner = RunnerProcess(RunnerSpec(db_url, tuple(opts.roots), owner, scheduler=opts.scheduler,
                                      n_workers=opts.n_workers, max_concurrent=opts.max_concurrent))
    service = Service(ServiceConfig(roots, state_dir, opts.max_body, tuple(opts.cors_origins)), db, runner, lock)
    return service, create_app(service, echo=say)


def serve(opts: ServeOptions, *, echo: Any = None) -> None:
    """Run the service until SIGINT or SIGTERM (runs in progress are queued again, to resume).

    uvicorn shuts down gracefully, then ends the process with the signal it received."""
    import uvicorn

    from ..compute import set_quiet

    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    set_quiet(True)  # runs report to the database, not to this terminal
    service, app = build(opts, echo=say)
    # what a submission is checked with (parameters, stage names: the pipeline's modules,
    # ~1.5 s to import): loaded now, not by the first request while others wait behind it
    import calcium_dask.batch  # noqa: F401
    import calcium_dask.pipeline  # noqa: F401

    # the modules' objects (a million and more) stay for the process's life: out of the
    # collector's sight, its full passes no longer stop every request for ~0.1-0.3 s
    gc.freeze()
    sock = _bind(opts.host, opts.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    say(f"calcium-dask service on http://{shown}:{port}  (database {service.db.describe()}; "
        f"allowed roots {service.config.roots.describe()}; "
        f"scheduler {opts.scheduler or 'a local cluster'}; at most {opts.max_concurrent} runs at once)")
    config = uvicorn.Config(app, log_level=os.environ.get("CALCIUM_DASK_LOG_LEVEL", "warning"),
                            timeout_graceful_shutdown=10, server_header=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except Exception as e:  # noqa: BLE001 - one line, like any CLI failure
        raise ServiceError(f"the service stopped: {one_line(e)}") from e
    finally:
        sock.close()
        service.db.close()
