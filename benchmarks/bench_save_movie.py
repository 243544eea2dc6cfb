"""The corrected movie's three storage forms side by side: ``motion.save_movie`` float32,
compact (16-bit codes with a stored scale and offset) and none (later stages warp the raw
movie by the saved shifts when they read it).

    python benchmarks/bench_save_movie.py --movie ../shared/bench/data/small/movie.tif \\
        --truth ../shared/bench/data/small/truth.npz --repeats 3
    python benchmarks/bench_save_movie.py --preset small --set T=10000 --seed 7 --repeats 1

Each mode runs the whole pipeline with ``calcium-dask run`` (the CLI's demo parameters for
the movie's frame rate) against one ``dask scheduler`` and two ``dask worker`` processes
started here; the modes take turns ``--repeats`` times so that the machine's drift falls on
all of them alike, and the median of each figure is printed. Figures: seconds of each
stage and of the whole run; bytes of the corrected movie and of the store per input byte;
accepted units, F1 (IoU >= 0.3) and median trace correlation against the truth (scored as
``../shared/bench/score.py`` scores them); the correlation of the mean of the corrected
movie *as the later stages read it* with the motion-free mean, and the largest difference
of its frames from the float32 form's, in units of the movie's noise.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_long import Cluster, _du  # noqa: E402  (the real scheduler and worker processes)

MODES = ("float32", "compact", "none")


@dataclass
class Truth:
    footprints: np.ndarray
    C: np.ndarray
    shifts: np.ndarray
    clean_mean: np.ndarray
    fr: float
    noise: float

    @classmethod
    def public(cls, path: Path) -> Truth:
        """The public benchmark's ``truth.npz`` with its ``params.json`` beside it."""
        import json

        t = np.load(path)
        p = json.loads((path.parent / "params.json").read_text())
        return cls(t["footprints"], t["C"], t["shifts"], t["clean_mean"], float(p["fps"]), float(p["read_sd"]))

    @classmethod
    def simulated(cls, path: Path) -> Truth:
        from calcium_dask.datasets import GroundTruth

        t = GroundTruth.load(path)
        return cls(t.footprints, t.C, t.shifts, t.clean_mean, float(t.params.fr), float(t.params.read_sd))


@dataclass
class Figures:
    mode: str
    seconds: dict[str, float]
    wall: float
    movie_bytes: int
    store_bytes: int
    n_accepted: int
    f1: float
    trace_corr: float
    mean_corr: float


def run_mode(movie: Path, fr: float, mode: str, out: Path, address: str) -> tuple[Path, float]:
    import time

    store = out / f"{mode}.zarr"
    shutil.rmtree(store, ignore_errors=True)
    cmd = [str(Path(sys.executable).parent / "calcium-dask"), "run", str(movie), "--out", str(store),
           "--scheduler", address, "--quiet", "--set", f"data.fr={fr}", "--set", f"motion.save_movie={mode}"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return store, time.perf_counter() - t0


def measure(store: Path, mode: str, wall: float, truth: Truth) -> Figures:
    import dask

    from calcium_dask.datasets.scoring import frame_offset, score_mean_image, score_sources, shift_images
    from calcium_dask.motion.correct import corrected_movie
    from calcium_dask.results import open_results
    from calcium_dask.store import ResultsStore

    rs = ResultsStore(str(store))
    res = open_results(str(store))
    with dask.config.set(scheduler="threads"):
        shifts = res.motion["shifts"].values
        acc = np.flatnonzero(res.ds["accepted"].values)
        sc = score_sources(shift_images(truth.footprints, frame_offset(shifts, truth.shifts)), truth.C,
                           res.ds["footprints"].values[acc], np.asarray(res.ds["traces"].isel(unit=acc).values))
        mean = corrected_movie(rs).mean("frame").values
    corr = score_mean_image(mean, truth.clean_mean, offset=frame_offset(shifts, truth.shifts))["corr"]
    movie_dir = store / "movie" / "corrected"
    return Figures(mode, {k: float(v["seconds"]) for k, v in rs.stages().items()}, wall,
                   _du(movie_dir) if movie_dir.exists() else 0, _du(store), len(acc), float(sc["f1"]),
                   float(sc.get("trace_corr_median", np.nan)), float(corr))


def frame_error(stores: dict[str, Path], noise: float, frames: int = 200) -> dict[str, float]:
    """Largest |frame - float32 form's frame| over ``frames`` middle frames, in noise units."""
    import dask

    from calcium_dask.motion.correct import corrected_movie
    from calcium_dask.store import ResultsStore

    movies = {m: corrected_movie(ResultsStore(str(p))) for m, p in stores.items()}
    T = movies["float32"].sizes["frame"]
    sl = slice(max(T // 2 - frames // 2, 0), T // 2 + frames // 2)
    with dask.config.set(scheduler="threads"):
        ref = movies["float32"].isel(frame=sl).values
        return {m: float(np.abs(mv.isel(frame=sl).values - ref).max() / noise) for m, mv in movies.items()}


def print_table(runs: dict[str, list[Figures]], input_bytes: int) -> None:
    def med(mode: str, get) -> float:
        return float(np.median([get(f) for f in runs[mode]]))

    stages = list(runs["float32"][0].seconds)
    head = "mode     " + "".join(f"{s + ' s':>11}" for s in stages) + "     wall s  movie/in  store/in  accepted"
    print(head + "     F1  trace corr  mean corr")
    for m in runs:
        row = f"{m:<9}" + "".join(f"{med(m, lambda f, s=s: f.seconds.get(s, np.nan)):>11.1f}" for s in stages)
        row += f"{med(m, lambda f: f.wall):>11.1f}{med(m, lambda f: f.movie_bytes) / input_bytes:>10.3f}"
        row += f"{med(m, lambda f: f.store_bytes) / input_bytes:>10.3f}{med(m, lambda f: f.n_accepted):>10.0f}"
        row += f"{med(m, lambda f: f.f1):>7.3f}{med(m, lambda f: f.trace_corr):>12.3f}{med(m, lambda f: f.mean_corr):>11.5f}"
        print(row, flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--movie", type=Path, help="a movie with a truth.npz in the public benchmark's layout")
    ap.add_argument("--truth", type=Path)
    ap.add_argument("--preset", default="small", help="simulate this preset when no --movie is given")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="simulation parameter")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    args = ap.parse_args(argv)
    print("command: python benchmarks/bench_save_movie.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
          flush=True)
    import yaml

    from calcium_dask.datasets import SimulationParams, write_movie

    work = Path(tempfile.mkdtemp(prefix="bench-save-movie-"))
    try:
        if args.movie:
            movie, truth = args.movie, Truth.public(args.truth or args.movie.parent / "truth.npz")
        else:
            sets = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
            movie = work / "sim" / "movie.tif"
            write_movie(movie, SimulationParams.preset(args.preset, seed=args.seed, **sets))
            truth = Truth.simulated(movie.parent / "truth.npz")
        T, H, W = truth.C.shape[1], *truth.clean_mean.shape
        input_bytes = T * H * W * 2
        runs: dict[str, list[Figures]] = {m: [] for m in args.modes}
        cluster = Cluster(2, "2GB", work).start()
        try:
            for _ in range(args.repeats):
                stores = {}
                for m in args.modes:
                    stores[m], wall = run_mode(movie, truth.fr, m, work, cluster.address)
                    runs[m].append(measure(stores[m], m, wall, truth))
        finally:
            cluster.stop()
        print_table(runs, input_bytes)
        if "float32" in stores:
            err = frame_error(stores, truth.noise)
            print("largest |frame - float32 frame| over 200 middle frames, in read-noise SDs: "
                  + ", ".join(f"{m} {e:.3f}" for m, e in err.items()))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
