"""Long sessions: memory flat and time linear in the session's length, in every process.

    python benchmarks/bench_long.py --frames 20000 60000 200000        # the issue's figures
    python benchmarks/bench_long.py --frames 2000 6000 --base 1000      # a quick check

A 256x256 movie of ``--base`` frames is simulated once (the ``large`` preset's density of
neurons, GCaMP at 30 Hz) as a TIFF; a session of N frames is that file repeated N / base
times (``open_movie`` takes a list of files as one movie), with its ground truth repeated
alike, so a 200,000-frame session (26 GB as uint16) costs 1.3 GB of disk. Each length runs
end to end with ``calcium-dask run`` against a real ``dask scheduler`` and ``--workers``
``dask worker`` processes (one thread, ``--memory-limit`` each), started here, so that the
client (the ``calcium-dask run`` process), the scheduler and each worker are measured apart:
their peak RSS is sampled every 0.25 s, and each worker charges its RSS to the task prefixes
it is running (``task_memory.py``, a worker preload), so that a peak names its phase. Each
length gets a new cluster. Printed per length: peak RSS of each process, seconds
per 1,000 frames of each stage, bytes written per input byte, accepted F1 and median trace
correlation against the truth; then each figure at the longest length over the shortest.
The results stores are deleted (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil

SIZE = 256
PRELOAD = Path(__file__).resolve().with_name("task_memory.py")  # each worker's peak RSS by task prefix
if str(PRELOAD.parent) not in sys.path:  # task_memory is imported here too, also when loaded by path
    sys.path.insert(0, str(PRELOAD.parent))
TOP_TASKS = 8


def simulation(frames: int, seed: int) -> Any:
    """The ``large`` preset (512x512, 640 neurons) at 256x256: the same density of neurons."""
    from calcium_dask.datasets import SimulationParams

    return SimulationParams.preset("large", T=frames, H=SIZE, W=SIZE, K=160, nr_grid=(4, 4), seed=seed)


def base_movie(directory: Path, frames: int, seed: int) -> Path:
    path = directory / f"base_{frames}_{seed}" / "movie.tif"
    if not (path.parent / ".complete").exists():
        from calcium_dask.datasets import write_movie

        t0 = time.perf_counter()
        write_movie(path, simulation(frames, seed))
        (path.parent / ".complete").write_text("ok\n")
        print(f"  simulated {path} in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


# -- processes ------------------------------------------------------------------------------------
class PassLog:
    """The pass a ``calcium-dask run`` process is in, from its progress lines on stderr
    ("label: done/total tasks (...)"): the label of the last line, "after" it once the pass
    is done (the client's own work between passes: merging, regressions, writing)."""

    def __init__(self, stream: Any) -> None:
        self.now = "start"
        self.tail: deque[str] = deque(maxlen=20)  # the last lines, for a failure's message
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.tail.append(line)
            label, sep, rest = line.rpartition(": ")
            if sep and " tasks (" in rest:
                done, total = rest.split(" ", 1)[0].split("/")
                self.now = f"after {label}" if done == total else label

    def __call__(self) -> str:
        return self.now


class Peaks:
    """Peak RSS of named process trees, sampled in a thread."""

    def __init__(self, interval: float = 0.25) -> None:
        self.procs: dict[str, psutil.Process] = {}
        self.peak: dict[str, int] = {}
        self.when: dict[str, float] = {}  # epoch seconds of each process's peak
        self.phase: dict[str, Callable[[], str]] = {}  # process -> what it is doing now
        self.by_phase: dict[str, dict[str, int]] = {}  # process -> phase -> peak RSS in it
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def watch(self, name: str, pid: int, phase: Callable[[], str] | None = None) -> None:
        self.procs[name] = psutil.Process(pid)
        self.peak.setdefault(name, 0)
        if phase is not None:
            self.phase[name] = phase
            self.by_phase[name] = {}

    def _rss(self, proc: psutil.Process) -> int:
        """A ``dask worker`` is a nanny and its worker process: the largest of the tree."""
        try:
            tree = [proc, *proc.children(recursive=True)]
            return max(p.memory_info().rss for p in tree)
        except psutil.Error:
            return 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name, proc in list(self.procs.items()):
                rss = self._rss(proc)
                if rss > self.peak[name]:
                    self.peak[name], self.when[name] = rss, time.time()
                if name in self.phase:
                    phases = self.by_phase[name]
                    now = self.phase[name]()
                    phases[now] = max(phases.get(now, 0), rss)
            time.sleep(self.interval)

    def start(self) -> Peaks:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Cluster:
    """A ``dask scheduler`` and ``dask worker`` processes on loopback."""

    workers: int
    memory_limit: str
    directory: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    address: str = ""

    def start(self) -> Cluster:
        from calcium_dask.cluster import MALLOC_ENV, THREAD_ENV

        env = {**os.environ, **THREAD_ENV, **MALLOC_ENV}
        bindir = Path(sys.executable).parent
        sched_file = self.directory / "scheduler.json"
        sched_file.unlink(missing_ok=True)
        self.procs.append(subprocess.Popen([str(bindir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                            "--no-dashboard", "--scheduler-file", str(sched_file),
                                            "--preload", str(PRELOAD)],
                                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(600):
            if sched_file.exists() and sched_file.stat().st_size:
                break
            time.sleep(0.1)
        import json

        self.address = json.loads(sched_file.read_text())["address"]
        for _ in range(self.workers):
            self.procs.append(subprocess.Popen(
                [str(bindir / "dask"), "worker", self.address, "--nthreads", "1", "--memory-limit", self.memory_limit,
                 "--no-dashboard", "--host", "127.0.0.1", "--preload", str(PRELOAD)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(self.address, timeout="60s") as c:
            c.wait_for_workers(self.workers, timeout=120)
        return self

    def task_peaks(self) -> dict[str, Any]:
        """Each worker's peak RSS (and managed bytes then) per task prefix, and the scheduler's
        peak with its tasks by prefix then ("scheduler"), since the last call."""
        import task_memory
        from distributed import Client

        with Client(self.address, timeout="60s") as c:
            return {**c.run(task_memory.peaks), "scheduler": c.run_on_scheduler(task_memory.scheduler_peak)}

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


# -- one length ---------------------------------------------------------------------------------
@dataclass
class Result:
    frames: int
    peaks: dict[str, int]
    seconds: dict[str, float]
    wall: float
    written: int
    input_bytes: int
    score: Score
    by_task: dict[str, Any] = field(default_factory=dict)  # task_memory's records: workers' and the scheduler's
    peak_stage: dict[str, str] = field(default_factory=dict)  # process -> the stage running at its peak
    client_phases: dict[str, int] = field(default_factory=dict)  # the client's peak RSS in each pass


def stage_at(when: float, stages: dict[str, Any]) -> str:
    """The stage that was running at epoch second ``when``: the first to finish after it."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when))
    ends = sorted((v.get("finished", ""), k) for k, v in stages.items())
    return next((k for end, k in ends if end >= stamp), "after the stages")


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@dataclass(frozen=True)
class Score:
    """A results store against the repeated truth (IoU >= 0.3)."""

    f1: float  # of the accepted units
    recall: float  # of the accepted units
    trace_corr: float  # median, accepted units matched to a neuron
    n_accepted: int
    recall_all: float  # of every unit, accepted or not: what detection found


def score(store: Path, truth: Any, repeats: int) -> Score:
    """The accepted units' F1, recall and median trace correlation, and the recall of all units."""
    import dask

    from calcium_dask.datasets.scoring import frame_offset, match_footprints, score_sources, shift_images
    from calcium_dask.results import open_results

    res = open_results(str(store))
    with dask.config.set(scheduler="threads"):
        shifts = res.motion["shifts"].values
        acc = np.flatnonzero(res.ds["accepted"].values)
        every = res.ds["footprints"].values
        C = np.asarray(res.ds["traces"].isel(unit=acc).values)
    offset = frame_offset(shifts[: truth.T], truth.shifts)
    truth_fp = shift_images(truth.footprints, offset)
    sc = score_sources(truth_fp, np.tile(truth.C, (1, repeats)), every[acc], C)
    found = len(match_footprints(truth_fp, every)) / max(len(truth_fp), 1)
    return Score(float(sc["f1"]), float(sc["recall"]), float(sc.get("trace_corr_median", np.nan)), len(acc), found)


def run_length(base: Path, truth: Any, frames: int, cluster: Cluster, out: Path, args: argparse.Namespace) -> Result:
    repeats = frames // truth.T
    files = [str(base)] * repeats
    store = out / f"long_{frames}.zarr"
    if not args.resume:
        shutil.rmtree(store, ignore_errors=True)
    cmd = [str(Path(sys.executable).parent / "calcium-dask"), "run", *files, "--out", str(store),
           "--scheduler", cluster.address, "--set", f"data.fr={truth.params.fr}",
           "--set", f"motion.save_movie={args.save_movie}", *[x for kv in args.set for x in ("--set", kv)]]
    peaks = Peaks().start()
    for i, p in enumerate(cluster.procs):
        peaks.watch("scheduler" if i == 0 else f"worker{i}", p.pid)
    t0 = time.perf_counter()
    client = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    passes = PassLog(client.stderr)
    peaks.watch("client", client.pid, passes)
    code = client.wait()
    wall = time.perf_counter() - t0
    peaks.stop()
    by_task = cluster.task_peaks()
    if code:
        raise SystemExit(f"calcium-dask run failed with exit code {code} at {frames} frames:\n"
                         + "".join(passes.tail))
    from calcium_dask.store import ResultsStore

    stages = ResultsStore(str(store)).stages()
    res = Result(frames, dict(peaks.peak), {k: float(v["seconds"]) for k, v in stages.items()}, wall,
                 _du(store), frames * SIZE * SIZE * 2, score(store, truth, repeats), by_task,
                 {k: stage_at(t, stages) for k, t in peaks.when.items()}, peaks.by_phase.get("client", {}))
    if not args.keep:
        shutil.rmtree(store, ignore_errors=True)
    return res


# -- printing ---------------------------------------------------------------------------------------
def report(r: Result) -> None:
    mem = "  ".join(f"{k} {v / 2**20:.0f} MB ({r.peak_stage.get(k, '?')})" for k, v in sorted(r.peaks.items()))
    per = "  ".join(f"{k} {1000 * s / r.frames:.2f}" for k, s in r.seconds.items())
    print(f"{r.frames:>8} frames: wall {r.wall:.0f} s; peak RSS: {mem}", flush=True)
    print(f"{'':>16}s per 1000 frames: {per}; written/input bytes {r.written / r.input_bytes:.3f}; "
          f"accepted {r.score.n_accepted}, F1 {r.score.f1:.3f}, recall {r.score.recall:.3f} (all units "
          f"{r.score.recall_all:.3f}), median trace corr {r.score.trace_corr:.3f}", flush=True)
    peak, tasks = r.by_task.get("scheduler", (0, {}))
    top_tasks = sorted(tasks.items(), key=lambda kv: -kv[1])[:TOP_TASKS]
    print(f"{'':>16}scheduler at its peak ({peak / 2**20:.0f} MB) held {sum(tasks.values())} tasks: "
          + ", ".join(f"{k} {n}" for k, n in top_tasks), flush=True)
    phases = sorted(r.client_phases.items(), key=lambda kv: -kv[1])[:TOP_TASKS]
    print(f"{'':>16}client peak RSS in (pass): " + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in phases), flush=True)
    workers = {k: v for k, v in r.by_task.items() if k != "scheduler"}
    for i, (_, record) in enumerate(sorted(workers.items()), 1):
        top = sorted(record.items(), key=lambda kv: -kv[1][0])[:TOP_TASKS]
        print(f"{'':>16}worker{i} peak RSS while running (managed MB): "
              + ", ".join(f"{k} {rss / 2**20:.0f} ({m / 2**20:.0f})" for k, (rss, m) in top), flush=True)


def ratios(first: Result, last: Result) -> None:
    print(f"\nratios, {last.frames} frames over {first.frames} (targets: peaks and s/frame <= 1.15; "
          "F1 and trace corr within 0.02; client < 1.5 GB):")
    for k in sorted(first.peaks):
        print(f"  peak RSS {k:<10} {last.peaks[k] / max(first.peaks[k], 1):.2f}")
    for k in first.seconds:
        a, b = first.seconds[k] / first.frames, last.seconds.get(k, np.nan) / last.frames
        print(f"  s/frame  {k:<10} {b / a:.2f}")
    s0, s1 = first.score, last.score
    print(f"  accepted F1 {s1.f1 - s0.f1:+.3f}; recall {s1.recall - s0.recall:+.3f} (all units "
          f"{s1.recall_all - s0.recall_all:+.3f}); median trace corr {s1.trace_corr - s0.trace_corr:+.3f}; "
          f"client peak {last.peaks['client'] / 2**30:.2f} GB")


# a 1 TB session: 512x512 uint16 frames (4x these pixels), ~2 million of them
TB_FRAMES, TB_PIXEL_FACTOR, TB_PASSES = 2_000_000, (512 * 512) / (SIZE * SIZE), 6


def projection(r: Result, workers: int, per_worker_mb_s: float) -> None:
    """Hours and worker-hours of a 1 TB session, from the measured per-frame cost of each stage.

    Each stage's measured time on ``workers`` workers is taken as ``workers`` x that many
    worker-seconds, scaled by the pixels per frame (the kernels are linear in pixels) and
    the frames; wall hours on N workers assume they divide evenly, and are bounded below by
    reading the movie ``TB_PASSES`` times (motion reads the raw movie, CNMF's patches, the
    refit's three passes and evaluation read the corrected one) at ``per_worker_mb_s`` per
    worker from object storage.
    """
    ws = {k: workers * s / r.frames * TB_FRAMES * TB_PIXEL_FACTOR for k, s in r.seconds.items()}
    total = sum(ws.values())
    io_s = TB_PASSES * 1e12 / 1e6  # MB read over the session
    print(f"\n1 TB session (512x512, {TB_FRAMES:,} frames), projected from {r.frames} frames: "
          f"{total / 3600:,.0f} worker-hours (" + ", ".join(f"{k} {v / 3600:,.0f}" for k, v in ws.items()) + ")")
    print(f"{'workers':>8} {'hours':>8} {'worker-hours':>13} {'read-bound hours':>17}")
    for n in (10, 100, 1000):
        print(f"{n:>8} {total / n / 3600:>8.1f} {total / 3600:>13,.0f} {io_s / (n * per_worker_mb_s) / 3600:>17.2f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[20000, 60000, 200000])
    ap.add_argument("--base", type=int, default=10000, help="frames of the simulated movie that is repeated")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="2GB")
    ap.add_argument("--save-movie", default="compact", choices=["float32", "compact", "none"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="GROUP.NAME=VALUE",
                    help="a parameter for every run (calcium-dask run --set), e.g. patch.memory_fact=0.77")
    ap.add_argument("--read-mb-s", type=float, default=100.0,
                    help="object-storage read rate of one worker, for the 1 TB projection")
    ap.add_argument("--dir", default=None, help="where the movie and stores go (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the results stores")
    ap.add_argument("--resume", action="store_true",
                    help="resume a store left in --dir by an interrupted run (its finished stages keep their times; "
                         "the peaks printed are this run's)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed benchmark stops its cluster too
    print("command: python benchmarks/bench_long.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
          flush=True)
    for n in args.frames:
        if n % args.base:
            ap.error(f"--frames {n} is not a multiple of --base {args.base}")
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-long-"))
    work.mkdir(parents=True, exist_ok=True)
    from calcium_dask.datasets import GroundTruth

    base = base_movie(work, args.base, args.seed)
    truth = GroundTruth.load(base.parent / "truth.npz")
    results = []
    try:
        for n in args.frames:  # a new cluster for each length: no length inherits another's processes
            cluster = Cluster(args.workers, args.memory_limit, work).start()
            try:
                results.append(run_length(base, truth, n, cluster, work, args))
            finally:
                cluster.stop()
            report(results[-1])
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    if len(results) > 1:
        ratios(results[0], results[-1])
    if results:
        projection(results[-1], args.workers, args.read_mb_s)


if __name__ == "__main__":
    main()
