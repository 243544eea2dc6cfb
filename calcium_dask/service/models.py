"""The service's tables (SQLAlchemy 2): runs and their stages, events, log lines, batches, tokens.

The schema is created and changed only by the Alembic migrations in ``migrations/``; a
test checks that these models and the migrated database agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = ["Base", "Token", "Batch", "Run", "RunStage", "Event", "LogLine", "STATES", "ACTIVE", "FINISHED",
           "utcnow", "RUNS", "RUN_STAGES", "EVENTS"]

#: the states of a run: queued -> running -> done | failed | cancelled (retry: back to queued)
STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and read back time-zone aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Token(Base):
    """An API token, kept only as its SHA-256 digest."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(20))  # "create-token" or "token-file"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Batch(Base):
    """Runs submitted together from one batch manifest."""

    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("tokens.id"), nullable=True)


class Run(Base):
    """One ``run_pipeline`` call: what to run, its state and what it found."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), index=True)
    input: Mapped[Any] = mapped_column(JSON)  # a path or URL, or a list of them
    output: Mapped[str] = mapped_column(String(2000))
    # the output's digest while the run is queued or running (NULL after): no two active
    # runs write one store, enforced by the database itself (NULLs never collide)
    active_output: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    params: Mapped[dict] = mapped_column(JSON)  # every parameter, by group
    until: Mapped[str | None] = mapped_column(String(20), nullable=True)
    open_kwargs: Mapped[dict] = mapped_column(JSON, default=dict)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), nullable=True, index=True)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("tokens.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it failed or waits
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    units: Mapped[int | None] = mapped_column(Integer, nullable=True)
    accepted: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(300), nullable=True)  # the service running it
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)

    stages: Mapped[list[RunStage]] = relationship(order_by="RunStage.position", cascade="all, delete-orphan",
                                                  lazy="selectin")


class RunStage(Base):
    """A pipeline stage of a run; ``done`` of ``total`` tasks of its current pass."""

    __tablename__ = "run_stages"
    __table_args__ = (UniqueConstraint("run_id", "stage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, running, done
    pass_label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    details: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the completion mark's record


class Event(Base):
    """Something that happened to a run (or to the service, without a run)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), nullable=True,
                                               index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)


class LogLine(Base):
    """A line of a run's log: its passes, stages and warnings."""

    __tablename__ = "log_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    level: Mapped[str] = mapped_column(String(10), default="info")
    message: Mapped[str] = mapped_column(Text)


# the tables themselves, for the hot paths that use SQLAlchemy Core, not the ORM (status reads,
# submissions)
RUNS, RUN_STAGES, EVENTS = Run.__table__, RunStage.__table__, Event.__table__
