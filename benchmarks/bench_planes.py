"""A 4-plane, 2-channel ScanImage session against its planes run one by one (issue 22 targets:
every plane's accepted F1 and rigid-shift error equal to the plane processed alone within
0.01 F1 and 0.02 px, shifts from the structural channel; the 4 planes on 2 workers in at
most 1.1x the sum of the four single runs).

    python benchmarks/bench_planes.py
    python benchmarks/bench_planes.py --size 128 --frames 1000 --planes 4 --repeat 3

The session is simulated (calcium_dask.datasets.volume: each plane its own neurons, all
planes moving together, a static structural channel moving with the functional one, one
flyback frame per volume) and written as one interleaved ScanImage BigTIFF; each plane is
also written alone, with the same pixels, as a one-plane two-channel ScanImage file. On one
local cluster of 2 single-threaded workers, each repeat times the four planes run one after
another (``run_pipeline``) and the session (``run_fields``: the four planes at once), in
alternating order; the first repeat is preceded by an untimed warm-up run. Every run
computes shifts on the structural channel (``align_by_chan=2``). Each plane is scored
against its ground truth (calcium_dask.datasets.scoring). Stores are deleted after scoring.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _params(fr: float, size: int) -> Any:
    from calcium_dask.cli import demo_params

    patch = max(16, min(48, size // 2))
    return demo_params(fr).replace(**{"motion.strides": (patch, patch), "motion.overlaps": (patch // 2, patch // 2),
                                      "data.align_by_chan": 2})


def plane_scores(store: Any, truth: Any) -> tuple[float, float]:
    """(accepted units' F1, rigid-shift RMSE in px) of one field of view against its truth."""
    from calcium_dask.datasets.scoring import frame_offset, score_shifts, score_sources, shift_images

    shifts = store.read("motion")["shifts"].values
    ds = store.read()
    ok = ds["accepted"].values.astype(bool)
    truth_fp = shift_images(truth.footprints, frame_offset(shifts, truth.shifts))
    sc = score_sources(truth_fp, truth.C, ds["footprints"].values[ok], ds["traces"].values[ok])
    return float(sc["f1"]), float(score_shifts(shifts, truth.shifts))


def _singles(d: Path, nplanes: int, params: Any, out: Path) -> tuple[float, list[float]]:
    from calcium_dask.pipeline import run_pipeline

    each = []
    for z in range(nplanes):
        t0 = time.perf_counter()
        run_pipeline(str(d / f"alone{z}.tif"), str(out / f"alone{z}.zarr"), params, force=True)
        each.append(time.perf_counter() - t0)
    return sum(each), each


def _session(d: Path, params: Any, client: Any, out: Path) -> float:
    from calcium_dask.fields import run_fields

    t0 = time.perf_counter()
    res = run_fields(str(d / "session.tif"), str(out / "session.zarr"), params, client, force=True,
                     echo=lambda line: None)
    if res.failed:
        raise RuntimeError(f"session failed: {[r.status for r in res.failed]}")
    return time.perf_counter() - t0


def _accuracy(d: Path, nplanes: int, out: Path) -> list[tuple[int, float, float, float, float]]:
    from calcium_dask.datasets import GroundTruth
    from calcium_dask.store import ResultsStore

    rows = []
    session = ResultsStore(str(out / "session.zarr"))
    for z in range(nplanes):
        truth = GroundTruth.load(d / f"truth_plane{z}.npz")
        f1_s, sh_s = plane_scores(session.field(f"plane{z}"), truth)
        f1_a, sh_a = plane_scores(ResultsStore(str(out / f"alone{z}.zarr")), truth)
        rows.append((z, f1_s, f1_a, sh_s, sh_a))
    return rows


def _write(d: Path, sp: Any, nplanes: int, nflyback: int) -> None:
    from calcium_dask.datasets.volume import write_scanimage_session

    if not (d / "session.tif").exists():
        write_scanimage_session(d / "session.tif", sp, nplanes=nplanes, nchannels=2, nflyback=nflyback)
    for z in range(nplanes):
        if not (d / f"alone{z}.tif").exists():
            write_scanimage_session(d / f"alone{z}.tif", sp, nplanes=nplanes, nchannels=2, only_plane=z)


def _measure(d: Path, a: argparse.Namespace, params: Any, client: Any) -> tuple[list[tuple], list]:
    """Timings of every repeat and the accuracy rows of the last one."""
    out = Path(tempfile.mkdtemp(prefix="stores_", dir=d))
    try:
        if a.warmup:
            from calcium_dask.pipeline import run_pipeline

            run_pipeline(str(d / "alone0.tif"), str(out / "warmup.zarr"), params, force=True)
        timings = []
        for r in range(a.repeat):
            if r % 2 == 0:
                total, each = _singles(d, a.planes, params, out)
                session = _session(d, params, client, out)
            else:
                session = _session(d, params, client, out)
                total, each = _singles(d, a.planes, params, out)
            timings.append((r + 1, total, each, session))
            print(f"repeat {r + 1}: planes one by one {total:.1f} s ({', '.join(f'{s:.1f}' for s in each)}); "
                  f"session {session:.1f} s; ratio {session / total:.3f}", flush=True)
        return timings, _accuracy(d, a.planes, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def report(timings: list[tuple], rows: list[tuple]) -> None:
    ratios = np.array([s / t for _, t, _, s in timings])
    print(f"summary: session / sum of single runs: median {np.median(ratios):.3f}, spread {ratios.min():.3f}-"
          f"{ratios.max():.3f} over {len(ratios)} repeat(s); target <= 1.1: "
          f"{'met' if np.median(ratios) <= 1.1 else 'NOT met'}")
    print("plane  F1 session  F1 alone  shift err session  shift err alone (px)")
    for z, f1_s, f1_a, sh_s, sh_a in rows:
        print(f"{z:5d}  {f1_s:10.3f}  {f1_a:8.3f}  {sh_s:17.3f}  {sh_a:15.3f}")
    df1 = max(abs(f1_s - f1_a) for _, f1_s, f1_a, _, _ in rows)
    dsh = max(abs(sh_s - sh_a) for _, _, _, sh_s, sh_a in rows)
    print(f"accuracy: largest difference session vs alone: F1 {df1:.4f} (target <= 0.01: "
          f"{'met' if df1 <= 0.01 else 'NOT met'}), shift error {dsh:.4f} px (target <= 0.02: "
          f"{'met' if dsh <= 0.02 else 'NOT met'})")


def main(argv: list[str] | None = None, client: Any = None) -> None:
    from calcium_dask.compute import set_quiet
    from calcium_dask.datasets import SimulationParams

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=96, help="frame height and width, pixels")
    ap.add_argument("--frames", type=int, default=600, help="volumes (frames of each plane)")
    ap.add_argument("--neurons", type=int, default=None, help="neurons per plane (default: by area, as 'small')")
    ap.add_argument("--planes", type=int, default=4)
    ap.add_argument("--flyback", type=int, default=1, help="flyback frames per volume")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-warmup", dest="warmup", action="store_false")
    ap.add_argument("--dir", default=None, help="folder for the simulated files (default: a temporary one)")
    a = ap.parse_args(argv)
    print("command: python " + " ".join(shlex.quote(x) for x in [sys.argv[0] if argv is None else
                                                                 "benchmarks/bench_planes.py",
                                                                 *(sys.argv[1:] if argv is None else argv)]))
    k = a.neurons or max(3, round(40 * a.size * a.size / 128 ** 2))
    sp = SimulationParams.preset("small", T=a.frames, H=a.size, W=a.size, K=k, seed=a.seed)
    d = Path(a.dir) if a.dir else Path(tempfile.mkdtemp(prefix="bench_planes_"))
    d.mkdir(parents=True, exist_ok=True)
    _write(d, sp, a.planes, a.flyback)
    print(f"session: {a.planes} planes (+{a.flyback} flyback) x 2 channels, {sp.T} volumes of {sp.H}x{sp.W}, "
          f"{sp.K} neurons per plane, volume rate {sp.fr:g} Hz; 2 workers of 1 thread (shared machine)", flush=True)
    set_quiet(True)
    params = _params(sp.fr, a.size)
    try:
        if client is not None:
            timings, rows = _measure(d, a, params, client)
        else:
            import calcium_dask as cd

            with cd.connect(n_workers=2, memory_limit="2GB", dashboard_address=None, quiet=True) as c:
                timings, rows = _measure(d, a, params, c)
                c.cluster.close()
        report(timings, rows)
    finally:
        if not a.dir:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
