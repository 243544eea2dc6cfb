"""The ``calcium-dask`` command line.

User errors (bad files, bad parameters) print one line and exit with code 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any

import click

from ._version import __version__
from .batch import batch_command
from .errors import CalciumDaskError, IgnoredParametersWarning, one_line
from .service.commands import cancel_command, serve_command, status_command, submit_command, watch_command

__all__ = ["main", "cli"]


def parse_storage_options(items: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs -> dict (values parsed as YAML scalars, nested keys with dots)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {item!r}", param_hint="--storage-option")
        target = out
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = yaml.safe_load(raw) if raw else ""
    return out


storage_option = click.option(
    "--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
    help="fsspec storage option, e.g. client_kwargs.endpoint_url=http://127.0.0.1:9000 (repeatable).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="calcium-dask")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Calcium-imaging movies to neurons: motion correction, CNMF, evaluation, dF/F on Dask."""
    ctx.obj = {"debug": debug}


ENGINE_CHOICE = click.Choice(["tiff", "zarr", "hdf5", "nwb", "npy", "sbx", "bruker", "nd2"])
nplanes_option = click.option("--nplanes", type=click.IntRange(min=1), default=None,
                              help="Planes per volume, flyback frames included (suite2p's nplanes; default: "
                                   "from the file's metadata).")
nchannels_option = click.option("--nchannels", type=click.IntRange(min=1), default=None,
                                help="Channels per frame (suite2p's nchannels; default: from the file's metadata).")


@cli.command()
@click.argument("movie", nargs=-1, required=True)
@click.option("--engine", type=ENGINE_CHOICE, default=None, help="Reader to use (guessed from the file when omitted).")
@click.option("--dataset", default=None, help="HDF5 dataset, zarr array or NWB series name.")
@click.option("--plane", type=int, default=None, help="Plane/channel of 4-D data.")
@nplanes_option
@nchannels_option
@storage_option
def info(movie: tuple[str, ...], engine: str | None, dataset: str | None, plane: int | None,
         nplanes: int | None, nchannels: int | None, storage_options: tuple[str, ...]) -> None:
    """Describe MOVIE: one file, URL or glob (several TIFF files form one movie), a Scanbox
    .sbx, a Bruker T-series folder or XML, a Nikon .nd2; planes, channels and ROIs of a
    rig's recording."""
    from .io import open_movie, open_session, recording_layout

    url = list(movie) if len(movie) > 1 else movie[0]
    so = parse_storage_options(storage_options)
    if recording_layout(url, engine=engine, nplanes=nplanes, nchannels=nchannels, dataset=dataset,
                        storage_options=so) is not None:
        _echo_rows(_session_rows(open_session(url, engine=engine, dataset=dataset, nplanes=nplanes,
                                              nchannels=nchannels, storage_options=so)))
        return
    mov = open_movie(url, engine=engine, dataset=dataset, plane=plane, storage_options=so)
    t, h, w = mov.shape
    nbytes = mov.data.nbytes
    rows = [
        ("source", mov.attrs["source"] if isinstance(mov.attrs["source"], str)
         else f"{len(mov.attrs['source'])} files"),
        ("engine", mov.attrs["engine"]),
        ("shape", f"{t} frames x {h} x {w} pixels"),
        ("dtype", str(mov.dtype)),
        ("chunks", f"{len(mov.data.chunks[0])} chunks of up to {max(mov.data.chunks[0])} frames"),
        ("frame rate", f"{mov.attrs['fr']:g} Hz ({mov.attrs['fr_from']})"),
        ("duration", f"{t / mov.attrs['fr']:.1f} s"),
        ("pixel size", "x".join(f"{d:g}" for d in mov.attrs["dxy"]) + " um"),
        ("size", _human_bytes(nbytes)),
    ]
    _echo_rows(rows)


def _echo_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(f"{k:<{width}}  {v}")


def _session_rows(rec: Any) -> list[tuple[str, str]]:
    """``calcium-dask info`` of a recording: its layout, then one line per field of view."""
    first = rec.fields[0].movie
    files = first.attrs["source"]
    t = first.shape[0]
    names = f" ({', '.join(rec.channel_names)})" if rec.channel_names else ""
    rate = f"{rec.frame_rate:g} Hz per frame, " if rec.frame_rate else ""
    nbytes = sum(f.movie.data.nbytes for f in rec.fields) * rec.nchannels
    rows = [("source", files if isinstance(files, str) else f"{len(files)} files"), ("format", rec.format),
            ("planes", f"{rec.nplanes}" + (f" (+{rec.nflyback} flyback per volume, dropped)" if rec.nflyback else "")),
            ("channels", f"{rec.nchannels}{names}"),
            ("ROIs", f"{rec.nrois} (canvas {rec.canvas_shape[0]} x {rec.canvas_shape[1]} pixels)"
             if rec.nrois and rec.canvas_shape else "none"),
            ("frame rate", f"{rate}{rec.fr:g} Hz per field of view (volume rate, {first.attrs['fr_from']})"),
            ("fields of view", f"{len(rec)}, {t} frames each"), ("duration", f"{t / rec.fr:.1f} s"),
            ("dtype", str(first.dtype)), ("pixel size", "x".join(f"{d:g}" for d in first.attrs["dxy"]) + " um"),
            ("size", _human_bytes(nbytes) + " (all channels)")]
    for f in rec.fields:
        where = "" if f.position is None else f" at (y={f.position[0]:g}, x={f.position[1]:g})"
        align = "" if f.align is None else f", motion from channel {int(f.align.attrs['channel']) + 1}"
        rows.append((f"  {f.name}", f"{f.shape[1]} x {f.shape[2]} pixels, channel {f.channel}{align}{where}"))
    return rows


params_option = click.option("--params", "params_file", type=click.Path(dir_okay=False), default=None,
                             help="YAML or JSON parameter file (CaImAn names, flat or by group), or a preset name: "
                                  "miniscope (one-photon, CNMF-E).")
set_option = click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
                          help="Override one parameter, e.g. --set motion.pw_rigid=true (repeatable).")


def load_params(params_file: str | None, assignments: tuple[str, ...]):
    """Parameters from an optional file or preset name plus ``--set`` overrides, validated.

    A name of :data:`~calcium_dask.params.PRESETS` (``miniscope``) that is not an existing
    file gives that preset."""
    from .errors import ParamsError
    from .params import PRESETS, Params

    if params_file in PRESETS and not Path(params_file).exists():
        params = Params.preset(params_file)
    elif params_file and "://" not in params_file and not Path(params_file).exists():
        raise ParamsError(f"{params_file}: no such parameter file, nor a parameter preset "
                          f"({', '.join(sorted(PRESETS))})")
    else:
        params = Params.load(params_file) if params_file else Params()
    return params.with_overrides(list(assignments)) if assignments else params


@cli.command("params")
@params_option
@set_option
@click.option("--describe", is_flag=True, help="List every parameter with its default and meaning.")
@click.option("--caiman", "caiman", is_flag=True,
              help="List CaImAn's other parameters and what calcium-dask does with each.")
def params_cmd(params_file: str | None, assignments: tuple[str, ...], describe: bool, caiman: bool) -> None:
    """Validate parameters and print them as YAML (the defaults when no file is given)."""
    import yaml

    from .params import describe as rows

    if describe:
        for key, default, doc in rows():
            click.echo(f"{key:<34} {default!s:<14} {doc}")
        return
    if caiman:
        from .caiman_params import CAIMAN_KEYS, WHOLE_GROUPS

        for group, why in WHOLE_GROUPS.items():
            click.echo(f"{group + '.*':<34} {'ignored':<12} {why}")
        registry = {key.partition(".")[2] for key, _, _ in rows()}  # these set the registry's
        for key, e in sorted(CAIMAN_KEYS.items(), key=lambda kv: (kv[1].group, kv[0].lower())):
            if e.group in WHOLE_GROUPS or key in registry:
                continue
            same = f" (quiet when {' or '.join(map(repr, e.same))})" if e.kind == "unsupported" and e.same else ""
            click.echo(f"{e.group + '.' + key:<34} {e.kind:<12} {e.why}{same}")
        return
    click.echo(yaml.safe_dump(load_params(params_file, assignments).to_dict(), sort_keys=False), nl=False)


scheduler_option = click.option("--scheduler", default=None, metavar="ADDRESS",
                                help="Dask scheduler address (default: $DASK_SCHEDULER_ADDRESS or a local cluster).")
workers_option = click.option("--workers", "n_workers", type=int, default=None,
                              help="Workers of the local cluster (default: one per core).")
quiet_option = click.option("--quiet", is_flag=True, help="No progress output.")


@cli.command()
@click.argument("movie", nargs=-1, required=True)
@click.option("--out", required=True, help="Results store (zarr; path or URL).")
@params_option
@set_option
@click.option("--until", default=None, help="Stop after this stage.")
@click.option("--from", "from_stage", default=None, help="Rerun from this stage on.")
@click.option("--force", is_flag=True, help="Start over, ignoring completed stages.")
@click.option("--engine", type=ENGINE_CHOICE, default=None)
@click.option("--dataset", default=None, help="HDF5 dataset, zarr array or NWB series name.")
@click.option("--plane", type=int, default=None,
              help="Run one plane alone (of 4-D data, or of a recording) into OUT's root.")
@nplanes_option
@nchannels_option
@click.option("--functional-chan", type=click.IntRange(min=1), default=None,
              help="Channel whose activity is extracted, from 1 (suite2p's functional_chan; default 1).")
@click.option("--align-by-chan", type=click.IntRange(min=1), default=None,
              help="Channel motion is computed on, from 1, then applied to the functional one (suite2p's "
                   "align_by_chan; default: the functional channel).")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=None,
              help="Fields of view (planes, ROIs) running at once on the cluster (default: all, at most 8).")
@storage_option
@click.option("--out-storage-option", "out_storage_options", multiple=True, metavar="KEY=VALUE",
              help="fsspec option for the results store (default: those of --storage-option).")
@scheduler_option
@workers_option
@quiet_option
def run(movie: tuple[str, ...], out: str, params_file: str | None, assignments: tuple[str, ...],
        until: str | None, from_stage: str | None, force: bool, engine: str | None, dataset: str | None,
        plane: int | None, nplanes: int | None, nchannels: int | None, functional_chan: int | None,
        align_by_chan: int | None, max_concurrent: int | None, storage_options: tuple[str, ...],
        out_storage_options: tuple[str, ...], scheduler: str | None, n_workers: int | None, quiet: bool) -> None:
    """Run the pipeline on MOVIE and write the results store OUT (resumable).

    A recording of several planes or mesoscope ROIs (from its metadata, or --nplanes)
    runs one pipeline per field of view, all at once on the cluster, into the groups
    /plane0, /plane1... (or /roi0...) of OUT; exit code 1 if one of them failed.
    """
    from . import worker_server

    if scheduler is None:  # the local workers' fork server imports while this process does
        worker_server.start()
    from .cluster import connect
    from .compute import set_quiet

    params = load_params(params_file, assignments)
    layout = {"data.nplanes": nplanes, "data.nchannels": nchannels, "data.functional_chan": functional_chan,
              "data.align_by_chan": align_by_chan}
    params = params.replace(**{k: v for k, v in layout.items() if v is not None})
    so = parse_storage_options(storage_options)
    out_so = parse_storage_options(out_storage_options) if out_storage_options else so
    url = list(movie) if len(movie) > 1 else movie[0]
    set_quiet(quiet)
    if plane is not None:  # one plane of 4-D data (or of a recording): the classic single run
        pipeline = _import_while("calcium_dask.pipeline")  # ~1 s of imports, while the cluster starts
        with connect(scheduler, n_workers=n_workers, quiet=quiet) as client:
            summary = pipeline.result().run_pipeline(url, out, params, storage_options=so, out_storage_options=out_so,
                                                     until=until, from_stage=from_stage, force=force,
                                                     open_kwargs=dict(engine=engine, dataset=dataset, plane=plane))
            if client.cluster is not None:
                client.cluster.close()
        if not quiet:
            _print_summary(summary)
        return
    _run_fields(url, out, params, so, out_so, until, from_stage, force, engine, dataset, max_concurrent,
                scheduler, n_workers, quiet)


def _run_fields(url: Any, out: str, params: Any, so: dict, out_so: dict, until: str | None,
                from_stage: str | None, force: bool, engine: str | None, dataset: str | None,
                max_concurrent: int | None, scheduler: str | None, n_workers: int | None, quiet: bool) -> None:
    """``run`` on every field of view of a recording (one of them: today's single run)."""
    from .batch import print_table
    from .cluster import connect
    from .compute import is_quiet, set_quiet
    from .io import open_session

    # fields runs pipeline (imported on first use): both load while the cluster starts
    fields = _import_while("calcium_dask.fields", "calcium_dask.pipeline", "calcium_dask.batch")
    d = params.data  # the recording's layout and channels are checked before a cluster starts
    several = len(open_session(url, engine=engine, dataset=dataset, nplanes=d.nplanes, nchannels=d.nchannels,
                               functional_chan=d.functional_chan, align_by_chan=d.align_by_chan,
                               storage_options=so)) > 1
    echo = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    was_quiet = is_quiet()
    set_quiet(quiet or several)  # concurrent bars would interleave: one line per stage instead
    try:
        with connect(scheduler, n_workers=n_workers, quiet=quiet) as client:
            res = fields.result().run_fields(url, out, params, client, storage_options=so, out_storage_options=out_so, until=until,
                             from_stage=from_stage, force=force, max_concurrent=max_concurrent,
                             open_kwargs=dict(engine=engine, dataset=dataset), echo=echo)
            if client.cluster is not None:
                client.cluster.close()
    finally:
        set_quiet(was_quiet)
    if len(res.recording) == 1:
        if not quiet:
            _print_summary(res.results[0])
        return
    if not quiet:
        print_table(res.results)
    if res.failed:
        click.echo(f"{len(res.failed)} of {len(res.results)} fields of view failed", err=True)
        sys.exit(1)


def _import_while(module: str, *more: str) -> Any:
    """Import ``module`` (then ``more``) on a thread of its own (a future of ``module``): the
    main thread meanwhile waits on other processes (a local cluster's workers starting)."""
    import importlib
    from concurrent.futures import ThreadPoolExecutor

    def load() -> Any:
        first = importlib.import_module(module)
        for name in more:
            importlib.import_module(name)
        return first

    pool = ThreadPoolExecutor(1, thread_name_prefix="import")
    future = pool.submit(load)
    pool.shutdown(wait=False)  # the thread ends with the import
    return future


def _print_summary(summary) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"results: {summary.store.url}")
    for col in ("stage", "status", "seconds", "details"):
        table.add_column(col)
    for row in summary.rows:
        details = ", ".join(f"{k}={v}" for k, v in row.items()
                            if k not in ("stage", "status", "seconds", "finished", "version"))
        table.add_row(row["stage"], row["status"], f"{row.get('seconds', '')}", details)
    Console(stderr=True).print(table)


@cli.command()
@click.argument("out")
@click.option("--preset", type=click.Choice(["small", "medium", "large", "hard", "miniscope"]), default="small",
              show_default=True, help="Size and difficulty of the simulated movie (miniscope: one-photon).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override a simulation parameter, e.g. --set T=3000 --set seed=3 (with --sessions also "
                   "max_shift, max_rotation, max_deformation, silent_frac, new_frac, shape_change).")
@click.option("--format", "fmt", type=click.Choice(["tiff", "zarr"]), default=None,
              help="Output format (default: from OUT's suffix; TIFF with --sessions).")
@click.option("--chunk-frames", type=int, default=500, show_default=True, help="Frames held in memory at once.")
@click.option("--sessions", "n_sessions", type=click.IntRange(min=1), default=None,
              help="Simulate this many sessions (days) of one field of view: OUT is a folder of "
                   "day<N>/movie.* (each with its truth.npz) and sessions.npz (the neurons' identities).")
def simulate(out: str, preset: str, assignments: tuple[str, ...], fmt: str | None, chunk_frames: int,
             n_sessions: int | None) -> None:
    """Simulate a movie with ground truth (OUT: movie.tif or movie.zarr; truth.npz beside it); the
    miniscope preset is a one-photon movie."""
    import dataclasses

    import yaml

    from .datasets import SimulationParams, write_movie
    from .datasets.sessions import SessionsParams, write_sessions

    overrides: dict[str, Any] = {}
    for a in assignments:
        key, sep, raw = a.partition("=")
        if not sep:
            raise click.BadParameter(f"expected key=value, got {a!r}", param_hint="--set")
        overrides[key.strip()] = yaml.safe_load(raw)
    session_keys = {f.name for f in dataclasses.fields(SessionsParams)} - {"movie", "n_sessions"}
    per_session = {k: overrides.pop(k) for k in list(overrides) if k in session_keys}
    if per_session and n_sessions is None:
        raise click.BadParameter(f"{', '.join(per_session)} needs --sessions", param_hint="--set")
    try:
        sp = SimulationParams.preset(preset, **overrides)
        ssp = SessionsParams(sp, n_sessions=n_sessions, **per_session) if n_sessions else None
    except (TypeError, ValueError) as e:
        raise click.BadParameter(str(e), param_hint="--set") from None
    t0 = time.perf_counter()
    if ssp is not None:
        paths = write_sessions(out, ssp, format=fmt or "tiff", chunk_frames=chunk_frames)
        click.echo(f"wrote {len(paths)} sessions of {sp.T} frames of {sp.H}x{sp.W} in {out} in "
                   f"{time.perf_counter() - t0:.1f} s: {', '.join(str(p) for p in paths)}; identities in "
                   f"{Path(out) / 'sessions.npz'}")
        return
    path = write_movie(out, sp, format=fmt, chunk_frames=chunk_frames)
    click.echo(f"wrote {path} ({sp.T} frames of {sp.H}x{sp.W}, {sp.K} neurons) in "
               f"{time.perf_counter() - t0:.1f} s; ground truth in {path.parent / 'truth.npz'}")


@cli.command()
@click.option("--out", "out_dir", default="calcium-dask-demo", show_default=True,
              help="Folder for the simulated movie and the results store.")
@click.option("--preset", type=click.Choice(["small", "medium", "hard"]), default="small", show_default=True)
@click.option("--one-photon", is_flag=True,
              help="A one-photon (miniscope) movie, 128x128 pixels, analysed with CNMF-E (--params miniscope).")
@scheduler_option
@workers_option
@quiet_option
def demo(out_dir: str, preset: str, one_photon: bool, scheduler: str | None, n_workers: int | None,
         quiet: bool) -> None:
    """Simulate a movie with known neurons, run every stage, and score the result against the truth."""
    from .cluster import connect
    from .datasets import GroundTruth, SimulationParams, write_movie
    from .pipeline import run_pipeline
    from .compute import set_quiet

    set_quiet(quiet)
    out = Path(out_dir)
    movie_path = out / "movie.tif"
    if one_photon:
        sp = SimulationParams.preset("miniscope", seed=1, **ONE_PHOTON_DEMO)
        params = demo_params_one_photon(sp.fr)
    else:
        sp = SimulationParams.preset(preset, seed=1)
        params = demo_params(sp.fr)
    fresh = not movie_path.exists() or _simulated_with(out) != sp
    if fresh:  # a new movie (or the other kind of demo): its results start over
        write_movie(movie_path, sp)
    click.echo(f"simulated {movie_path} ({sp.T} frames of {sp.H}x{sp.W}, {sp.K} neurons)")
    with connect(scheduler, n_workers=n_workers, quiet=quiet) as client:
        summary = run_pipeline(str(movie_path), str(out / "results.zarr"), params, force=fresh)
        if client.cluster is not None:
            client.cluster.close()
    if not quiet:
        _print_summary(summary)
    from .viz.report import write_report

    report_path = write_report(summary.store.url, str(out / "report.html"))
    truth = GroundTruth.load(out / "truth.npz")
    for line in score_lines(summary.store, truth):
        click.echo(line)
    click.echo(f"report: {report_path}")
    click.echo(f"results store: {summary.store.url}  (open with xarray.open_zarr(path, group=...))")


def _simulated_with(folder: Path):
    """The simulation parameters of the movie in ``folder`` (its ``params.json``), or None."""
    import json

    from .datasets import SimulationParams

    try:
        return SimulationParams.from_dict(json.loads((folder / "params.json").read_text()), strict=False)
    except (OSError, ValueError, TypeError):
        return None


def demo_params(fr: float):
    """CaImAn's demo-notebook parameters (the library's defaults) at frame rate ``fr``."""
    from .params import Params

    return Params.from_caiman({"fr": fr})


#: the one-photon demo's movie: the miniscope preset on a smaller field (same densities)
ONE_PHOTON_DEMO = dict(T=1000, H=128, W=128, K=40, n_blurred=300)


def demo_params_one_photon(fr: float):
    """The ``miniscope`` preset (CaImAn's CNMF-E demo, see :meth:`Params.preset`) at frame rate ``fr``."""
    from .params import Params

    return Params.preset("miniscope", fr=fr)


def score_lines(store, truth) -> list[str]:
    """One line per stage present in the store, scored against the ground truth."""
    import numpy as np

    from .datasets.scoring import frame_offset, match_footprints, score_shifts, score_sources, shift_images

    lines: list[str] = []
    stages = store.stages()
    if "motion" not in stages:
        return lines
    shifts = store.read("motion")["shifts"].values
    lines.append(f"motion: rigid-shift error {score_shifts(shifts, truth.shifts):.3f} px RMSE "
                 f"(no correction: {score_shifts(0 * shifts, truth.shifts):.2f} px)")
    if "cnmf" not in stages:
        return lines
    ds = store.read()
    truth_fp = shift_images(truth.footprints, frame_offset(shifts, truth.shifts))
    found = ds["footprints"].values
    groups = [("all units", np.ones(len(found), bool))]
    if "accepted" in ds:
        groups.append(("accepted units", ds["accepted"].values.astype(bool)))
    for label, keep in groups:
        sc = score_sources(truth_fp, truth.C, found[keep], ds["traces"].values[keep], snr=truth.snr)
        low = sc.get("recall_by_snr_tertile", [None])[0]
        lines.append(f"{label}: {sc['n_found']} found for {sc['n_true']} true neurons; precision "
                     f"{sc['precision']:.2f}, recall {sc['recall']:.2f}, F1 {sc['f1']:.2f} (IoU >= 0.3); "
                     f"trace correlation {sc.get('trace_corr_median', float('nan')):.3f}; "
                     f"recall of the lowest-SNR third {low if low is None else round(low, 2)}")
    if "accepted" in ds:
        pairs = match_footprints(truth_fp, found)
        kept = int(ds["accepted"].values.astype(bool)[pairs[:, 1]].sum())
        lines.append(f"evaluation keeps {kept} of the {len(pairs)} true neurons CNMF found "
                     f"({100 * kept / max(len(pairs), 1):.0f}%)")
    return lines


@cli.command()
@click.argument("results", nargs=-1, required=True)
@click.option("--out", required=True, help="Tracking store to write (zarr; path or URL).")
@click.option("--reference", type=int, default=None,
              help="Session the others are aligned to, by position among RESULTS from 0 (default: the middle one).")
@click.option("--name", "names", multiple=True, help="Session names in order (default: the stores' folder names).")
@params_option
@set_option
@storage_option
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Dask scheduler address (default: $DASK_SCHEDULER_ADDRESS, else threads in this process).")
@quiet_option
def register(results: tuple[str, ...], out: str, reference: int | None, names: tuple[str, ...],
             params_file: str | None, assignments: tuple[str, ...], storage_options: tuple[str, ...],
             scheduler: str | None, quiet: bool) -> None:
    """Align the sessions RESULTS... (results stores of one field of view) and track their units across
    them; writes the tracking store OUT. A session that cannot be registered is named on stderr and the
    exit code is 1; the others are registered."""
    import os
    import warnings

    from .compute import set_quiet
    from .tracking import SessionProblem, register_sessions

    if len(results) < 2:
        raise click.UsageError("register needs at least two results stores")
    params = load_params(params_file, assignments)
    set_quiet(quiet)
    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SessionProblem)
        if address:
            from .cluster import connect

            with connect(address, quiet=quiet):
                tracking = _register(register_sessions, results, params, reference, out, names, storage_options)
        else:
            tracking = _register(register_sessions, results, params, reference, out, names, storage_options)
    for w in caught:
        if issubclass(w.category, SessionProblem):
            click.echo(f"calcium-dask: warning: {w.message}", err=True)
    if not quiet:
        _print_tracking(tracking)
    if tracking.errors:
        sys.exit(1)


def _register(register_sessions, results, params, reference, out, names, storage_options):
    return register_sessions(list(results), params, reference=reference, out=out, names=list(names) or None,
                             storage_options=parse_storage_options(storage_options) or None)


def _print_tracking(tracking) -> None:
    ds = tracking.ds
    A = tracking.assignments
    for s, name in enumerate(tracking.sessions):
        status = "reference" if s == tracking.reference else (
            "not registered" if not bool(ds["registered"].values[s]) else
            f"rotation {float(ds['rotation_deg'].values[s]):+.2f} deg, shift "
            + ", ".join(f"{v:+.1f}" for v in ds["translation"].values[s]) + " px, image corr "
            + f"{float(ds['align_corr'].values[s]):.2f}")
        click.echo(f"{name}: {int((A[:, s] >= 0).sum())} units tracked; {status}")
    seen = (A >= 0).sum(1)
    click.echo(f"{len(A)} tracked units; {int((seen > 1).sum())} in two or more sessions, "
               f"{len(tracking.found_in_all())} in every registered session; store: {tracking.url}")


@cli.command()
@click.argument("results")
@click.option("--nwb", "nwb_path", required=True, type=click.Path(dir_okay=False), help="NWB file to write.")
@click.option("--metadata", "metadata_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="YAML/JSON with NWB metadata: subject (species, sex, age...), experimenter, institution, "
                   "indicator, location, excitation_lambda...")
@click.option("--accepted-only", is_flag=True, help="Export only the units that passed evaluation.")
@storage_option
def export(results: str, nwb_path: str, metadata_file: str | None, accepted_only: bool,
           storage_options: tuple[str, ...]) -> None:
    """Export the results store RESULTS to an NWB file (ImageSegmentation, Fluorescence, DfOverF)."""
    import yaml

    from .results import open_results

    res = open_results(results, storage_options=parse_storage_options(storage_options))
    if accepted_only:
        res = res.select_components(save_discarded_components=False)
    meta = yaml.safe_load(open(metadata_file).read()) if metadata_file else {}
    res.to_nwb(nwb_path, metadata=meta or {})
    click.echo(f"wrote {nwb_path} ({res.ds.sizes['unit']} units)")


@cli.command()
@click.argument("results")
@click.option("-o", "--output", "out_html", default=None, type=click.Path(dir_okay=False),
              help="HTML file to write (default: report.html beside the store).")
@click.option("--max-traces", type=int, default=20, show_default=True, help="Accepted units whose traces are shown.")
@storage_option
def report(results: str, out_html: str | None, max_traces: int, storage_options: tuple[str, ...]) -> None:
    """Write a self-contained HTML report of the results store (or tracking store) RESULTS."""
    from .io.urls import normalize
    from .viz.report import write_report

    if out_html is None:
        base = normalize(results).rstrip("/")
        if "://" in base:
            raise click.BadParameter("give -o for a store on object storage", param_hint="--output")
        out_html = str(Path(base).parent / "report.html")
    path = write_report(results, out_html, storage_options=parse_storage_options(storage_options) or None,
                        max_traces=max_traces)
    click.echo(f"wrote {path}")


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def _one_line_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> str:
    return f"calcium-dask: warning: {message}\n"


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """Parameters ignored by calcium-dask: one plain line on stderr, not Python's two."""
    if issubclass(category, IgnoredParametersWarning):
        click.echo(f"calcium-dask: warning: {message}", err=True)
    else:
        _SHOW_WARNING(message, category, *args, **kwargs)


_SHOW_WARNING = warnings.showwarning


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and exit code 2."""
    import warnings

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    if not debug:
        warnings.formatwarning = _one_line_warning  # e.g. a dropped partial volume: one line
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("once", IgnoredParametersWarning)  # one line, even if loaded twice
            warnings.showwarning = _show_warning
            code = cli.main(args=argv, prog_name="calcium-dask", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (CalciumDaskError, OSError) as e:
        if debug:
            raise
        click.echo(f"calcium-dask: error: {one_line(e)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - an unexpected failure: still one line, exit 1
        if debug:
            raise
        click.echo(f"calcium-dask: internal error: {type(e).__name__}: {one_line(e)} "
                   "(rerun with --debug for the traceback)", err=True)
        sys.exit(1)
    code = code if isinstance(code, int) else 0
    if argv is None and "distributed" in sys.modules:
        _exit_now(code)
    sys.exit(code)


def _exit_now(code: int) -> None:
    """End the process now that the command is done and its cluster closed: tearing down
    the modules of the numerical stack one by one (Python's finalization) would take ~1 s
    more, after the results are written. Only the command-line process does this."""
    import logging
    import os

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


cli.add_command(batch_command)
for _command in (serve_command, submit_command, status_command, watch_command, cancel_command):
    cli.add_command(_command)
