"""Every tracking parameter does what it says: changed alone, the tracking of three simulated
days changes (the registration is deterministic, so a difference is the parameter's)."""

from __future__ import annotations

import numpy as np
import pytest

import calcium_dask as cd
from calcium_dask.params import Params

from .stores import write_store

# parameter -> (a value that must change the tracking of the three days, base overrides
# that let it act: min_link decides only when pairwise matches disagree, as a strict
# thresh_cost makes some of them)
CHANGES = {
    "tracking.reference": (0, {}),
    "tracking.align_image": ("both", {}),
    "tracking.max_rotation": (0.0, {}),
    "tracking.align_nonrigid": (False, {}),
    "tracking.nonrigid_spacing": (16.0, {}),
    "tracking.max_deformation": (0.0, {}),
    "tracking.min_overlap": (0.99, {}),
    "tracking.min_align_corr": (0.99, {}),
    "tracking.mask_thr": (0.6, {}),
    "tracking.overlap": ("cosine", {}),
    "tracking.max_dist": (1.0, {}),
    "tracking.dist_weight": (2.0, {}),
    "tracking.thresh_cost": (0.1, {}),
    "tracking.min_link": (1.0, {"tracking.thresh_cost": 0.3}),
}


def _outcome(tracking) -> dict[str, np.ndarray]:
    ds = tracking.ds
    return {name: np.asarray(ds[name].values) for name in ds.data_vars
            if name not in ("footprints", "mean", "correlation", "session_url")} | {
        "reference": np.array(tracking.reference), "errors": np.array(sorted(tracking.errors))}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.shape(a[k]) == np.shape(b[k]) and np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f")
        for k in a)


def test_the_registration_is_deterministic(three_days):
    urls = three_days[0]
    assert _same(_outcome(cd.register_sessions(urls, Params())), _outcome(cd.register_sessions(urls, Params())))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("key", sorted(CHANGES))
def test_each_tracking_parameter_changes_the_tracking(three_days, key):
    from calcium_dask.tracking import TrackingError

    value, base = CHANGES[key]
    before = _outcome(cd.register_sessions(three_days[0], Params().replace(**base)))
    try:
        changed = _outcome(cd.register_sessions(three_days[0], Params().replace(**base, **{key: value})))
    except TrackingError as e:  # every session refused: as much a change as any
        assert key in ("tracking.min_overlap", "tracking.min_align_corr"), e
        return
    assert not _same(changed, before), f"{key}={value!r} changed nothing"


def test_only_accepted_tracks_the_rejected_units_too(three_days, tmp_path):
    """``tracking.only_accepted``: a rejected unit is left out by default, tracked without it."""
    from calcium_dask.results import open_results

    urls = []
    for d, url in enumerate(three_days[0]):
        ds = open_results(url).ds
        fp = ds["footprints"].values
        accepted = np.ones(len(fp), bool)
        accepted[0] = False
        urls.append(write_store(tmp_path / f"day{d}.zarr", fp, None, None, accepted=accepted))
    for d, url in enumerate(urls):  # the summary images the registration aligns
        from calcium_dask.store import ResultsStore

        ResultsStore(url).write(ResultsStore(three_days[0][d]).read("summary").load(), group="summary")
    only = cd.register_sessions(urls, Params())
    every = cd.register_sessions(urls, Params().replace(**{"tracking.only_accepted": False}))
    assert all(0 not in only.assignments[:, s] for s in range(3))
    assert all(0 in every.assignments[:, s] for s in range(3))
