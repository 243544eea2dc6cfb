"""Views of a tracking store: contours by identity, one unit across sessions, the report."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

import calcium_dask as cd  # noqa: E402
from calcium_dask.viz import plot_tracked_contours, plot_tracked_unit, write_report  # noqa: E402
from calcium_dask.viz.tracking import identity_colors  # noqa: E402


@pytest.fixture(scope="module")
def tracking(three_days, tmp_path_factory):
    urls, _, _ = three_days
    out = tmp_path_factory.mktemp("views") / "tracking.zarr"
    cd.register_sessions(urls, out=str(out))
    return cd.open_tracking(str(out))


def _gids(fig):
    return [c.get_gid() for ax in fig.axes for c in ax.collections if isinstance(c, LineCollection)]


def test_contours_are_coloured_by_identity_in_every_session(tracking):
    fig = plot_tracked_contours(tracking)
    assert len([a for a in fig.axes if a.get_visible()]) == 3
    per_panel = [{c.get_gid(): tuple(c.get_edgecolor()[0][:3]) for c in ax.collections} for ax in fig.axes]
    for s, panel in enumerate(per_panel):  # one contour per unit the session has
        assert len(panel) == int((tracking.assignments[:, s] >= 0).sum())
    both = set(per_panel[0]) & set(per_panel[2])
    assert len(both) > 10
    for gid in both:  # the same identity, the same colour
        assert per_panel[0][gid] == per_panel[2][gid]
    t = int(next(iter(both)).split("-")[1])
    assert per_panel[0][f"tracked-{t}"] == pytest.approx(identity_colors([t])[0][:3])
    plt.close(fig)


def test_one_tracked_unit_across_sessions(tracking):
    t = int(tracking.found_in_all()[0])
    fig = plot_tracked_unit(tracking, t)
    names = tracking.sessions
    assert {f"footprint-{n}" for n in names} <= set(_gids(fig))
    traces = {line.get_gid(): line.get_ydata() for ax in fig.axes for line in ax.get_lines()}
    for s, n in enumerate(names):  # each session's dF/F of its own unit (see stores.write_store)
        assert np.all(traces[f"trace-{n}"] == tracking.assignments[t, s])
    plt.close(fig)


def test_report_of_a_tracking_store(tracking, tmp_path):
    out = write_report(tracking.url, tmp_path / "r.html", max_traces=2)
    html = out.read_text()
    for title in ("Sessions and their alignment", "Tracked units", "Contours across sessions",
                  "Tracked units across sessions", "Tracking parameters"):
        assert f">{title}</h2>" in html
    assert "could not draw" not in html and "(reference)" in html
    assert "The 2 units seen in the most sessions" in html
