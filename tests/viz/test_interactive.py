"""Interactive views: bokeh models carrying their data, serialisable without a server."""

from __future__ import annotations

import numpy as np
import pytest

bokeh = pytest.importorskip("bokeh")
from bokeh.embed import components  # noqa: E402
from bokeh.models import ColumnDataSource, CustomJS, Div, HoverTool, Slider  # noqa: E402

from calcium_dask.results import open_results  # noqa: E402
from calcium_dask.viz import plot_contours_interactive, view_components  # noqa: E402
from calcium_dask.viz._data import STATUS_COLORS  # noqa: E402

from .viz_store import T  # noqa: E402


def source(model, name: str) -> ColumnDataSource:
    (src,) = model.select({"type": ColumnDataSource, "name": name})
    return src


def test_contours_interactive_sources_and_hover(store):
    p = plot_contours_interactive(store.url)
    data = source(p, "contours").data
    assert data["unit"] == [0, 1, 2]
    assert data["color"] == [STATUS_COLORS[s] for s in ("accepted", "accepted", "rejected")]
    assert data["snr"] == ["5", "3", "1"] and data["cnn_pred"][0] == "0.95"
    assert len(data["xs"]) == 3 and all(len(pieces) >= 1 for pieces in data["xs"])
    (hover,) = p.select(HoverTool)
    assert ("r_value", "@r_value") in hover.tooltips
    components(p)  # serialises (no server needed)


def test_contours_interactive_which_and_missing(store, unevaluated_store, motion_only_store):
    assert source(plot_contours_interactive(store, which="rejected"), "contours").data["unit"] == [2]
    data = source(plot_contours_interactive(unevaluated_store), "contours").data
    assert data["snr"] == ["n/a"] * 3 and set(data["status"]) == {"unevaluated"}
    assert isinstance(plot_contours_interactive(motion_only_store), Div)


def test_view_components_slider_drives_customjs(store):
    layout = view_components(open_results(store.url))
    (slider,) = layout.select({"type": Slider})
    assert (slider.start, slider.end, slider.value) == (0, 2, 0)
    (callback,) = slider.js_property_callbacks["change:value"]
    assert isinstance(callback, CustomJS) and callback.args["units"] is source(layout, "units")
    units = source(layout, "units").data
    assert units["unit"] == [0, 1, 2]
    assert len({c.shape for c in units["crop"]}) == 1  # one window size for every unit
    assert all(len(t) == T for t in units["c"])
    assert np.allclose(units["raw"][0], store.read()["traces"][0] + store.read()["residuals"][0])
    (info,) = layout.select({"name": "info"})
    assert "unit 0" in info.text
    components(layout)


def test_view_components_selection_and_missing(store, motion_only_store):
    layout = view_components(store, idx="rejected")
    assert source(layout, "units").data["unit"] == [2]
    (slider,) = layout.select({"type": Slider})
    assert slider.disabled
    assert isinstance(view_components(motion_only_store), Div)


def test_view_components_says_which_unit_a_duplicate_repeats(store):
    res = open_results(store.url)
    ds = res.ds.assign(duplicate_of=("unit", np.array([-1, -1, 0])))
    layout = view_components(type(res)(ds, None, res.motion, res.summary))
    texts = source(layout, "units").data["text"]
    assert "duplicate of unit 0" in texts[2] and "duplicate" not in texts[0]
