"""Time CNMF on one patch held in memory (``fit_patch``), the unit of work of the patch stage.

    python benchmarks/bench_patch.py                       # CaImAn's demo patch: 31 x 31, 3000 frames
    python benchmarks/bench_patch.py --frames 6000 --repeat 5

The patch (four planted neurons, K=4, gSig=4, p=1, nb=2, as CaImAn's demo notebook sets
them for rf=15) comes from the CNMF tests' simulator. The first call warms the caches (numba,
BLAS) and is reported apart; the planted neurons' recovery is reported so that a fast but
wrong fit shows. The figure once asserted by a test (under 1 s per patch) is printed here
instead, where a busy machine cannot fail a test.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CENTERS = ((8, 8), (9, 22), (22, 12), (24, 20))


def main(argv: list[str] | None = None) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))  # the tests' patch simulator
    from tests.cnmf.cnmf_sim import match, simulate

    from calcium_dask.cnmf.kernels.fit import fit_patch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--side", type=int, default=31, help="patch side, pixels (2 rf + 1)")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls after the warm-up call")
    a = ap.parse_args(argv)
    print("command: python " + " ".join(shlex.quote(x) for x in [sys.argv[0], *(argv or sys.argv[1:])]))
    scale = a.side / 31
    centers = tuple((round(y * scale), round(x * scale)) for y, x in CENTERS)
    s = simulate(T=a.frames, dims=(a.side, a.side), centers=centers, nb=2)
    opts = dict(K=4, gSig=4, p=1, nb=2)
    t0 = time.perf_counter()
    fit_patch(s.Y, **opts)
    first = time.perf_counter() - t0
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        res = fit_patch(s.Y, **opts)
        times.append(time.perf_counter() - t0)
    _, cc = match(res.A, s.A)
    row = {"first": first, "median": statistics.median(times), "min": min(times), "max": max(times),
           "footprint_corr_min": float(cc.min())}
    print("side frames first_s median_s min_s max_s footprint_corr_min")
    print(f"{a.side} {a.frames} {first:.3f} {row['median']:.3f} {row['min']:.3f} {row['max']:.3f} "
          f"{row['footprint_corr_min']:.3f}")
    return row


if __name__ == "__main__":
    main()
