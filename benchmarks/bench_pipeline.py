"""Whole-pipeline speed and accuracy on simulated movies (issue targets: motion + CNMF on a
256x256, 3000-frame movie with 2 workers in <= 0.3x CaImAn's 179 s here; recall of all
units >= 0.90; accepted F1 >= 0.85 with precision >= 0.90).

    python benchmarks/bench_pipeline.py --preset medium --frames 3000 --seeds 1
    python benchmarks/bench_pipeline.py --preset small --seeds 1 2 3 4 --preset hard

Each movie is simulated (ground truth beside it), run with CaImAn's demo-notebook parameters
on a local cluster of 2 workers, and scored with calcium_dask.datasets.scoring (the truth is moved
into the motion-corrected frame first).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run(movie: Path, out: Path, max_shift: int) -> tuple[list[dict], float]:
    import calcium_dask as cd
    from calcium_dask.cli import demo_params
    from calcium_dask.pipeline import run_pipeline
    from calcium_dask.compute import set_quiet

    set_quiet(True)
    with cd.connect(n_workers=2, dashboard_address=None, quiet=True) as client:
        t0 = time.perf_counter()
        params = demo_params(30.0).replace(**{"motion.max_shifts": (max_shift, max_shift)})
        summary = run_pipeline(str(movie), str(out), params, force=True)
        seconds = time.perf_counter() - t0
        client.cluster.close()
    return summary.rows, seconds


def score(out: Path, truth_path: Path) -> list[str]:
    from calcium_dask.cli import score_lines
    from calcium_dask.datasets import GroundTruth
    from calcium_dask.store import ResultsStore

    return score_lines(ResultsStore(str(out)), GroundTruth.load(truth_path))


def main(argv: list[str] | None = None) -> None:
    from calcium_dask.datasets import SimulationParams, write_movie

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", default=None, choices=["small", "medium", "large", "hard"])
    ap.add_argument("--frames", type=int, default=None, help="override the preset's number of frames")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--dir", default=None)
    a = ap.parse_args(argv)
    directory = Path(a.dir or tempfile.mkdtemp(prefix="bench_pipeline_"))
    print("command: python " + " ".join(shlex.quote(x) for x in [sys.argv[0], *(argv or sys.argv[1:])]))
    for preset in a.preset or ["small"]:
        for seed in a.seeds:
            over = {"seed": seed, **({"T": a.frames} if a.frames else {})}
            sp = SimulationParams.preset(preset, **over)
            d = directory / f"{preset}_{sp.T}_{seed}"
            if not (d / "movie.tif").exists():
                write_movie(d / "movie.tif", sp)
            # as a user would: max_shifts covers the motion the preset simulates
            max_shift = max(6, int(np.ceil(sp.rigid_max + sp.nonrigid_max)))
            rows, seconds = run(d / "movie.tif", d / "results.zarr", max_shift)
            stages = ", ".join(f"{r['stage']} {r['seconds']:.1f} s" for r in rows)
            print(f"\n{preset} seed {seed}: {sp.T} frames of {sp.H}x{sp.W}, {sp.K} neurons; "
                  f"total {seconds:.1f} s ({stages})")
            for line in score(d / "results.zarr", d / "truth.npz"):
                print("  " + line)


if __name__ == "__main__":
    main()
