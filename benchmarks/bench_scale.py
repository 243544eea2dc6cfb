"""How the whole pipeline scales with the session's length, on 2 workers of 2 GB each.

    python benchmarks/bench_scale.py --frames 5000 20000 --size 512          # the issue's figures
    python benchmarks/bench_scale.py --frames 5000 20000 --size 512 --s3     # input on S3 (moto)
    python benchmarks/bench_scale.py --frames 500 1000 --size 256            # a quick check

For each length, a movie is simulated straight to zarr (chunks of ``--chunk-frames`` frames
by ``--tile`` x ``--tile`` pixels, one time chunk in memory at a time; kept in ``--dir`` and
reused), optionally uploaded to a moto S3 server on loopback (the workers then read it
through s3fs; moto holds it in this process's memory: about 0.3 GB per 1000 frames of
512x512), and run end to end (motion, cnmf, evaluate) with CaImAn's demo parameters on a
LocalCluster of 2 worker processes limited to 2 GB each (one cluster for all lengths,
warmed up by a small run first). The results store stays on local disk. Printed: wall
time and frames/s per stage, the peak RSS of each worker (sampled every 0.5 s) and of
this client process, and how the time grows from one length to the next.
The 20000-frame 512x512 movie takes about 10 minutes to simulate and needs ~6 GB of disk.
"""

from __future__ import annotations

import argparse
import resource
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

N_WORKERS = 2
MEMORY_LIMIT = "2GB"
BUCKET = "calcium-bench"


# -- the movies -------------------------------------------------------------------------------

def simulation(frames: int, size: int, seed: int) -> Any:
    """The ``large`` preset (512x512, 640 neurons) scaled to ``size``: same density of neurons."""
    from calcium_dask.datasets import SimulationParams

    scale = (size / 512) ** 2
    grid = max(3, round(7 * size / 512))
    return SimulationParams.preset("large", T=frames, H=size, W=size, K=max(10, round(640 * scale)),
                                   nr_grid=(grid, grid), seed=seed)


def simulate(directory: Path, frames: int, size: int, *, seed: int, chunk_frames: int, tile: int) -> Path:
    """Write (or reuse) ``directory/movie.zarr``; prints the time it took."""
    from calcium_dask.datasets import write_movie

    path = directory / "movie.zarr"
    done = directory / ".complete"
    if done.exists():
        return path
    t0 = time.perf_counter()
    write_movie(path, simulation(frames, size, seed), chunk_frames=chunk_frames, tile=tile)
    done.write_text("ok\n")
    print(f"  simulated {path} in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


# -- optional object storage ---------------------------------------------------------------

@dataclass
class S3Server:
    """moto's S3 server on a loopback port, with fake credentials (moto accepts any)."""

    server: Any = None
    storage_options: dict[str, Any] = field(default_factory=dict)

    def start(self) -> S3Server:
        import logging

        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        self.storage_options = {"key": "bench", "secret": "bench-secret",
                                "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench-secret",
                     region_name="us-east-1").create_bucket(Bucket=BUCKET)
        return self

    def upload(self, local: Path, key: str) -> str:
        import s3fs

        fs = s3fs.S3FileSystem(**self.storage_options)
        t0 = time.perf_counter()
        fs.put(str(local), f"{BUCKET}/{key}", recursive=True)
        print(f"  uploaded to s3://{BUCKET}/{key} in {time.perf_counter() - t0:.0f} s", flush=True)
        return f"s3://{BUCKET}/{key}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


# -- memory --------------------------------------------------------------------------------

class PeakMemory:
    """Sample every worker's RSS every ``interval`` seconds in a thread; keep each one's peak."""

    def __init__(self, client: Any, interval: float = 0.5) -> None:
        self.client, self.interval = client, interval
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="peak-memory", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.client.run(_rss)
            except Exception:  # noqa: BLE001 - a worker restarting: sample again next time
                rss = {}
            for worker, n in rss.items():
                self.peak[worker] = max(self.peak.get(worker, 0), n)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _client_peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


# -- one run ---------------------------------------------------------------------------------

@dataclass
class Result:
    frames: int
    size: int
    wall: float
    rows: list[dict[str, Any]]
    peak: dict[str, int]
    client_peak: int

    def stage_seconds(self) -> dict[str, float]:
        return {r["stage"]: float(r["seconds"]) for r in self.rows}


def run(client: Any, movie: str, out: Path, storage_options: dict[str, Any], frames: int, size: int) -> Result:
    """The whole pipeline on ``client``'s cluster, memory sampled all along."""
    from calcium_dask.cli import demo_params
    from calcium_dask.pipeline import run_pipeline

    with PeakMemory(client) as mem:
        t0 = time.perf_counter()
        summary = run_pipeline(movie, str(out), demo_params(30.0), storage_options=storage_options,
                               out_storage_options={}, force=True)
        wall = time.perf_counter() - t0
    return Result(frames, size, wall, summary.rows, mem.peak, _client_peak_rss())


def warm_up(client: Any, directory: Path) -> None:
    """One small run first, so that no measured run pays for compiling or loading kernels."""
    d = directory / "warmup"
    movie = simulate(d, 300, 96, seed=0, chunk_frames=100, tile=48)
    t0 = time.perf_counter()
    run(client, str(movie), d / "results.zarr", {}, 300, 96)
    print(f"  warm-up run (300 frames of 96x96) in {time.perf_counter() - t0:.1f} s", flush=True)


# -- report ----------------------------------------------------------------------------------

def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def report(res: Result) -> None:
    print(f"\n{res.frames} frames of {res.size}x{res.size} "
          f"({_gb(res.frames * res.size * res.size * 2)} as uint16): total {res.wall:.1f} s, "
          f"{res.frames / res.wall:.1f} frames/s", flush=True)
    for r in res.rows:
        extra = ", ".join(f"{k}={v}" for k, v in r.items()
                          if k not in ("stage", "status", "seconds", "finished", "version", "frames_per_s"))
        print(f"  {r['stage']:<9} {r['seconds']:8.1f} s  {res.frames / max(r['seconds'], 1e-9):8.1f} frames/s"
              + (f"  ({extra})" if extra else ""))
    workers = sorted(res.peak)
    peaks = ", ".join(f"{w.rsplit(':', 1)[-1]}: {_gb(res.peak[w])}" for w in workers)
    print(f"  peak RSS per worker (limit {MEMORY_LIMIT}): {peaks}")
    if len(workers) > N_WORKERS:
        print(f"  WARNING: {len(workers)} worker addresses seen: a worker was restarted (memory?)")
    print(f"  peak RSS of the client process: {_gb(res.client_peak)} (cumulative over this script)")


def growth(results: list[Result]) -> None:
    for a, b in zip(results, results[1:]):
        sa, sb = a.stage_seconds(), b.stage_seconds()
        stages = ", ".join(f"{s} x{sb[s] / max(sa[s], 1e-9):.2f}" for s in sb if s in sa)
        mem = max(b.peak.values(), default=0) / max(max(a.peak.values(), default=1), 1)
        print(f"\n{a.frames} -> {b.frames} frames (x{b.frames / a.frames:.2f}): time x{b.wall / a.wall:.2f} "
              f"({stages}); peak worker memory x{mem:.2f}")
    if results and results[0].frames * results[0].size ** 2 < 1e9:
        print("(short movies: fixed costs such as task start-up and graph building weigh on these ratios)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[5000, 20000])
    ap.add_argument("--size", type=int, default=512, help="frame height and width, pixels")
    ap.add_argument("--s3", action="store_true", help="read the movies from a moto S3 server on loopback")
    ap.add_argument("--chunk-frames", type=int, default=500, help="zarr chunk length in time")
    ap.add_argument("--tile", type=int, default=128, help="zarr chunk width and height")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-warmup", action="store_true", help="measure the first run cold")
    ap.add_argument("--dir", default=None, help="where movies and results go (default: a new temporary folder)")
    a = ap.parse_args(argv)
    directory = Path(a.dir or tempfile.mkdtemp(prefix="bench_scale_"))
    print("command: python " + " ".join(shlex.quote(x) for x in [sys.argv[0], *(argv or sys.argv[1:])]))
    print(f"folder: {directory}; cluster: {N_WORKERS} worker processes x 1 thread, {MEMORY_LIMIT} each")
    s3 = S3Server().start() if a.s3 else None
    results = []
    try:
        with cluster() as client:
            if not a.no_warmup:
                warm_up(client, directory)
            for frames in sorted(a.frames):
                d = directory / f"{a.size}_{frames}_{a.seed}"
                local = simulate(d, frames, a.size, seed=a.seed, chunk_frames=a.chunk_frames, tile=a.tile)
                movie, so = (s3.upload(local, f"{d.name}.zarr"), s3.storage_options) if s3 else (str(local), {})
                results.append(run(client, movie, d / "results.zarr", so, frames, a.size))
                report(results[-1])
        growth(results)
    finally:
        if s3 is not None:
            s3.stop()


@contextmanager
def cluster() -> Iterator[Any]:
    """One LocalCluster for every run: 2 worker processes of 1 thread, 2 GB each."""
    from calcium_dask.cluster import connect
    from calcium_dask.compute import set_quiet

    set_quiet(True)
    client = connect(n_workers=N_WORKERS, memory_limit=MEMORY_LIMIT, dashboard_address="127.0.0.1:0", quiet=True)
    try:
        yield client
    finally:
        client.cluster.close()
        client.close()


if __name__ == "__main__":
    main()
