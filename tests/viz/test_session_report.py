"""The report of a session of several fields of view: an overview linking to each one."""

from __future__ import annotations

import numpy as np

from calcium_dask.store import ResultsStore
from calcium_dask.viz import write_report
from calcium_dask.viz._data import load
from calcium_dask.viz.session import plot_session

from .viz_store import ACCEPTED, H, T, W, write_store

ROIS = [{"name": "roi0", "plane": 0, "roi": 0, "channel": 1, "shape": [T, H, W], "position": [0.0, 0.0]},
        {"name": "roi1", "plane": 0, "roi": 1, "channel": 1, "shape": [T, H, W], "position": [4.0, 40.0]},
        {"name": "roi2", "plane": 0, "roi": 2, "channel": 1, "shape": [T, H, W], "position": [0.0, 80.0]}]


def _session(path):
    write_store(path, group="roi0")
    write_store(path, group="roi1", seed=1)  # roi2 has not run yet
    root = ResultsStore(str(path))
    root.set_attrs(fields_of_view=ROIS, version="0.1.0", input="meso.tif", format="scanimage", nplanes=1,
                   nchannels=1, nrois=3, fr=10.0, canvas_shape=[H + 4, 80 + W])
    return root


def test_mesoscope_overview_places_each_roi_on_the_canvas(tmp_path):
    store = _session(tmp_path / "meso.zarr")
    fields = [(r, load(store.field(r["name"])) if r["name"] != "roi2" else None) for r in ROIS]
    fig = plot_session(fields, canvas_shape=(H + 4, 80 + W))
    ax = fig.axes[0]
    extents = sorted(tuple(im.get_extent()) for im in ax.images)
    assert extents == [(0.0, W, H, 0.0), (40.0, 40.0 + W, 4.0 + H, 4.0)]  # roi2: nothing to show yet
    assert len(ax.collections) == 2 * int(ACCEPTED.sum())  # the accepted units' contours, moved with their ROI
    assert ax.get_title() == "plane 0: 4 of 6 units accepted"
    fig.clf()


def test_session_report_links_an_overview_to_every_field_of_view(tmp_path):
    store = _session(tmp_path / "meso.zarr")
    html = write_report(store.url, tmp_path / "report.html").read_text()
    assert html.count('id="session"') == 1
    for name in ("roi0", "roi1", "roi2"):
        assert f'href="#{name}"' in html and f'id="{name}"' in html
    assert 'id="roi1-components"' in html and 'id="roi0-traces"' in html
    assert "this field of view has not run yet" in html  # roi2
    assert "at (y, x) = (4, 40) on the canvas" in html
    one = write_report(store.field("roi1"), tmp_path / "roi1.html").read_text()
    assert 'id="session"' not in html.split("<section", 1)[0] and 'id="components"' in one
