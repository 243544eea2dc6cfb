"""Tracking neurons across sessions: accuracy after the full pipeline on simulated days, and
the scaling of matching (issue 23).

    python benchmarks/bench_tracking.py --settings caiman2 three hard --seeds 1 2 3 --no-scaling --dir /tmp/bt --keep
    python benchmarks/bench_tracking.py --settings ten --seeds 1 2 --dir /tmp/bt   # then the scaling check
    python benchmarks/bench_tracking.py --scaling-only --scaling 20 2000

For each setting, several days of one field of view are simulated (calcium_dask.datasets.sessions:
the field shifted, rotated and smoothly deformed from day to day, 15 % of the neurons silent
on a day, a few new ones, footprints reshaped), the full pipeline runs on each day
(run_pipeline with CaImAn's demo-notebook parameters on a local cluster of 2 workers of 2 GB),
and the days' accepted units are registered with the default parameters. Scores:

- precision and recall of the matched pairs among units found on both days (a unit is
  "found" when it matches a true neuron of its day at IoU >= 0.3, the truth moved into the
  corrected frame), over every pair of days;
- the fraction of the neurons found on all days that are tracked as one unit.

Targets: precision >= 0.99, recall >= 0.98, one unit >= 0.95. CaImAn's register_ROIs with its
defaults reaches precision 1.00 and recall 0.976 on two days of 3 degrees, 12 px and a smooth
2 px warp (the issue's figures; CaImAn is not installed here). The scaling check matches
20 sessions of 2,000 synthetic units (no CNMF, no alignment) and prints time and peak memory.

Simulated movies and per-day results are kept in --dir between runs (a rerun skips them);
without --keep the directory is deleted at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

#: name -> (sessions, SessionsParams overrides)
SETTINGS = {
    "caiman2": (2, dict(max_shift=12.0, max_rotation=3.0, max_deformation=2.0, at_bounds=True)),
    "three": (3, dict()),
    "ten": (10, dict()),
    "hard": (3, dict(max_shift=40.0, max_rotation=8.0, max_deformation=5.0, shape_change=0.2, at_bounds=True)),
}
CAIMAN = "CaImAn register_ROIs (issue's figures, 2 days of 3 deg, 12 px, 2 px warp): precision 1.00, recall 0.976"


# -- simulation and the pipeline --------------------------------------------------------------
def simulate(root: Path, setting: str, seed: int, size: int, frames: int) -> Path:
    from calcium_dask.datasets import SimulationParams
    from calcium_dask.datasets.sessions import SESSIONS_NAME, SessionsParams, write_sessions

    n, over = SETTINGS[setting]
    movie = SimulationParams.preset("small", T=frames, H=size, W=size, K=int(round(40 * size * size / 128 ** 2)),
                                    seed=seed)
    sp = SessionsParams(movie, n_sessions=n, **over)
    digest = hashlib.sha256(json.dumps(sp.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    d = root / f"{setting}_{size}_{frames}_{seed}_{digest}"  # other settings: another folder
    if not (d / SESSIONS_NAME).exists():
        write_sessions(d, sp)
    return d


def run_days(d: Path, n: int) -> list[str]:
    """The pipeline on each day (skipped for a day whose store is complete)."""
    from calcium_dask.cli import demo_params
    from calcium_dask.datasets import GroundTruth
    from calcium_dask.pipeline import run_pipeline
    from calcium_dask.store import ResultsStore

    urls = []
    for day in range(n):
        movie, out = d / f"day{day}" / "movie.tif", d / f"day{day}" / "results.zarr"
        if not ResultsStore(str(out)).is_complete("evaluate"):
            sp = GroundTruth.load(d / f"day{day}" / "truth.npz").params
            max_shift = max(6, int(np.ceil(sp.rigid_max + sp.nonrigid_max)))
            params = demo_params(sp.fr).replace(**{"motion.max_shifts": (max_shift, max_shift)})
            run_pipeline(str(movie), str(out), params)
        urls.append(str(out))
    return urls


# -- scoring ---------------------------------------------------------------------------------------
def found_units(d: Path, urls: list[str]) -> list[dict[int, int]]:
    """Per day: accepted unit (position in its store) -> the world identity of the true neuron
    it matches (units matching none are left out)."""
    from calcium_dask.datasets import GroundTruth
    from calcium_dask.datasets.sessions import SessionsTruth
    from calcium_dask.store import ResultsStore
    from calcium_dask.datasets.scoring import frame_offset, match_footprints, shift_images

    sessions = SessionsTruth.load(d / "sessions.npz")
    out = []
    for day, url in enumerate(urls):
        store = ResultsStore(url)
        truth = GroundTruth.load(d / f"day{day}" / "truth.npz")
        shifts = store.read("motion")["shifts"].values
        truth_fp = shift_images(truth.footprints, frame_offset(shifts, truth.shifts))
        ds = store.read()
        acc = np.flatnonzero(ds["accepted"].values)
        pairs = match_footprints(truth_fp, ds["footprints"].values[acc])
        out.append({int(acc[j]): int(sessions.identities[day][i]) for i, j in pairs})
    return out


def score(tracking, found: list[dict[int, int]]) -> dict[str, float]:
    """Pair precision and recall among units found on both days; one-unit fraction."""
    S = len(found)
    tp = n_pred = n_true = outside = 0
    for a, b in itertools.combinations(range(S), 2):
        ia, ib = found[a], found[b]
        both = set(ia.values()) & set(ib.values())
        ua = {u for u, x in ia.items() if x in both}
        ub = {u for u, x in ib.items() if x in both}
        true = {(u, v) for u in ua for v in ub if ia[u] == ib[v]}
        pred_all = {(int(u), int(v)) for u, v in tracking.matched_pairs(a, b)}
        pred = {(u, v) for u, v in pred_all if u in ua and v in ub}
        outside += len(pred_all) - len(pred)
        tp, n_pred, n_true = tp + len(true & pred), n_pred + len(pred), n_true + len(true)
    everywhere = set.intersection(*(set(f.values()) for f in found))
    A = tracking.assignments
    rows = {tuple(int(v) for v in r) for r in A}
    one = 0
    for x in everywhere:
        units = tuple(next(u for u, y in found[s].items() if y == x) for s in range(S))
        one += units in rows
    # also every neuron found on two days or more: all its units in one tracked unit, alone
    where = {}
    for s, f in enumerate(found):
        for u, x in f.items():
            where.setdefault(x, {})[s] = u
    several = [w for w in where.values() if len(w) > 1]
    together = 0
    for w in several:
        hit = [r for r in A if all(r[s] == u for s, u in w.items())]
        together += bool(hit)
    return {"precision": tp / max(n_pred, 1), "recall": tp / max(n_true, 1), "pairs_true": n_true,
            "pairs_pred": n_pred, "pairs_with_other_units": outside, "found_all": len(everywhere),
            "one_unit": one / max(len(everywhere), 1), "found_several": len(several),
            "one_unit_several": together / max(len(several), 1)}


def truth_transforms(d: Path) -> str:
    from calcium_dask.datasets.sessions import SessionsTruth

    t = SessionsTruth.load(d / "sessions.npz")
    rot = max(abs(a - b) for a, b in itertools.combinations(t.rotation, 2))
    shift = max(float(np.hypot(*(a - b))) for a, b in itertools.combinations(t.shift, 2))
    return f"largest day-to-day rotation {rot:.2f} deg, shift {shift:.1f} px"


def bench_setting(root: Path, setting: str, seed: int, size: int, frames: int) -> dict[str, float]:
    import calcium_dask as cd
    from calcium_dask.tracking import SessionProblem

    n = SETTINGS[setting][0]
    d = simulate(root, setting, seed, size, frames)
    t0 = time.perf_counter()
    urls = run_days(d, n)
    pipeline_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SessionProblem)
        tracking = cd.register_sessions(urls, out=str(d / "tracking.zarr"))
    register_s = time.perf_counter() - t0
    sc = score(tracking, found_units(d, urls))
    problems = "; ".join(str(w.message) for w in caught if issubclass(w.category, SessionProblem)) or "none"
    print(f"\n{setting} seed {seed}: {n} sessions of {frames} frames of {size}x{size}; {truth_transforms(d)}")
    print(f"  pipeline on the days {pipeline_s:.0f} s (0 when cached), registration {register_s:.1f} s; "
          f"session problems: {problems}")
    print(f"  units tracked per day: {[int((tracking.assignments[:, s] >= 0).sum()) for s in range(n)]}; "
          f"image corr after alignment: {np.round(tracking.ds['align_corr'].values, 3).tolist()}")
    print(f"  pairs among units found on both days: precision {sc['precision']:.4f}, recall {sc['recall']:.4f} "
          f"({sc['pairs_true']} true pairs, {sc['pairs_pred']} matched; {sc['pairs_with_other_units']} matched "
          "pairs involve a unit that is no true neuron or not found on both days)")
    print(f"  neurons found on all days tracked as one unit: {sc['one_unit']:.4f} of {sc['found_all']}; found on "
          f"two days or more, all their units in one tracked unit: {sc['one_unit_several']:.4f} of "
          f"{sc['found_several']}")
    return sc


# -- scaling: matching many synthetic sessions -----------------------------------------------------
def synthetic_sessions(n_sessions: int, n_units: int, size: int, seed: int = 0):
    """Sessions of synthetic units on one canvas (identity alignment): the same cells each
    session, moved by up to ~1 px, reshaped by 10 %, 15 % missing, 5 % new."""
    import scipy.sparse as sp

    from calcium_dask.tracking.kernels import Alignment, centroids, masks
    from calcium_dask.tracking.register import IDENTITY, AlignedSession
    from calcium_dask.tracking.sessions import SessionData

    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    world = int(n_units * 1.1)
    centres = np.zeros((0, 2))
    while len(centres) < world:  # somata do not overlap: centres at least 11 px apart
        cand = rng.uniform(8, size - 8, (world, 2))
        for c in cand:
            if len(centres) == world:
                break
            if len(centres) == 0 or not cKDTree(centres).query_ball_point(c, 11.0):
                centres = np.vstack([centres, c])
    radii = rng.uniform(4, 5, world)
    first = np.where(rng.random(world) < 0.05, rng.integers(1, n_sessions, world), 0)
    h = 9
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    out, identities = [], []
    for s in range(n_sessions):
        ids = np.flatnonzero((rng.random(world) > 0.15) & (first <= s))
        c = centres[ids] + rng.normal(0, 0.5, (ids.size, 2))
        r = radii[ids] * np.exp(rng.normal(0, 0.1, ids.size))
        base = np.floor(c).astype(int)
        dy, dx = (yy[None] + base[:, 0, None, None] - c[:, 0, None, None],
                  xx[None] + base[:, 1, None, None] - c[:, 1, None, None])
        vals = 1 / (1 + np.exp((np.hypot(dy, dx) / r[:, None, None] - 1) * r[:, None, None] / 0.7))
        py, px = yy[None] + base[:, 0, None, None], xx[None] + base[:, 1, None, None]
        ok = (vals > 0.01) & (py >= 0) & (py < size) & (px >= 0) & (px < size)
        k = np.broadcast_to(np.arange(ids.size)[:, None, None], ok.shape)
        A = sp.csc_matrix((vals[ok].astype(np.float32), ((py * size + px)[ok], k[ok])), shape=(size * size, ids.size))
        data = SessionData(f"s{s}", None, (size, size), None, sp.csc_matrix((size * size, ids.size), dtype=np.float32),
                           np.arange(ids.size), ids.size, None, None)
        out.append(AlignedSession(data, Alignment(IDENTITY.copy(), None, 1.0, 1.0, 1.0), None, A,
                                  centroids(A, (size, size)), masks(A, 0.2), None, None,
                                  np.ones(size * size, bool), (size, size)))
        identities.append(ids)
    return out, identities


class PeakRSS:
    """The process's resident memory, sampled every 10 ms by a thread, at entry and at its peak."""

    def __enter__(self) -> PeakRSS:
        import threading

        import psutil

        self._proc, self._stop = psutil.Process(), threading.Event()
        self.start = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def bench_scaling(n_sessions: int, n_units: int, size: int) -> None:
    import dask

    from calcium_dask.params import Params
    from calcium_dask.compute import set_quiet
    from calcium_dask.tracking.register import match_and_track

    set_quiet(True)
    aligned, identities = synthetic_sessions(n_sessions, n_units, size)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        with dask.config.set(scheduler="threads", num_workers=2):
            _, tracks = match_and_track(aligned, Params().tracking)
        seconds = time.perf_counter() - t0
    A = tracks.assignments
    tp = n_pred = n_true = 0
    for a, b in itertools.combinations(range(n_sessions), 2):
        ia, ib = identities[a], identities[b]
        true = {(int(i), int(j)) for x in set(ia) & set(ib)
                for i, j in [(np.flatnonzero(ia == x)[0], np.flatnonzero(ib == x)[0])]}
        pred = {(int(u), int(v)) for u, v in A[:, [a, b]][(A[:, [a, b]] >= 0).all(1)]}
        tp, n_pred, n_true = tp + len(true & pred), n_pred + len(pred), n_true + len(true)
    everywhere = set.intersection(*(set(i.tolist()) for i in identities))
    rows = {tuple(int(v) for v in r) for r in A}
    one = sum(tuple(int(np.flatnonzero(identities[s] == x)[0]) for s in range(n_sessions)) in rows
              for x in everywhere)
    units = sum(len(i) for i in identities)
    print(f"\nscaling: {n_sessions} sessions of ~{n_units} synthetic units on {size}x{size} "
          f"({units} units, {n_sessions * (n_sessions - 1) // 2} pairs of sessions matched, 2 threads)")
    print(f"  matching + consistent identities: {seconds:.1f} s; memory of the process (RSS sampled every "
          f"10 ms) {mem.start / 2**20:.0f} MiB before (the sessions' sparse footprints held), peak "
          f"{mem.peak / 2**20:.0f} MiB (+{(mem.peak - mem.start) / 2**20:.0f}); a dense cost matrix over all "
          f"units would be {units ** 2 * 8 / 2**30:.1f} GiB")
    print(f"  pairs: precision {tp / max(n_pred, 1):.4f}, recall {tp / max(n_true, 1):.4f}; "
          f"units present in all sessions tracked as one: {one / max(len(everywhere), 1):.4f} of {len(everywhere)}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", nargs="+", default=["caiman2", "three", "ten", "hard"], choices=sorted(SETTINGS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--workers", type=int, default=2, help="workers of the local cluster (2 GB each)")
    ap.add_argument("--scaling", type=int, nargs=2, default=(20, 2000), metavar=("SESSIONS", "UNITS"))
    ap.add_argument("--scaling-size", type=int, default=1024, help="field of the synthetic units, pixels")
    ap.add_argument("--scaling-only", action="store_true")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--dir", default=None, help="keeps movies and per-day results between runs")
    ap.add_argument("--keep", action="store_true", help="do not delete --dir at the end")
    a = ap.parse_args(argv)
    print("command: python " + " ".join(shlex.quote(x) for x in [sys.argv[0], *(argv if argv is not None
                                                                                  else sys.argv[1:])]))
    print("(timings on a shared machine: 2 cores, other jobs running)")
    root = Path(a.dir or tempfile.mkdtemp(prefix="bench_tracking_"))
    results = {}
    try:
        if not a.scaling_only:
            import calcium_dask as cd
            from calcium_dask.compute import set_quiet

            set_quiet(True)
            print(CAIMAN)
            with cd.connect(n_workers=a.workers, memory_limit="2GB", dashboard_address=None, quiet=True) as client:
                for setting in a.settings:
                    for seed in a.seeds:
                        results[(setting, seed)] = bench_setting(root, setting, seed, a.size, a.frames)
                client.cluster.close()
        if not a.no_scaling:
            bench_scaling(*a.scaling, a.scaling_size)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
