"""The JSON the HTTP API takes and gives (pydantic models: the OpenAPI schema, and the client's records)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RunCreate", "StageOut", "RunOut", "RunList", "RunRef", "BatchOut", "Health", "Login"]

Engine = Literal["tiff", "zarr", "hdf5", "nwb", "npy"]
State = Literal["queued", "running", "done", "failed", "cancelled"]


class RunCreate(BaseModel):
    """A run to submit: the same choices as ``calcium-dask run``."""

    model_config = ConfigDict(extra="forbid")

    input: str | list[str] = Field(description="Movie path, URL or glob (or a list): under an allowed root.")
    output: str = Field(description="Results store (zarr) path or URL: under an allowed root.")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters with CaImAn's names, "
                                   "flat or by group (as in a --params file).")
    until: str | None = Field(None, description="Stop after this stage (motion, cnmf, evaluate).")
    name: str | None = Field(None, max_length=200, description="A label (default: the input's file name).")
    engine: Engine | None = None
    dataset: str | None = Field(None, max_length=500)
    plane: int | None = None


class StageOut(BaseModel):
    """A stage of a run: from the store's completion marks, and the pass it is computing."""

    stage: str
    state: Literal["pending", "running", "done"]
    progress: float = Field(description="Fraction of the current pass's tasks done (1 when done).")
    pass_label: str | None = None
    done: int = 0
    total: int = 0
    seconds: float | None = None
    details: dict[str, Any] | None = None


class RunOut(BaseModel):
    """A run's state, stages, progress and summary."""

    id: int
    name: str
    state: State
    input: str | list[str]
    output: str
    until: str | None = None
    batch_id: int | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float | None = Field(None, description="Since it first started (to its end, or now).")
    progress: float
    message: str | None = Field(None, description="Why it failed, or why it waits.")
    units: int | None = None
    accepted: int | None = None
    attempts: int = 0
    cancel_requested: bool = False
    stages: list[StageOut] = Field(default_factory=list)
    params: dict[str, Any] | None = None


class RunList(BaseModel):
    """A page of runs, newest first, and how many runs match the filter in all."""

    runs: list[RunOut]
    total: int
    limit: int
    offset: int


class RunRef(BaseModel):
    """A run of a batch: its id, name and state."""

    id: int
    name: str
    state: State
    message: str | None = None


class BatchOut(BaseModel):
    """A submitted batch and its runs (one per session)."""

    id: int
    name: str
    runs: list[RunRef]


class Health(BaseModel):
    """The service's health: its database, its scheduler and how many runs are running."""

    status: Literal["ok", "degraded"]
    database: str
    scheduler: str
    running: int
    version: str


class Login(BaseModel):
    """A token for the dashboard's login (kept in an HTTP-only cookie)."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(max_length=512)
