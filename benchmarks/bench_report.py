"""The HTML report of a long session against the demo's: time to write it, its size, and the
time Chromium takes to open and draw it (issue 20: a 200,000-frame report opens as fast as
the demo's).

    python benchmarks/bench_report.py --factor 200 --repeats 3

A demo-sized movie (128x128, 1,000 frames) is simulated and run through the pipeline; a long
store is then made from it by repeating every per-frame array of the results (traces,
spikes, residuals, dF/F, background traces, the motion records) ``--factor`` times along
``frame`` (written chunk by chunk, in the results' own chunks; the report never reads the
movie). Each report is written with ``calcium-dask report`` and opened in Debian's Chromium
(playwright) until every Bokeh document has drawn its canvases, the two reports in turn,
``--repeats`` times. Stores and reports are deleted at the end.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]


def short_store(work: Path, seed: int) -> Path:
    import calcium_dask as cd
    from calcium_dask.cli import demo_params
    from calcium_dask.compute import set_quiet
    from calcium_dask.datasets import SimulationParams, write_movie
    from calcium_dask.pipeline import run_pipeline

    movie = work / "sim" / "movie.tif"
    sim = SimulationParams.preset("small", seed=seed)
    write_movie(movie, sim)
    set_quiet(True)
    out = work / "short.zarr"
    with cd.connect(n_workers=2, memory_limit="2GB", dashboard_address=None, quiet=True):
        run_pipeline(str(movie), str(out), demo_params(sim.fr))
    return out


def long_store(short: Path, out: Path, factor: int) -> None:
    """``short`` with every per-frame array repeated ``factor`` times along ``frame``."""
    import xarray as xr
    import zarr

    shutil.copytree(short, out)
    root = zarr.open_group(str(short), mode="r")
    for group in ["", *[g for g in ("motion", "movie") if g in root]]:
        ds = xr.open_zarr(str(short), group=group or None, consolidated=False)
        framed = [v for v in ds.data_vars if "frame" in ds[v].dims]
        if not framed or group == "movie":
            continue
        n = ds.sizes["frame"]
        long = xr.concat([ds[framed]] * factor, dim="frame", data_vars="all", coords="minimal",
                         compat="override")
        long = long.assign_coords(frame=np.arange(n * factor)) if "frame" in ds.coords else long
        enc = {}
        for v in framed:
            chunks = ds[v].encoding.get("chunks") or ds[v].shape
            c = dict(zip(ds[v].dims, chunks))
            c["frame"] = min(10_000, n * factor)
            long[v] = long[v].chunk(c)
            enc[v] = {"chunks": tuple(c[d] for d in ds[v].dims)}
        for v in framed:
            shutil.rmtree(out / group / v, ignore_errors=True)
        if "frame" in ds.coords:
            shutil.rmtree(out / group / "frame", ignore_errors=True)
        long.to_zarr(str(out), group=group or None, mode="a", encoding=enc, consolidated=False)


def write_report(store: Path) -> tuple[Path, float]:
    html = store.with_suffix(".html")
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "calcium-dask"), "report", str(store), "-o", str(html)],
                   check=True, stdout=subprocess.DEVNULL)
    return html, time.perf_counter() - t0


def open_seconds(browser, html: Path) -> float:
    """From navigation to every Bokeh document's canvases drawn."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    t0 = time.perf_counter()
    page.goto(html.as_uri(), wait_until="load")
    page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length >= 2", timeout=60000)
    page.locator("canvas").nth(2).wait_for(state="attached", timeout=60000)  # in Bokeh's shadow roots
    seconds = time.perf_counter() - t0
    page.close()
    return seconds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--factor", type=int, default=200, help="the long store's frames over the demo's 1,000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    print("command: python benchmarks/bench_report.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
          flush=True)
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        short = short_store(work, args.seed)
        long = work / "long.zarr"
        long_store(short, long, args.factor)
        frames = {s: int(__import__("zarr").open_group(str(s), mode="r")["traces"].shape[1]) for s in (short, long)}
        reports = {s: write_report(s) for s in (short, long)}
        times: dict[Path, list[float]] = {short: [], long: []}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for _ in range(args.repeats):
                for s in (short, long):
                    times[s].append(open_seconds(browser, reports[s][0]))
            browser.close()
        print(f"{'frames':>9} {'write s':>8} {'HTML MB':>8} {'open s (median)':>16}")
        for s in (short, long):
            html, wrote = reports[s]
            print(f"{frames[s]:>9} {wrote:>8.1f} {html.stat().st_size / 2**20:>8.2f} "
                  f"{float(np.median(times[s])):>16.2f}   (each: {', '.join(f'{t:.2f}' for t in times[s])})")
        a, b = (float(np.median(times[s])) for s in (short, long))
        print(f"open time, long over demo: {b / a:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
