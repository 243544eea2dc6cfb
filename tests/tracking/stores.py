"""Results stores made from simulated sessions' ground truth (no CNMF): the units are the
active neurons' true footprints, the summary images those of the simulated movies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from calcium_dask.datasets import SimulationParams
from calcium_dask.datasets.sessions import SessionsParams, SessionsTruth, simulate_sessions
from calcium_dask.params import Params
from calcium_dask.store import ResultsStore
from calcium_dask.summary.kernels import finalize, partial_sums


def write_store(path: Path | str, footprints: np.ndarray, mean: np.ndarray | None, correlation: np.ndarray | None,
                *, dxy: float | None = 1.0, accepted: np.ndarray | None = None, frames: int = 50,
                stages: bool = True) -> str:
    """A results store with ``footprints`` (K, H, W) and summary images (dF/F: each unit's index)."""
    K, H, W = footprints.shape
    dff = np.repeat(np.arange(K, dtype=np.float32)[:, None], frames, 1)
    ds = xr.Dataset({"footprints": (("unit", "y", "x"), footprints.astype(np.float32)),
                     "dff": (("unit", "frame"), dff),
                     "traces": (("unit", "frame"), dff)},
                    coords={"unit": np.arange(K)})
    if accepted is not None:
        ds["accepted"] = ("unit", np.asarray(accepted, bool))
    store = ResultsStore(str(path))
    store.write(ds)
    if mean is not None:
        store.write(xr.Dataset({"mean": (("y", "x"), mean.astype(np.float32)),
                                "correlation": (("y", "x"), correlation.astype(np.float32))}), group="summary")
    params = Params().to_dict()
    if dxy is not None:
        params["data"]["dxy"] = [dxy, dxy]
    else:
        del params["data"]["dxy"]
    marks = {"motion": {}, "cnmf": {}, **({"evaluate": {}} if accepted is not None else {})} if stages else None
    store.set_attrs(params=params, **({"stages": marks} if marks is not None else {}))
    return store.url


def simulated_stores(root: Path, n_sessions: int = 3, *, size: int = 96, T: int = 150, seed: int = 0,
                     **session_kw) -> tuple[list[str], SessionsTruth, list[np.ndarray]]:
    """Stores of the active neurons of each simulated day (no in-session motion).

    Returns the store URLs, the sessions' truth and, per day, the day-neuron index of
    each unit of its store.
    """
    movie = SimulationParams.preset("small", T=T, H=size, W=size, K=int(40 * size * size / 128 ** 2), seed=seed,
                                    rigid_max=0.0, nonrigid_max=0.0)
    days, truth = simulate_sessions(SessionsParams(movie, n_sessions=n_sessions, **session_kw))
    urls, units = [], []
    for d, (mov, tr) in enumerate(days):
        s = finalize(partial_sums(mov.astype(np.float32)))
        fp = tr.footprints
        keep = np.flatnonzero(~truth.silent[d] & (fp.reshape(len(fp), -1).max(1) > 0.2))
        urls.append(write_store(root / f"day{d}.zarr", fp[keep], s["mean"], s["correlation"]))
        units.append(keep)
    return urls, truth, units
