"""The database behind the service: any SQLAlchemy URL, SQLite by default, migrated by Alembic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import CalciumDaskError, one_line

__all__ = ["Database", "DatabaseError", "default_url", "describe_error"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_MS = 10_000  # how long a SQLite writer waits for another one
POOL_SIZE = 24  # the request threads (see app.REQUEST_THREADS) and the runner's


class DatabaseError(CalciumDaskError, OSError):
    """The database cannot be opened, migrated or written."""


def default_url(state_dir: str | Path) -> str:
    """The SQLite file of a service whose state lives in ``state_dir``."""
    return f"sqlite:///{Path(state_dir).resolve() / 'service.db'}"


def describe_error(e: BaseException) -> str:
    """One line for a database failure, without the SQL statement SQLAlchemy appends."""
    orig = getattr(e, "orig", None)
    return one_line(orig if orig is not None else e).split(" [SQL:")[0]


class Database:
    """An engine and its sessions for one database URL.

    Parameters
    ----------
    url : str
        Any SQLAlchemy URL: ``sqlite:////var/lib/calcium-dask/service.db``,
        ``postgresql+psycopg://user:password@host/db``...
    """

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as e:
            raise DatabaseError(f"not a database URL: {url!r} ({e})") from None
        if parsed.drivername == "postgresql":  # psycopg 3 is what the service extra installs
            parsed = parsed.set(drivername="postgresql+psycopg")
        self.url = parsed
        # a pool as large as the threads that serve requests: connections are kept, never
        # opened and closed per request (a SQLite connection's pragmas cost more than a query)
        kwargs: dict[str, Any] = {"pool_size": POOL_SIZE, "max_overflow": 8, "pool_timeout": 30}
        if parsed.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000}
            if parsed.database and parsed.database != ":memory:" and "mode=ro" not in str(parsed):
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs["pool_pre_ping"] = True  # a restarted server: reconnect, do not fail
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (NoSuchModuleError, ImportError) as e:
            raise DatabaseError(f"{self.describe()}: no driver for this database ({one_line(e)})") from None
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def describe(self) -> str:
        """The URL without its password (for messages and logs)."""
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed at the end of the block (rolled back on an error)."""
        with self.sessions() as s, s.begin():
            yield s

    def upgrade(self) -> None:
        """Create or migrate the schema to the latest version (Alembic ``upgrade head``)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except SQLAlchemyError as e:
            raise DatabaseError(f"{self.describe()}: cannot create or migrate the schema "
                                f"({describe_error(e)})") from None

    def check_writable(self) -> None:
        """Raise DatabaseError unless a write succeeds (a read-only file, a full disk)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
        except DBAPIError as e:
            raise DatabaseError(f"{self.describe()}: cannot write to the database ({describe_error(e)})") from None

    def ping(self) -> str | None:
        """None when the database answers, else why not (one line)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return None
        except SQLAlchemyError as e:
            return describe_error(e)

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL: readers never wait for the writer, and a commit is an append (synced at checkpoints);
    foreign keys on; writers queue for a while."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA synchronous = NORMAL")  # with WAL: safe against a crash of the service
        try:
            cur.execute("PRAGMA journal_mode = WAL")
        except Exception:  # noqa: BLE001 - a read-only file keeps its mode; writes will say so
            pass
    finally:
        cur.close()
