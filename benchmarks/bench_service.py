"""The analysis service under load (issue target: p99 of GET /api/runs/{id} under 100 ms).

    python benchmarks/bench_service.py --frames 2000 --size 128 --submissions 20 --reads 200

Starts ``calcium-dask serve`` in a subprocess on loopback (its own local cluster of
``--workers`` workers, SQLite in a temporary state folder), submits two runs on a movie of
``--frames`` frames and waits until both compute; then, while they do, sends
``--submissions`` submissions (a small movie each) and ``--reads`` status reads of random
runs, ``--concurrency`` requests in flight at a time, and times each request from this
process; ``--rounds`` - 1 more bursts of reads follow every ``--every`` seconds while both
runs still compute (the first burst meets the runs as they start, the later ones in their
stages), and the percentiles are given per burst and over all of them. With
``--connections kept`` each burst opens its connections first and its requests reuse them,
as pollers keep theirs (default ``new``: a connection per request). Finally it waits (at
most ``--timeout`` seconds) for every run to end and checks
that each submitted run is listed exactly once and is ``done``. Loops are bounded; nothing
listens beyond 127.0.0.1.

The load generator is measured too: aiohttp spends 0.5-1 ms of CPU a request with 200 in
flight, more than the service (0.1-0.3 ms), so on 2 cores its bursts time mostly itself. When
ApacheBench (``ab``, Debian's ``apache2-utils``, a compiled client) is on the PATH, each
burst is sent again right after aiohttp's with ab sending its reads (``AB_RUNS`` runs, an ab
process each with its share of the reads and of the requests in flight; each request's time
from ``ab -g``; the first burst's submissions still from aiohttp, to outputs of their own),
and both are reported (``--reader``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

LISTENING = re.compile(r"calcium-dask service on (http://\S+)")


@dataclass
class Timings:
    """Seconds each request took, by kind."""

    reads: list[float] = field(default_factory=list)
    submits: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def start_service(state: Path, token_file: Path, workers: int, max_concurrent: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "calcium_dask", "serve", "--port", "0", "--state-dir", str(state / "service"),
           "--allowed-root", str(state), "--token-file", str(token_file), "--workers", str(workers),
           "--max-concurrent", str(max_concurrent)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(ln) for ln in proc.stderr], daemon=True).start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = [m.group(1) for ln in lines if (m := LISTENING.search(ln))]
        if found:
            return proc, found[0]
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited: {''.join(lines[-5:])}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the service did not start within 120 s")


async def load(url: str, headers: dict, ids: list[int], bodies: list[dict], reads: int, concurrency: int,
               timings: Timings, kept: bool = False) -> list[int]:
    """Submissions and reads interleaved, ``concurrency`` in flight; the submitted ids.

    Each request opens its own connection, unless ``kept``: then ``concurrency``
    connections are opened first (a status read each, not timed) and the requests reuse
    them, as pollers that keep their connection do (a browser's dashboard, a notebook's
    ``Client``). aiohttp sends them: httpx's asynchronous pool spends more time per request
    than the service does once hundreds are in flight (measured: 41 ms against 7 ms a
    request)."""
    import aiohttp

    submitted: list[int] = []
    gate = asyncio.Semaphore(concurrency)
    rng = random.Random(0)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=120)) as http:
        async def send(method: str, path: str, into: list[float], body: dict | None = None) -> tuple[int, object]:
            async with gate:
                t0 = time.perf_counter()
                async with http.request(method, path, json=body) as r:
                    out = (r.status, await r.json())
                into.append(time.perf_counter() - t0)
            return out

        async def submit(body: dict) -> None:
            status, out = await send("POST", "/api/runs", timings.submits, body)
            if status == 201:
                submitted.append(out["id"])
            else:
                timings.errors.append(f"POST {status}: {out}")

        async def read(rid: int) -> None:
            status, out = await send("GET", f"/api/runs/{rid}", timings.reads)
            if status != 200:
                timings.errors.append(f"GET {status}: {out}")

        if kept:  # every connection open before the clock starts
            await asyncio.gather(*[send("GET", f"/api/runs/{ids[0]}", []) for _ in range(concurrency)])
        jobs = [submit(b) for b in bodies] + [read(rng.choice(ids)) for _ in range(reads)]
        rng.shuffle(jobs)
        await asyncio.gather(*jobs)
    return submitted


def wait_all(url: str, headers: dict, timeout: float) -> list[dict]:
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        while True:
            runs = http.get("/api/runs", params={"limit": 500}).json()["runs"]
            if all(r["state"] in ("done", "failed", "cancelled") for r in runs) or time.monotonic() > deadline:
                return runs
            time.sleep(0.5)


def wait_running(url: str, headers: dict, ids: list[int], timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        while time.monotonic() < deadline:
            runs = [http.get(f"/api/runs/{i}").json() for i in ids]
            if all(r["state"] == "running" for r in runs):
                return
            if any(r["state"] in ("done", "failed", "cancelled") for r in runs):
                raise RuntimeError(f"a background run ended before the load: {[r['message'] for r in runs]}")
            time.sleep(0.1)
    raise RuntimeError("the background runs did not start")


def still_running(url: str, headers: dict, ids: list[int]) -> bool:
    import httpx

    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        return all(http.get(f"/api/runs/{i}").json()["state"] == "running" for i in ids)


AB_RUNS = 8  # runs whose status ApacheBench reads at once, an ab process each


def start_ab(url: str, token: str, run_id: int, reads: int, concurrency: int, kept: bool,
             table: Path) -> subprocess.Popen:
    """ApacheBench sending ``reads`` status reads of one run, ``concurrency`` in flight (each on a
    new connection unless ``kept``), each request's times written to ``table`` (``ab -g``)."""
    cmd = ["ab", "-q", "-n", str(reads), "-c", str(concurrency), "-g", str(table),
           "-H", f"Authorization: Bearer {token}", *(["-k"] if kept else []), f"{url}/api/runs/{run_id}"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ab_timings(proc: subprocess.Popen, table: Path, into: Timings) -> Timings:
    """``into`` with the reads (total time of each) and errors of a finished :func:`start_ab`."""
    out, err = proc.communicate(timeout=300)
    if proc.returncode:
        into.errors.append(f"ab exited with {proc.returncode}: {err.strip()[-200:]}")
        return into
    # ab counts a body whose length differs from the first one's as failed ("Length": a running
    # run's status changes as it is read): only refused, cut or non-2xx answers are errors
    into.errors += [f"ab: {m.group(0)}" for m in re.finditer(r"(Non-2xx responses:\s+|(Connect|Receive|Exceptions): )"
                                                             r"[1-9]\d*", out)]
    rows = table.read_text().splitlines()[1:]  # starttime, seconds, ctime, dtime, ttime (ms), wait
    into.reads = [int(row.split("\t")[4]) / 1000 for row in rows]
    table.unlink()
    return into


@dataclass
class Level:
    """One burst of requests: its round, how many were in flight, their times, the service's
    CPU, and what sent them (``aiohttp`` or ``ab``)."""

    round: int
    in_flight: int
    timings: Timings
    seconds: float
    cpu: float
    reader: str = "aiohttp"


def _cpu(process: psutil.Process) -> float:
    """CPU seconds the service process has used (all its threads)."""
    t = process.cpu_times()
    return t.user + t.system


def percentiles(seconds: list[float]) -> tuple[float, float]:
    if not len(seconds):
        return float("nan"), float("nan")
    ms = np.asarray(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def measure(a: argparse.Namespace, work: Path) -> tuple[list[int], list[int], list, Timings, list[dict]]:
    """Simulate the movies, start the service, load it while two runs compute, wait for every run."""
    from calcium_dask.datasets import SimulationParams, write_movie

    token = "cdt_" + secrets.token_urlsafe(32)
    (work / "tokens").write_text(token + "\n")
    neurons = max(4, (a.size // 16) ** 2 // 2)  # as dense as the small preset
    big = write_movie(work / "big" / "movie.tif", SimulationParams.preset("small", T=a.frames, H=a.size, W=a.size,
                                                                          K=neurons, seed=1))
    small = write_movie(work / "small" / "movie.tif", SimulationParams.preset("small", T=200, H=64, W=64, K=4,
                                                                              seed=2))
    proc, url = start_service(work, work / "tokens", a.workers, a.max_concurrent)
    headers = {"Authorization": f"Bearer {token}"}
    timings = Timings()
    try:
        import httpx

        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            background = [http.post("/api/runs", json={"input": str(big), "output": str(work / f"bg{i}.zarr"),
                                                       "params": {"fr": 30}, "until": a.until}).json()["id"]
                          for i in range(2)]
        wait_running(url, headers, background)
        bodies = [{"input": str(small), "output": str(work / f"s{i}.zarr"), "params": {"fr": 30}, "name": f"s{i}",
                   "until": a.until} for i in range(a.submissions)]
        service = psutil.Process(proc.pid)
        levels, submitted = [], []
        readers = ["aiohttp", "ab"] if a.reader == "both" else [a.reader]

        def burst(round_: int, level: int, bodies: list[dict], reader: str = "aiohttp") -> Timings:
            t = Timings()
            cpu0, t0 = _cpu(service), time.perf_counter()
            if reader == "ab":  # its reads, a share of several runs each, and aiohttp's submissions meanwhile
                ids = (background + submitted)[:AB_RUNS]
                share = [(i, a.reads // len(ids) + (k < a.reads % len(ids)), level // len(ids) + (k < level % len(ids)))
                         for k, i in enumerate(ids)]
                abs_ = [(start_ab(url, token, i, n, max(c, 1), a.connections == "kept", work / f"ab{i}.tsv"), i)
                        for i, n, c in share if n]
                submitted.extend(asyncio.run(load(url, headers, background, bodies, 0, level, t,
                                                  kept=a.connections == "kept")) if bodies else [])
                for ab, i in abs_:
                    got = ab_timings(ab, work / f"ab{i}.tsv", Timings())
                    t.reads, t.errors = t.reads + got.reads, t.errors + got.errors
            else:
                submitted.extend(asyncio.run(load(url, headers, background + submitted, bodies, a.reads, level, t,
                                                  kept=a.connections == "kept")))
            levels.append(Level(round_, level, t, time.perf_counter() - t0, _cpu(service) - cpu0, reader))
            timings.errors.extend(t.errors)
            return t

        for i, reader in enumerate(readers):  # each with its own submissions, to new outputs
            timings.submits += burst(0, a.concurrency[0], [dict(b, output=b["output"].replace(".zarr", f"_{i}.zarr"))
                                                           for b in bodies], reader).submits
        for r in range(1, a.rounds):  # reads alone, later in the runs' lives, while both still compute
            time.sleep(a.every)
            if not still_running(url, headers, background):
                break
            for reader in readers:
                burst(r, a.concurrency[0], [], reader)
        for level in a.concurrency[1:]:  # fewer in flight (the runs still compute)
            for reader in readers:
                burst(0, level, [], reader)
        runs = wait_all(url, headers, a.timeout)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return background, submitted, levels, timings, runs


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=2000, help="frames of the two background runs' movie")
    ap.add_argument("--size", type=int, default=128, help="its height and width")
    ap.add_argument("--submissions", type=int, default=20)
    ap.add_argument("--reads", type=int, default=200)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[200, 10],
                    help="requests in flight at once: the first level with the submissions, each other "
                         "with --reads more status reads")
    ap.add_argument("--rounds", type=int, default=5,
                    help="bursts at the first level: the first with the submissions, then reads alone "
                         "every --every seconds while both background runs still compute")
    ap.add_argument("--every", type=float, default=4.0)
    ap.add_argument("--connections", choices=["new", "kept"], default="new",
                    help="each request on a new connection, or on connections opened before each burst "
                         "(as pollers keep theirs)")
    ap.add_argument("--reader", choices=["both", "aiohttp", "ab"], default="both" if shutil.which("ab") else "aiohttp",
                    help="what sends the status reads: aiohttp, ApacheBench, or both one after the other (the "
                         "default when ab is on the PATH); aiohttp sends the submissions in every case")
    ap.add_argument("--until", default=None, choices=["motion", "cnmf", "evaluate"],
                    help="stop every run after this stage (default: run them whole)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-concurrent", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds to wait for every run to end")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one, deleted)")
    a = ap.parse_args(argv)
    print("command: python " + " ".join(shlex.quote(x) for x in [sys.argv[0], *(argv or sys.argv[1:])]))
    work = Path(a.dir or tempfile.mkdtemp(prefix="bench_service_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        background, submitted, levels, timings, runs = measure(a, work)
    finally:
        if a.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    ids = [r["id"] for r in runs]
    expected = background + submitted
    once = all(ids.count(i) == 1 for i in expected) and len(ids) == len(expected)
    done = all(r["state"] == "done" for r in runs)
    print(f"while 2 runs of {a.frames} frames of {a.size}x{a.size} computed ({a.workers} workers, "
          f"{os.cpu_count()} cores; {a.connections} connections):")
    rows = []
    for lv in levels:
        p50, p99 = percentiles(lv.timings.reads)
        n = len(lv.timings.reads) + len(lv.timings.submits)
        what = (f"{a.submissions} submissions and {a.reads} reads" if lv.timings.submits else f"{a.reads} reads")
        print(f"  round {lv.round}: {what} by {lv.reader}, {lv.in_flight} in flight, {lv.seconds:.2f} s (service "
              f"CPU {1000 * lv.cpu / max(n, 1):.1f} ms a request, runner threads included): GET /api/runs/{{id}} "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        rows.append({"round": lv.round, "concurrency": lv.in_flight, "reader": lv.reader, "read_p50_ms": p50,
                     "read_p99_ms": p99, "seconds": lv.seconds, "cpu_ms_per_request": 1000 * lv.cpu / max(n, 1)})
    for level in a.concurrency:
        for reader in dict.fromkeys(lv.reader for lv in levels):
            chosen = [lv for lv in levels if lv.in_flight == level and lv.reader == reader]
            reads = [x for lv in chosen for x in lv.timings.reads]
            p50, p99 = percentiles(reads)
            print(f"  all {len(reads)} reads by {reader} with {level} in flight ({len(chosen)} rounds): p50 {p50:.1f} "
                  f"ms, p99 {p99:.1f} ms (target p99 < 100 ms: {'met' if p99 < 100 else 'NOT met'})")
    s50, s99 = percentiles(timings.submits) if timings.submits else (float("nan"),) * 2
    print(f"  POST /api/runs ({a.concurrency[0]} in flight): p50 {s50:.1f} ms, p99 {s99:.1f} ms")
    print(f"runs: {len(expected)} submitted, {len(runs)} listed, each exactly once: {once}, all done: {done}"
          + (f"; errors: {timings.errors[:3]}" if timings.errors else ""))
    return {"levels": rows, "submitted": len(submitted), "listed": len(runs), "once": once, "done": done,
            "errors": timings.errors, "states": [r["state"] for r in runs]}


if __name__ == "__main__":
    main()
