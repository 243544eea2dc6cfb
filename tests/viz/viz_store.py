"""A tiny results store written directly (no pipeline run): 3 units on 32x32, 100 frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from calcium_dask.params import Params
from calcium_dask.store import ResultsStore

T, H, W = 100, 32, 32
CENTRES = ((8, 8), (20, 12), (14, 24))
ACCEPTED = np.array([True, True, False])
STRIDES, OVERLAPS = (16, 16), (8, 8)  # patches of 24: starts 0 and 8, centres 11.5 and 19.5
PARAMS = Params().replace(**{"pw_rigid": True, "strides": STRIDES, "overlaps": OVERLAPS, "rf": 8, "stride": 4,
                             "fr": 10.0})


def footprints() -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    fp = [np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.5**2)) for cy, cx in CENTRES]
    return np.where(np.array(fp) > 0.05, np.array(fp), 0).astype(np.float32)


def traces(rng: np.random.Generator) -> np.ndarray:
    spikes = (rng.random((len(CENTRES), T)) < 0.05).astype(np.float32)
    kernel = 0.9 ** np.arange(30)
    return np.array([np.convolve(s, kernel)[:T] for s in spikes], np.float32)


def root_dataset(rng: np.random.Generator, *, evaluated: bool = True) -> xr.Dataset:
    c = traces(rng)
    data = {"footprints": (("unit", "y", "x"), footprints()), "traces": (("unit", "frame"), c),
            "residuals": (("unit", "frame"), (0.1 * rng.standard_normal(c.shape)).astype(np.float32)),
            "spikes": (("unit", "frame"), np.maximum(np.diff(c, prepend=0), 0)),
            "background_footprints": (("background", "y", "x"), np.ones((1, H, W), np.float32)),
            "background_traces": (("background", "frame"), np.ones((1, T), np.float32))}
    if evaluated:
        data.update(snr=(("unit",), np.array([5.0, 3.0, 1.0], np.float32)),
                    r_value=(("unit",), np.array([0.9, 0.85, 0.2], np.float32)),
                    cnn_pred=(("unit",), np.array([0.95, 0.5, 0.05], np.float32)),
                    accepted=(("unit",), ACCEPTED),
                    dff=(("unit", "frame"), (c / 2.0).astype(np.float32)))
    return xr.Dataset(data, coords={"unit": np.arange(len(CENTRES))})


def motion_dataset(rng: np.random.Generator, template: np.ndarray) -> xr.Dataset:
    shifts = np.cumsum(0.2 * rng.standard_normal((T, 2)), 0).astype(np.float32)
    patch = shifts[:, None, None, :] + 0.3 * rng.standard_normal((T, 2, 2, 2)).astype(np.float32)
    c = np.array([11.5, 19.5], np.float32)
    return xr.Dataset({"shifts": (("frame", "axis"), shifts), "peak": (("frame",), np.ones(T, np.float32)),
                       "patch_shifts": (("frame", "patch_y", "patch_x", "axis"), patch),
                       "template": (("y", "x"), template)},
                      coords={"axis": np.array(["y", "x"], dtype=object), "patch_y": c, "patch_x": c})


def summary_dataset(movie: np.ndarray) -> xr.Dataset:
    images = {"mean": movie.mean(0), "max": movie.max(0), "std": movie.std(0),
              "correlation": movie.std(0) / movie.std(0).max()}
    return xr.Dataset({k: (("y", "x"), v.astype(np.float32)) for k, v in images.items()})


def write_store(path: Path, *, cnmf: bool = True, evaluated: bool = True, seed: int = 0,
                group: str | None = None) -> ResultsStore:
    """Write the tiny store (or one field of view's ``group`` of it); ``cnmf=False`` stops
    after motion correction."""
    rng = np.random.default_rng(seed)
    root = root_dataset(rng, evaluated=evaluated)
    movie = (np.einsum("kyx,kt->tyx", root["footprints"].values, root["traces"].values) + 1.0
             + 0.05 * rng.standard_normal((T, H, W))).astype(np.float32)
    store = ResultsStore(str(path), group=group)
    store.write(xr.Dataset({"corrected": (("frame", "y", "x"), movie)}), group="movie")
    store.write(motion_dataset(rng, movie.mean(0)), group="motion")
    store.write(summary_dataset(movie), group="summary")
    store.write(summary_dataset(np.roll(movie, 1, axis=2)), group="summary_raw")
    if cnmf:
        store.write_root(root)
    store.set_attrs(params=PARAMS.to_dict(), version="0.1.0", input="sim/movie.tif", shape=[T, H, W], fr=10.0)
    store.mark_complete("motion", 1.5, frames_per_s=66.7)
    if cnmf:
        store.mark_complete("cnmf", 4.25, units=3)
    if cnmf and evaluated:
        store.mark_complete("evaluate", 0.5, accepted=2, rejected=1)
    return store
