"""Motion-correction speed and memory (issue targets: pw-rigid >= 100 frames/s and rigid >= 200
frames/s on 512x512 with 2 workers of 1 thread; memory per worker flat in the number of frames).

    python benchmarks/bench_motion.py --size 512 --frames 2000 --workers 1 2
    python benchmarks/bench_motion.py --size 512 --frames 5000 20000 --workers 2 --memory-limit 2GB
    python benchmarks/bench_motion.py --size 512 --frames 2000 --workers 2 --repeat 3
    python benchmarks/bench_motion.py --size 512 --frames 2000 --workers 2 --repeat 2 --warm 2

Each corrected movie (2 GB at 2000 frames) is deleted after its measurement unless
``--keep``; ``--out-dir /dev/shm`` writes them to memory, to tell this machine's disk
(a few hundred MB/s, shared) from the correction's own speed.

The movie is simulated once per size and length into a tile-chunked zarr (streamed, never
in memory), then corrected from zarr to zarr with CaImAn's demo parameters. On this VM one
setting's speed varied from 141 to 205 frames/s within an hour (memory the guest frees goes
back to the host, and touching it again costs up to 2 ms per MB), so ``--repeat`` runs
every setting several times, in turn, and summarises each by its median and range.

Every run starts a new local cluster (column ``run`` = 1), so it pays for fresh worker
processes: their memory is touched for the first time, and on this VM that is where the
host's cost falls. ``--warm N`` corrects the movie N more times on the same cluster (runs
2+), as a notebook attached to a long-lived cluster does; the summary reports both.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil


def simulate(directory: Path, size: int, frames: int) -> Path:
    from calcium_dask.datasets import SimulationParams, write_movie

    path = directory / f"sim_{size}_{frames}" / "movie.zarr"
    if not path.exists():
        sp = SimulationParams.preset("small", T=frames, H=size, W=size, K=max(10, size * size // 400), seed=5)
        write_movie(path, sp, chunk_frames=250, tile=64)
    return path


class PeakMemory:
    """Samples every worker's RSS twice a second and keeps the maximum of each."""

    def __init__(self, client) -> None:
        self.client, self.peak, self._stop = client, {}, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for w, rss in self.client.run(lambda: psutil.Process().memory_info().rss).items():
                    self.peak[w] = max(self.peak.get(w, 0), rss)
            except Exception:  # a worker restarting: sample again later
                pass
            self._stop.wait(0.5)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_one(movie_path: Path, out: Path, pw_rigid: bool, workers: int, memory_limit: str,
            warm: int = 0, keep: bool = False, template_sampling: str | None = None) -> list[dict]:
    """Correct the movie on a fresh cluster, then ``warm`` more times on the same cluster
    (each run to its own output, deleted after it unless ``keep``): one record per run."""
    import calcium_dask as cd
    from calcium_dask.motion import motion_correct
    from calcium_dask.compute import set_quiet
    from calcium_dask.store import ResultsStore

    set_quiet(True)
    params = cd.Params.from_caiman({"pw_rigid": pw_rigid, "max_shifts": (6, 6), "strides": (48, 48),
                                    "overlaps": (24, 24), "max_deviation_rigid": 3, "border_nan": "copy"})
    if template_sampling:
        params = params.replace(**{"motion.template_sampling": template_sampling})
    records = []
    with cd.connect(n_workers=workers, memory_limit=memory_limit, dashboard_address=None, quiet=True) as client:
        movie = cd.open_movie(movie_path)
        for run in range(1, warm + 2):
            path = out if run == 1 else out.with_name(f"{out.stem}_run{run}{out.suffix}")
            with PeakMemory(client) as mem:
                t0 = time.perf_counter()
                motion_correct(movie, params, store=ResultsStore(str(path)))
                seconds = time.perf_counter() - t0
            if not keep:
                shutil.rmtree(path, ignore_errors=True)
            records.append({"run": run, "seconds": seconds, "fps": movie.shape[0] / seconds,
                            "peak_mb": max(mem.peak.values(), default=0) / 2**20})
        client.cluster.close()
    return records


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, nargs="+", default=[2000])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--memory-limit", default="2GB")
    ap.add_argument("--modes", nargs="+", default=["rigid", "pw_rigid"], choices=["rigid", "pw_rigid"])
    ap.add_argument("--dir", default=None, help="where simulated movies are kept (default: a temp dir)")
    ap.add_argument("--out-dir", default=None,
                    help="where the corrected movies are written (default: --dir; e.g. /dev/shm "
                         "to measure without this machine's disk)")
    ap.add_argument("--keep", action="store_true", help="keep the corrected movies (default: delete each "
                                                        "after its measurement)")
    ap.add_argument("--warm", type=int, default=0, metavar="N",
                    help="after each run on a fresh cluster, correct the movie N more times on the same "
                         "cluster (a user's long-lived cluster); the summary reports them apart")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of each setting, taken in turn (on this VM one setting ran at 141-205 "
                         "frames/s within an hour); a summary gives each setting's median and range")
    ap.add_argument("--template-sampling", choices=["middle", "spread"], default=None,
                    help="frames that refine a piecewise-rigid template (default: the Params default)")
    a = ap.parse_args(argv)
    directory = Path(a.dir or tempfile.mkdtemp(prefix="bench_motion_"))
    out_dir = Path(a.out_dir) if a.out_dir else directory
    print("command: python " + " ".join(shlex.quote(x) for x in [sys.argv[0], *(argv or sys.argv[1:])]))
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB")
    print(f"{'size':>5} {'frames':>7} {'mode':>9} {'workers':>7} {'run':>4} {'seconds':>8} {'frames/s':>9} "
          f"{'peak MB/worker':>15}")
    runs: dict[tuple, list[dict]] = {}
    for frames in a.frames:
        movie = simulate(directory, a.size, frames)
        for _ in range(max(a.repeat, 1)):
            for mode in a.modes:
                for w in a.workers:
                    out = out_dir / f"out_{a.size}_{frames}_{mode}_{w}.zarr"
                    for r in run_one(movie, out, mode == "pw_rigid", w, a.memory_limit, a.warm, a.keep,
                                         a.template_sampling):
                        runs.setdefault((frames, mode, w), []).append(r)
                        print(f"{a.size:>5} {frames:>7} {mode:>9} {w:>7} {r['run']:>4} {r['seconds']:>8.1f} "
                              f"{r['fps']:>9.1f} {r['peak_mb']:>15.0f}", flush=True)
    if a.repeat > 1 or a.warm:
        _summary(a.size, runs)


def _summary(size: int, runs: dict[tuple, list[dict]]) -> None:
    """Median and range of frames/s of each setting, first runs on a fresh cluster apart
    from later runs on the same cluster, and the setting's largest peak memory."""
    print("summary (run 1: a fresh cluster; runs 2+: the same cluster again):")
    print(f"{'size':>5} {'frames':>7} {'mode':>9} {'workers':>7} {'runs':>5} {'median frames/s':>16} {'min':>7} "
          f"{'max':>7} {'peak MB/worker':>15}")
    for (frames, mode, w), rs in runs.items():
        for label, group in (("1", [r for r in rs if r["run"] == 1]), ("2+", [r for r in rs if r["run"] > 1])):
            if not group:
                continue
            fps = [r["fps"] for r in group]
            print(f"{size:>5} {frames:>7} {mode:>9} {w:>7} {label:>5} {float(np.median(fps)):>16.1f} "
                  f"{min(fps):>7.1f} {max(fps):>7.1f} {max(r['peak_mb'] for r in group):>15.0f}", flush=True)


if __name__ == "__main__":
    main()
