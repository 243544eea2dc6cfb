"""Static views: each returns the Axes/Figure it drew, with the expected artists."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle

from calcium_dask.cnmf.kernels.grid import patch_boxes
from calcium_dask.results import open_results
from calcium_dask.viz import (plot_contours, plot_metrics, plot_patch_grid, plot_shifts, plot_summary, plot_traces,
                              view_quilt)
from calcium_dask.viz._data import STATUS_COLORS

from .viz_store import ACCEPTED, OVERLAPS, STRIDES, T


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def unit_lines(ax) -> dict[str, LineCollection]:
    return {c.get_gid(): c for c in ax.collections if str(c.get_gid()).startswith("unit-")}


def notes(ax) -> list[str]:
    return [t.get_text() for t in ax.texts if t.get_gid() == "note"]


def gids(ax, prefix: str) -> list[str]:
    return [a.get_gid() for a in ax.get_children() if str(a.get_gid()).startswith(prefix)]


def test_contours_one_line_per_unit_coloured_by_status(store):
    ax = plot_contours(store.url)
    lines = unit_lines(ax)
    assert sorted(lines) == ["unit-0", "unit-1", "unit-2"]
    for k, accepted in enumerate(ACCEPTED):
        colour = STATUS_COLORS["accepted" if accepted else "rejected"]
        assert tuple(lines[f"unit-{k}"].get_colors()[0]) == to_rgba(colour)
        assert len(lines[f"unit-{k}"].get_segments()) >= 1
    assert ax.images and ax.get_legend() is not None


@pytest.mark.parametrize(("which", "expected"), [("accepted", ["unit-0", "unit-1"]), ("rejected", ["unit-2"]),
                                                 ([2, 0], ["unit-0", "unit-2"])])
def test_contours_which(store, which, expected):
    assert sorted(unit_lines(plot_contours(open_results(store.url), which=which))) == expected


def test_contours_before_evaluation_and_without_units(unevaluated_store, motion_only_store):
    lines = unit_lines(plot_contours(unevaluated_store, image="mean"))
    assert len(lines) == 3
    assert {tuple(c.get_colors()[0]) for c in lines.values()} == {to_rgba(STATUS_COLORS["unevaluated"])}
    assert notes(plot_contours(motion_only_store.url)) != []


def test_shifts_rigid_and_patches(store):
    fig = plot_shifts(store.url)
    assert len(fig.axes) == 2
    for ax, axis in zip(fig.axes, "yx"):
        (rigid,) = [ln for ln in ax.lines if ln.get_gid() == f"rigid-{axis}"]
        assert len(rigid.get_xdata()) == T
        (patches,) = [c for c in ax.collections if c.get_gid() == f"patch-shifts-{axis}"]
        assert len(patches.get_segments()) == 4  # 2 x 2 patches


def test_shifts_rigid_only_and_missing(store, motion_only_store):
    motion = store.read("motion").drop_vars("patch_shifts")
    fig, ax = plt.subplots()
    assert plot_shifts(motion, ax=ax) is fig
    assert len(ax.lines) == 2 and not ax.collections
    assert ax.get_ylabel() == "shift (pixels)" and ax.get_legend() is not None
    from calcium_dask.viz._data import Loaded

    assert notes(plot_shifts(Loaded()).axes[0])


def test_patch_grid_from_store_and_from_template(store):
    ax = plot_patch_grid(store.url)
    assert len(gids(ax, "motion-patch")) == 4
    boxes = sorted((r.get_x(), r.get_y(), r.get_width()) for r in ax.patches if isinstance(r, Rectangle))
    assert boxes[0] == (-0.5, -0.5, sum(STRIDES[:1]) + OVERLAPS[0])  # 24-pixel patches from the origin
    template = store.read("motion")["template"].values
    ax2 = plot_patch_grid(template, strides=(10, 10), overlaps=(4, 4))
    assert len(gids(ax2, "motion-patch")) == 3 * 3  # starts 0, 10 and the flush 18


def test_quilt_matches_cnmf_grid(store):
    assert len(gids(view_quilt(store), "cnmf-patch")) == len(patch_boxes((32, 32), 8, 4))
    assert len(gids(view_quilt(store, rf=6, stride=2), "cnmf-patch")) == len(patch_boxes((32, 32), 6, 2))
    assert len(gids(view_quilt(store, rf=None), "cnmf-patch")) == len(patch_boxes((32, 32), 8, 4))


def test_summary_before_after(store):
    fig = plot_summary(store.url)
    assert len(fig.axes) == 4 and all(len(ax.images) == 1 for ax in fig.axes)
    assert "crispness" in fig.axes[0].get_title()
    fig2 = plot_summary(None, store.read("summary"), images=("correlation",))
    assert notes(fig2.axes[0]) and len(fig2.axes[1].images) == 1


def test_traces_raw_denoised_and_dff(store, unevaluated_store):
    ax = plot_traces(store.url, [0, 1])
    assert sorted(ln.get_gid() for ln in ax.lines) == ["denoised-0", "denoised-1", "raw-0", "raw-1"]
    assert ax.get_xlabel() == "time (s)"  # fr is recorded in the store
    ax = plot_traces(store.url, "accepted", dff=True)
    assert sorted(ln.get_gid() for ln in ax.lines) == ["dff-0", "dff-1"]
    assert notes(plot_traces(unevaluated_store, 0, dff=True))
    assert notes(plot_traces(store.url, "rejected", dff=False)) == []


def test_metrics_histograms_with_thresholds(store, unevaluated_store):
    fig = plot_metrics(store.url)
    assert len(fig.axes) == 3
    assert [len([ln for ln in ax.lines if ln.get_gid() == "threshold"]) for ax in fig.axes] == [2, 2, 2]
    assert all(ax.patches for ax in fig.axes)
    assert all(notes(ax) for ax in plot_metrics(unevaluated_store).axes)


def test_views_never_write_into_the_store(store):
    before = sorted(p.relative_to(store.url) for p in __import__("pathlib").Path(store.url).rglob("*"))
    plot_contours(store.url)
    plot_traces(store.url, "all")
    after = sorted(p.relative_to(store.url) for p in __import__("pathlib").Path(store.url).rglob("*"))
    assert before == after


def test_bad_arguments_are_explained(store):
    with pytest.raises(ValueError, match="which must be"):
        plot_contours(store.url, which="good")
    with pytest.raises(IndexError, match="out of range"):
        plot_traces(store.url, [7])
    with pytest.raises(TypeError, match="expected a Results"):
        plot_contours(np.zeros((4, 4)))


def test_in_memory_results_with_synthetic_evaluation(unevaluated_store):
    """A Results object (no store attributes needed), evaluation fields added in memory."""
    res = open_results(unevaluated_store.url)
    res.ds = res.ds.assign(accepted=("unit", np.array([False, True, True])))
    lines = unit_lines(plot_contours(res, which="accepted"))
    assert sorted(lines) == ["unit-1", "unit-2"]
    kept = res.select_components()
    assert sorted(unit_lines(plot_contours(kept, label_units=True))) == ["unit-1", "unit-2"]  # ids survive
