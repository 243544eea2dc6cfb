"""``calcium-dask batch``: many sessions on one Dask cluster, each isolated and resumable.

A manifest (YAML) names the sessions::

    params: {fr: 30, pw_rigid: true, K: 4, gSig: [4, 4]}   # CaImAn names, for every session
    storage_options: {}                                    # fsspec options, for every URL
    allowed_roots: [s3://lab-raw, s3://lab-results]        # optional: confine every path
    sessions:
      - name: m01-2024-05-01
        input: s3://lab-raw/m01/2024-05-01/*.tif            # a path, URL, glob or list of them
        output: s3://lab-results/m01/2024-05-01.zarr        # this session's own results store
        overrides: {motion.max_shifts: [10, 10]}            # optional, as with --set
        until: cnmf                                         # optional: stop after this stage

Everything is checked before anything runs (:func:`load_manifest`); then the sessions run
in threads of this process, a few at a time, on one client (:func:`run_batch`). Each one
has its own results store and parameters; a failure is reported and the others go on; a
rerun skips the sessions that are complete and resumes the others.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import posixpath
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from .errors import CalciumDaskError, one_line

__all__ = ["ManifestError", "Session", "Manifest", "SessionResult", "load_manifest", "run_batch",
           "run_sessions", "write_summary", "batch_command"]

TOP_KEYS = ("params", "storage_options", "allowed_roots", "sessions")
SESSION_KEYS = ("name", "input", "output", "overrides", "until", "storage_options", "engine",
                "dataset", "plane")
ENGINES = ("tiff", "zarr", "hdf5", "nwb", "npy", "sbx", "bruker", "nd2")
_NAME = re.compile(r"[A-Za-z0-9][\w.@+-]*")
_MAX_SHOWN = 6  # problems named in the one-line error
_MAX_REASON = 300  # characters of an exception quoted in a problem or a summary row


class ManifestError(CalciumDaskError, ValueError):
    """The batch manifest is unreadable or inconsistent (checked before any session runs)."""


@dataclass(frozen=True)
class Session:
    """One session of a manifest, fully resolved: absolute paths, its own validated parameters."""

    name: str
    input: str | list[str]
    output: str
    params: Any  # calcium_dask.params.Params (imported lazily: the CLI starts fast)
    storage_options: dict[str, Any] = field(default_factory=dict)
    until: str | None = None
    open_kwargs: dict[str, Any] = field(default_factory=dict)
    group: str | None = None  # one field of view of a multi-plane session: its group in ``output``
    from_stage: str | None = None  # rerun from this stage on
    out_storage_options: dict[str, Any] | None = None  # for ``output`` (default: ``storage_options``)


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: where it was read from, its shared options and its sessions."""

    path: str
    storage_options: dict[str, Any]
    sessions: list[Session]


@dataclass
class SessionResult:
    """What happened to one session in this batch run (a row of the summary)."""

    session: str
    status: str
    units: int | None = None
    accepted: int | None = None
    seconds: float = 0.0
    output: str = ""

    @property
    def failed(self) -> bool:
        """Whether the session failed in this run."""
        return self.status.startswith("failed")

    def row(self) -> dict[str, Any]:
        """The summary table's row of this session."""
        return {"session": self.session, "status": self.status, "units": self.units,
                "accepted": self.accepted, "seconds": round(self.seconds, 2), "output": self.output}


# -- reading and validating the manifest ---------------------------------------------------

def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read and check a batch manifest; every problem found is named in one ManifestError.

    Relative local paths (inputs, outputs, ``allowed_roots``) are taken relative to the
    manifest's folder. Inputs must exist (checked through fsspec with the storage options,
    globs must match); names and outputs must be unique; parameter overrides must be valid;
    with ``allowed_roots`` every input and output must lie under one of them once ``..``
    (and, for local paths, symbolic links) are resolved.

    Raises
    ------
    ManifestError
    """
    path = Path(path)
    doc = _read_yaml(path)
    problems: list[str] = []
    base = path.resolve().parent
    top_params = _top_params(doc, problems)
    shared_so = _mapping(doc.get("storage_options"), "storage_options", problems)
    roots = _allowed_roots(doc.get("allowed_roots"), base, problems)
    entries = doc.get("sessions")
    if not isinstance(entries, list) or not entries:
        problems.append("'sessions' must be a non-empty list")
        entries = []
    sessions = [s for i, e in enumerate(entries)
                if (s := _session(e, i, base, top_params, shared_so, problems)) is not None]
    _check_unique(sessions, problems)
    if not problems:  # the file is sound: now look at storage
        for s in sessions:
            _check_paths(s, roots, problems)
    if problems:
        shown = "; ".join(problems[:_MAX_SHOWN])
        more = f" (and {len(problems) - _MAX_SHOWN} more)" if len(problems) > _MAX_SHOWN else ""
        raise ManifestError(f"{path}: {shown}{more}")
    return Manifest(str(path), shared_so, sessions)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text()
    except OSError as e:
        raise ManifestError(f"{path}: cannot read the manifest ({e.strerror or e})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ManifestError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{path}: expected a mapping with 'sessions', got {type(doc).__name__}")
    unknown = [_unknown_key(k, TOP_KEYS, "key") for k in doc if k not in TOP_KEYS]
    if unknown:
        raise ManifestError(f"{path}: " + "; ".join(unknown))
    return doc


def _unknown_key(key: Any, valid: Sequence[str], what: str) -> str:
    close = difflib.get_close_matches(str(key), valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(valid)})"
    return f"unknown {what} '{key}'{hint}"


def _mapping(value: Any, where: str, problems: list[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: expected a mapping, got {type(value).__name__}")
        return {}
    return value


def _top_params(doc: dict[str, Any], problems: list[str]) -> Any:
    from .params import Params

    d = _mapping(doc.get("params"), "params", problems)
    try:
        return Params.from_caiman(d)
    except CalciumDaskError as e:
        problems.append(f"params: {e}")
        return None


def _allowed_roots(value: Any, base: Path, problems: list[str]) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(r, str) and r for r in value):
        problems.append("allowed_roots: expected a non-empty list of paths or URLs")
        return None
    return [_canonical(_absolute(r, base)) for r in value]


def _session(entry: Any, i: int, base: Path, top_params: Any, shared_so: dict[str, Any],
             problems: list[str]) -> Session | None:
    """One entry -> a Session, or None (its problems appended, prefixed with its name)."""
    if not isinstance(entry, dict):
        problems.append(f"session #{i + 1}: expected a mapping, got {type(entry).__name__}")
        return None
    label = f"session '{entry['name']}'" if isinstance(entry.get("name"), str) else f"session #{i + 1}"
    mine: list[str] = [_unknown_key(k, SESSION_KEYS, "key") for k in entry if k not in SESSION_KEYS]
    name = _session_name(entry.get("name"), mine)
    inputs = _session_input(entry.get("input"), base, mine)
    output = _session_output(entry.get("output"), base, mine)
    until = _session_until(entry.get("until"), mine)
    params = _session_params(top_params, entry.get("overrides"), mine)
    so = _merge(shared_so, _mapping(entry.get("storage_options"), "storage_options", mine))
    open_kwargs = _open_kwargs(entry, mine)
    problems.extend(f"{label}: {p}" for p in mine)
    if mine or top_params is None:
        return None
    return Session(name, inputs, output, params, so, until, open_kwargs)  # type: ignore[arg-type]


def _session_name(value: Any, problems: list[str]) -> str | None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        problems.append("'name' must be letters, digits and . _ - + @ (starting with a letter or digit)"
                        if value is not None else "'name' is missing")
        return None
    return value


def _session_input(value: Any, base: Path, problems: list[str]) -> str | list[str] | None:
    if isinstance(value, str) and value:
        return _absolute(value, base)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return [_absolute(v, base) for v in value]
    problems.append("'input' must be a path, URL or glob, or a list of them" if value is not None
                    else "'input' is missing")
    return None


def _session_output(value: Any, base: Path, problems: list[str]) -> str | None:
    if isinstance(value, str) and value and not any(c in value for c in "*?["):
        return _absolute(value, base)
    problems.append("'output' must be one path or URL (no wildcards)" if value is not None
                    else "'output' is missing")
    return None


def _session_until(value: Any, problems: list[str]) -> str | None:
    from .pipeline import STAGES

    if value is None or value in STAGES:
        return value
    problems.append(f"unknown stage '{value}' for 'until' (stages: {', '.join(STAGES)})")
    return None


def _session_params(top_params: Any, overrides: Any, problems: list[str]) -> Any:
    over = _mapping(overrides, "overrides", problems)
    if top_params is None or not over:
        return top_params
    try:
        return top_params.replace(**{str(k): v for k, v in over.items()})
    except CalciumDaskError as e:
        problems.append(f"overrides: {e}")
        return None


def _open_kwargs(entry: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    kw = {k: entry[k] for k in ("engine", "dataset", "plane") if entry.get(k) is not None}
    if "engine" in kw and kw["engine"] not in ENGINES:
        problems.append(f"unknown engine '{kw['engine']}' (engines: {', '.join(ENGINES)})")
    if "plane" in kw and (not isinstance(kw["plane"], int) or isinstance(kw["plane"], bool)):
        problems.append("'plane' must be an integer")
    if "dataset" in kw and not isinstance(kw["dataset"], str):
        problems.append("'dataset' must be a string")
    return kw


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``b`` over ``a``, nested mappings merged (e.g. ``client_kwargs``)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# -- paths ---------------------------------------------------------------------------------

def _is_url(s: str) -> bool:
    return "://" in s or s.startswith("memory:")


def _absolute(s: str, base: Path) -> str:
    """A local path made absolute (relative to the manifest's folder); URLs unchanged."""
    if _is_url(s):
        return s
    p = Path(os.path.expanduser(s))
    return os.path.normpath(p if p.is_absolute() else base / p)


def _canonical(s: str) -> str:
    """A form to compare locations: ``..`` resolved, symbolic links too for local paths."""
    if s.startswith("file://"):
        s = s[len("file://"):]
    if not _is_url(s):
        return os.path.realpath(s)
    scheme, sep, rest = s.partition("://")
    rest = posixpath.normpath("/" + rest).lstrip("/") if sep else s
    return f"{scheme.lower()}://{rest}" if sep else s


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _inputs(s: Session) -> list[str]:
    return list(s.input) if isinstance(s.input, list) else [s.input]


def _check_unique(sessions: list[Session], problems: list[str]) -> None:
    """Names distinct; no two sessions share (or nest) a store; no store inside an input."""
    seen: set[str] = set()
    for s in sessions:
        if s.name in seen:
            problems.append(f"two sessions are named '{s.name}'")
        seen.add(s.name)
    outs = [(s.name, _canonical(s.output)) for s in sessions]
    for i, (a, pa) in enumerate(outs):
        for b, pb in outs[i + 1:]:
            if _under(pa, pb) or _under(pb, pa):
                problems.append(f"sessions '{a}' and '{b}' write the same results store {pa}"
                                if pa == pb else f"sessions '{a}' and '{b}' have nested results stores "
                                f"({pa}, {pb})")
    for s in sessions:
        for name, out in outs:
            if any(_under(out, _canonical(u)) for u in _inputs(s)):
                problems.append(f"session '{name}': output {out} is inside the input of session '{s.name}'")


def _check_paths(s: Session, roots: list[str] | None, problems: list[str]) -> None:
    """Inputs exist (globs expanded, through fsspec); with ``roots``, every path lies under one."""
    from .io.urls import expand_files, filesystem

    label = f"session '{s.name}'"
    if roots is not None:
        outside = [f"{label}: {what} {p} is outside the allowed roots ({', '.join(roots)})"
                   for what, p in [("input", u) for u in _inputs(s)] + [("output", s.output)]
                   if not any(_under(_canonical(p), r) for r in roots)]
        if outside:  # never touch storage outside the roots, not even to test existence
            problems.extend(outside)
            return
    try:
        files = expand_files(s.input, s.storage_options)
        for f in files:
            fs, fpath = filesystem(f, s.storage_options)
            if not fs.exists(fpath):
                problems.append(f"{label}: input {f} does not exist")
            elif roots is not None and not _is_url(f) and not any(_under(_canonical(f), r) for r in roots):
                problems.append(f"{label}: input {f} leads outside the allowed roots")
    except CalciumDaskError as e:
        problems.append(f"{label}: input {e}")
    except Exception as e:  # noqa: BLE001 - credentials, network: still one line naming the input
        problems.append(f"{label}: cannot check input {s.input} ({type(e).__name__}: {one_line(e, _MAX_REASON)})")


# -- running -------------------------------------------------------------------------------

def _stages(until: str | None) -> list[str]:
    from .pipeline import STAGES

    names = list(STAGES)
    return names[: names.index(until) + 1] if until else names


def _details(row: dict[str, Any]) -> str:
    skip = ("stage", "status", "seconds", "finished", "version")
    return ", ".join(f"{k}={v}" for k, v in row.items() if k not in skip)


def run_session(s: Session, *, force: bool = False, echo: Callable[[str], None] = print) -> SessionResult:
    """Run one session on the current Dask client, stage by stage, resuming its store.

    Never raises for a failing session: the failure becomes the result's status.
    """
    from .pipeline import run_pipeline
    from .store import ResultsStore

    t0 = time.perf_counter()
    res = SessionResult(s.name, "failed", output=s.output)
    rows: dict[str, dict[str, Any]] = {}
    stages = _stages(s.until)
    try:
        out_so = dict(s.storage_options if s.out_storage_options is None else s.out_storage_options)
        done = {} if force else ResultsStore(s.output, out_so, s.group).stages()
        first = next((i for i, st in enumerate(stages) if st not in done), len(stages) - 1)
        if s.from_stage is not None and s.from_stage in stages:
            first = min(first, stages.index(s.from_stage))
        for j, stage in enumerate(stages[first:]):
            summary = run_pipeline(s.input, s.output, s.params, storage_options=dict(s.storage_options),
                                   out_storage_options=out_so, until=stage,
                                   from_stage=s.from_stage if j == 0 else None, force=force and j == 0,
                                   open_kwargs=dict(s.open_kwargs), group=s.group)
            for row in summary.rows:
                if row["stage"] not in rows:
                    rows[row["stage"]] = row
                    if row["status"] == "ran":
                        echo(f"[{s.name}] {row['stage']}: done in {row['seconds']:.1f} s ({_details(row)})")
        res.status = _status([rows[st]["status"] for st in stages])
    except Exception as e:  # noqa: BLE001 - one session's failure must not stop the others
        reason = one_line(e, _MAX_REASON)
        if not isinstance(e, (CalciumDaskError, OSError)):  # an unexpected error: say which
            reason = f"{type(e).__name__}: {reason}"
        res.status = f"failed: {reason}"
    res.seconds = time.perf_counter() - t0
    res.units = rows.get("cnmf", {}).get("units")
    res.accepted = rows.get("evaluate", {}).get("accepted")
    echo(f"[{s.name}] {res.status} ({res.seconds:.1f} s)")
    return res


def _status(statuses: list[str]) -> str:
    if all(st == "done before" for st in statuses):
        return "skipped (complete)"
    if statuses[0] == "done before":
        return f"resumed (from {_first_ran(statuses)})"
    return "done"


def _first_ran(statuses: list[str]) -> str:
    stages = _stages(None)
    return stages[next(i for i, st in enumerate(statuses) if st != "done before")]


def run_batch(manifest: Manifest, client: Any, *, max_concurrent: int = 2, force: bool = False,
              echo: Callable[[str], None] = print) -> list[SessionResult]:
    """Run every session of ``manifest`` on ``client``, at most ``max_concurrent`` at once.

    Parameters
    ----------
    manifest : Manifest
        From :func:`load_manifest`.
    client : distributed.Client
        The one cluster every session shares.
    max_concurrent : int
        Sessions running at the same time (each in a thread of this process).
    force : bool
        Start every session over, forgetting its completed stages.
    echo : callable
        Receives one line per session start, finished stage and end (thread-safe calls).

    Returns
    -------
    list of SessionResult
        In the manifest's order.
    """
    return run_sessions(manifest.sessions, client, max_concurrent=max_concurrent, force=force, echo=echo)


def run_sessions(sessions: Sequence[Session], client: Any, *, max_concurrent: int = 2, force: bool = False,
                 echo: Callable[[str], None] = print) -> list[SessionResult]:
    """Run ``sessions`` (each a pipeline run) on ``client``, at most ``max_concurrent`` at once,
    each in a thread of this process; see :func:`run_batch`. Results in the given order."""
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            echo(line)

    def one(s: Session) -> SessionResult:
        with client.as_current():
            say(f"[{s.name}] started")
            return run_session(s, force=force, echo=say)

    pool = ThreadPoolExecutor(max_workers=max(1, max_concurrent), thread_name_prefix="calcium-dask-session")
    try:
        futures = [pool.submit(one, s) for s in sessions]
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# -- reporting -----------------------------------------------------------------------------

COLUMNS = ("session", "status", "units", "accepted", "seconds", "output")


def write_summary(results: Sequence[SessionResult], path: str,
                  storage_options: dict[str, Any] | None = None) -> None:
    """The summary rows as CSV or JSON (from the suffix), to a path or fsspec URL."""
    import fsspec

    rows = [r.row() for r in results]
    if path.lower().endswith(".json"):
        text = json.dumps(rows, indent=1) + "\n"
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
        text = buf.getvalue()
    with fsspec.open(path, "w", **(storage_options or {})) as f:
        f.write(text)


def print_table(results: Sequence[SessionResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="calcium-dask batch")
    for col in COLUMNS:
        table.add_column(col, justify="right" if col in ("units", "accepted", "seconds") else "left")
    for r in results:
        row = r.row()
        style = "red" if r.failed else None
        table.add_row(*("" if row[c] is None else str(row[c]) for c in COLUMNS), style=style)
    console = Console()
    if not console.is_terminal:  # a log (e.g. a Kubernetes Job's): no wrapping at 80 columns
        console = Console(width=max(console.width, 200))
    console.print(table)


# -- the command ---------------------------------------------------------------------------

def _summary_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.lower().endswith((".csv", ".json")):
        raise click.BadParameter("must end in .csv or .json", ctx=ctx, param=param)
    return value


@click.command("batch")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Dask scheduler address (default: $DASK_SCHEDULER_ADDRESS or a local cluster).")
@click.option("--workers", "n_workers", type=click.IntRange(min=1), default=None,
              help="Workers of the local cluster (default: one per core).")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=2, show_default=True,
              help="Sessions running at the same time on the cluster.")
@click.option("--summary", "summary_path", default=None, callback=_summary_path, metavar="FILE.csv|FILE.json",
              help="Also write the summary table to this file.")
@click.option("--force", is_flag=True, help="Start every session over, ignoring completed stages.")
@click.option("--quiet", is_flag=True, help="No progress lines (the summary table is still printed).")
@click.pass_context
def batch_command(ctx: click.Context, manifest: str, scheduler: str | None, n_workers: int | None,
                  max_concurrent: int, summary_path: str | None, force: bool, quiet: bool) -> None:
    """Run every session of MANIFEST (YAML) on one cluster; exit 1 if any session failed.

    The manifest holds `params` (CaImAn names), `storage_options`, optional `allowed_roots`,
    and `sessions`, each with `name`, `input`, `output` and optional `overrides`, `until`,
    `storage_options`, `engine`, `dataset`, `plane`. Relative paths are relative to the
    manifest's folder. Everything is checked before any session starts. Sessions are
    isolated (one results store each) and resumable: a rerun skips complete sessions and
    resumes the others.
    """
    from .cluster import connect
    from .compute import is_quiet, set_quiet

    m = load_manifest(manifest)
    echo = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    was_quiet = is_quiet()
    set_quiet(True)  # concurrent bars would interleave: one line per stage instead
    try:
        with connect(scheduler, n_workers=n_workers, quiet=quiet) as client:
            echo(f"{len(m.sessions)} sessions, at most {max_concurrent} at once")
            results = run_batch(m, client, max_concurrent=max_concurrent, force=force, echo=echo)
            if client.cluster is not None:
                client.cluster.close()
    finally:
        set_quiet(was_quiet)
    print_table(results)
    if summary_path:
        write_summary(results, summary_path, m.storage_options)
    failed = sum(r.failed for r in results)
    if failed:
        click.echo(f"{failed} of {len(results)} sessions failed", err=True)
        ctx.exit(1)
