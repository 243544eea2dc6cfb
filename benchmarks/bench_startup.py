"""How fast calcium-dask starts: the CLI's ``--version`` and ``--help``, and ``calcium-dask run``
on a simulated movie on a fresh local cluster (issue 24's targets: --version and --help under
0.5 s; the first task within 3 s of the command; the stages at least 75 % of the wall time).

    python benchmarks/bench_startup.py                                  # 128 x 128 x 1000, 2 workers
    python benchmarks/bench_startup.py --size 256 --frames 3000 --repeat 3

Each ``calcium-dask run`` is a new process writing a new store, as a user runs it. Its
workers load ``benchmarks/startup_probe.py`` (``DASK_DISTRIBUTED__WORKER__PRELOAD``), which
records when each worker was up and when it began its first task; the stage times are the
store's own (its completion marks). Times are wall-clock seconds from the moment the command
was launched.

For scale: CaImAn itself was not run here; the CaImAn paper (Giovannucci et al. 2019,
eLife 8:e38173) reports its batch pipeline's times for whole sessions, not for a movie of
this size, so no published figure is printed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _command() -> list[str]:
    """The installed ``calcium-dask`` script of this Python, as a user runs it."""
    script = Path(sys.executable).with_name("calcium-dask")
    return [str(script)] if script.exists() else [shutil.which("calcium-dask") or "calcium-dask"]


def cli_seconds(args: list[str], repeat: int) -> list[float]:
    """Wall time of ``calcium-dask <args>`` in a new process, ``repeat`` times."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([*_command(), *args], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def _events(directory: Path, event: str) -> list[float]:
    return [float(p.read_text()) for p in directory.glob(f"{event}-*")]


def run_once(movie: Path, out: Path, workers: int) -> dict[str, float]:
    """``calcium-dask run`` in a new process: wall time, worker start, first task, stage times."""
    from calcium_dask.store import ResultsStore

    probe = Path(tempfile.mkdtemp(prefix="probe_"))
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__PRELOAD=str(HERE / "startup_probe.py"),
               CALCIUM_DASK_PROBE_DIR=str(probe))
    cmd = [*_command(), "run", str(movie), "--out", str(out), "--workers", str(workers), "--quiet"]
    t0 = time.time()
    subprocess.run(cmd, check=True, env=env)
    wall = time.time() - t0
    up, first = _events(probe, "worker_up"), _events(probe, "first_task")
    shutil.rmtree(probe)
    stages = {name: float(mark["seconds"]) for name, mark in ResultsStore(str(out)).stages().items()}
    row = {"wall": wall, "workers_up": max(up) - t0 if up else float("nan"),
           "first_task": min(first) - t0 if first else float("nan"), **stages}
    row["in_stages"] = sum(stages.values()) / wall
    return row


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    from calcium_dask.datasets import SimulationParams, write_movie

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="runs of `calcium-dask run`, each a new process")
    ap.add_argument("--cli-repeat", type=int, default=5, help="runs of --version and of --help")
    ap.add_argument("--dir", default=None, help="keep the simulated movie here (default: a temporary folder)")
    a = ap.parse_args(argv)
    print("command: python " + " ".join(shlex.quote(x) for x in [sys.argv[0], *(argv or sys.argv[1:])]))
    for flag in ("--version", "--help"):
        t = cli_seconds([flag], a.cli_repeat)
        print(f"calcium-dask {flag}: median {statistics.median(t):.3f} s, min {min(t):.3f} s "
              f"({a.cli_repeat} runs)")
    directory = Path(a.dir) if a.dir else Path(tempfile.mkdtemp(prefix="bench_startup_"))
    movie = directory / f"movie_{a.size}_{a.frames}.tif"
    if not movie.exists():
        neurons = max(4, round(40 * (a.size / 128) ** 2))  # the preset's density of neurons
        write_movie(movie, SimulationParams.preset("small", T=a.frames, H=a.size, W=a.size, K=neurons, seed=1))
    rows = []
    try:
        for i in range(a.repeat):
            out = directory / f"run_{i}.zarr"
            rows.append(run_once(movie, out, a.workers))
            shutil.rmtree(out, ignore_errors=True)
    finally:
        if not a.dir:
            shutil.rmtree(directory, ignore_errors=True)
    stages = [k for k in rows[0] if k not in ("wall", "workers_up", "first_task", "in_stages")]
    print(f"calcium-dask run on {a.size}x{a.size}x{a.frames}, {a.workers} workers (seconds from launch):")
    print("run wall workers_up first_task " + " ".join(stages) + " in_stages")
    for i, r in enumerate(rows, 1):
        print(f"{i} {r['wall']:.2f} {r['workers_up']:.2f} {r['first_task']:.2f} "
              + " ".join(f"{r[s]:.2f}" for s in stages) + f" {100 * r['in_stages']:.0f}%")
    return rows


if __name__ == "__main__":
    main()
