"""Interactive views (bokeh): contours with hover, and a component viewer with a slider.

The functions return bokeh models that a notebook shows with ``bokeh.io.show`` (after
``bokeh.io.output_notebook()``) or that :func:`bokeh.embed.components` embeds in a page.
Everything they need travels inside the model (the component viewer switches units with
a ``CustomJS`` callback), so they work in a static notebook or HTML file without a bokeh
server. When the data a view needs is missing, a ``Div`` with a one-line note is returned.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import xarray as xr
from bokeh.layouts import column, row
from bokeh.models import (ColumnDataSource, CustomJS, Div, HoverTool, LinearColorMapper, Range1d, Slider)
from bokeh.palettes import Greys256, Viridis256
from bokeh.plotting import figure

from ._data import (MISSING, STATUS_COLORS, Which, contour_paths, envelope, iter_footprints, load, metric,
                    robust_limits, select_units, summary_image, unit_ids, unit_status)

__all__ = ["plot_contours_interactive", "view_components"]

TOOLS = "pan,wheel_zoom,box_zoom,reset,save"
METRIC_NAMES = ("snr", "r_value", "cnn_pred")
CURRENT_COLOR = "#00e5ff"  # the unit shown by the component viewer


def _note(text: str) -> Div:
    return Div(text=f'<p class="note">{html.escape(text)}</p>', name="note")


def _image_figure(image: np.ndarray, *, title: str, width: int, palette: Any = Greys256,
                  x_range: Any = None, y_range: Any = None) -> Any:
    """A figure showing ``image`` with row 0 at the top and pixel (r, c) centred at (c, r)."""
    h, w = image.shape
    p = figure(title=title, tools=TOOLS, active_scroll="wheel_zoom", frame_width=width,
               frame_height=max(50, int(round(width * h / w))),
               x_range=x_range or Range1d(-0.5, w - 0.5, bounds=(-0.5, w - 0.5)),
               y_range=y_range or Range1d(h - 0.5, -0.5, bounds=(-0.5, h - 0.5)))
    low, high = robust_limits(image)
    p.image(image=[np.asarray(image, np.float32)], x=-0.5, y=-0.5, dw=w, dh=h,
            color_mapper=LinearColorMapper(palette=palette, low=low, high=high))
    p.grid.visible = False
    p.axis.visible = False
    return p


def _metric_text(values: np.ndarray | None, n: int) -> list[str]:
    if values is None:
        return ["n/a"] * n
    return [f"{v:.3g}" if np.isfinite(v) else "n/a" for v in np.asarray(values, float)]


def _metrics_table(root: xr.Dataset, idx: np.ndarray) -> dict[str, list[str]]:
    """Per-unit metric strings for the selected units (``'n/a'`` before evaluation)."""
    return {name: _metric_text(None if (m := metric(root, name)) is None else m[idx], len(idx))
            for name in METRIC_NAMES}


def _polygons(paths: list[np.ndarray]) -> tuple[list[list[list[np.ndarray]]], list[list[list[np.ndarray]]]]:
    """One unit's contour pieces in bokeh's ``multi_polygons`` nesting (pieces, rings)."""
    return [[p[:, 0]] for p in paths], [[p[:, 1]] for p in paths]


def _contour_source(root: xr.Dataset, idx: np.ndarray, fraction: float) -> ColumnDataSource:
    ids, status = unit_ids(root), unit_status(root)
    xs, ys = [], []
    for _, fp in iter_footprints(root, idx):
        px, py = _polygons(contour_paths(fp, fraction) or [np.full((1, 2), np.nan)])
        xs.append(px)
        ys.append(py)
    data = {"xs": xs, "ys": ys, "unit": [int(ids[k]) for k in idx], "status": list(status[idx]),
            "color": [STATUS_COLORS[s] for s in status[idx]], **_metrics_table(root, idx)}
    return ColumnDataSource(data, name="contours")


def plot_contours_interactive(results: Any, *, image: str | np.ndarray = "correlation", which: Which = "all",
                              fraction: float = 0.2, width: int = 520) -> Any:
    """Contours on a summary image with zoom, pan and a hover showing each unit's metrics.

    Parameters
    ----------
    results : Results, ResultsStore, str or xarray.Dataset
    image : str or ndarray
        Summary image name (``'correlation'``, ``'mean'``...) or a (y, x) array.
    which : {'all', 'accepted', 'rejected'} or sequence of int
    fraction : float
        Contour level as a fraction of each footprint's maximum.
    width : int
        Width of the image in screen pixels.

    Returns
    -------
    bokeh.plotting.figure or bokeh.models.Div
        The figure's ``ColumnDataSource`` named ``'contours'`` has one row per unit (columns
        ``unit``, ``status``, ``color``, ``snr``, ``r_value``, ``cnn_pred``, ``xs``, ``ys``);
        a ``Div`` note when the store has no units.
    """
    loaded = load(results)
    if not loaded.has_units:
        return _note(MISSING["cnmf"])
    root = loaded.root
    img, name = summary_image(loaded, image)
    idx = select_units(root, which)
    p = _image_figure(img, title=f"{len(idx)} units on the {name} image (hover for metrics)", width=width)
    src = _contour_source(root, idx, fraction)
    r = p.multi_polygons("xs", "ys", source=src, line_color="color", fill_color="color", fill_alpha=0.0,
                         line_width=1.5, hover_fill_alpha=0.35, hover_line_width=3)
    p.add_tools(HoverTool(renderers=[r], tooltips=[("unit", "@unit"), ("status", "@status"), ("SNR", "@snr"),
                                                   ("r_value", "@r_value"), ("cnn_pred", "@cnn_pred")]))
    return p


# -- component viewer ----------------------------------------------------------------------
def _crop_size(footprints: list[np.ndarray], fraction: float, shape: tuple[int, int]) -> int:
    """Side of the square window that holds every selected footprint's support, plus a margin."""
    extent = 8
    for fp in footprints:
        ys, xs = np.nonzero(fp > fraction * fp.max()) if fp.max() > 0 else ((), ())
        if len(ys):
            extent = max(extent, int(np.ptp(ys)) + 1, int(np.ptp(xs)) + 1)
    return int(min(extent + 12, *shape))


def _crop_origin(fp: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of a ``size`` window centred on the footprint's peak, inside the field."""
    r, c = np.unravel_index(int(np.argmax(fp)), fp.shape)
    y0 = int(np.clip(r - size // 2, 0, fp.shape[0] - size))
    x0 = int(np.clip(c - size // 2, 0, fp.shape[1] - size))
    return y0, x0


def _flat_contour(paths: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Contour pieces joined by NaN (a bokeh ``line`` breaks there)."""
    if not paths:
        return np.array([np.nan]), np.array([np.nan])
    joined = np.concatenate([np.vstack([p, [np.nan, np.nan]]) for p in paths])
    return joined[:, 0], joined[:, 1]


def _trace_columns(root: xr.Dataset, idx: np.ndarray, max_points: int, fr: float | None) -> dict[str, list]:
    c = np.asarray(root["traces"].isel(unit=idx).values, np.float64)
    raw = c + np.asarray(root["residuals"].isel(unit=idx).values) if "residuals" in root else c
    scale = 1.0 / fr if fr else 1.0
    out: dict[str, list] = {"t_raw": [], "raw": [], "t_c": [], "c": []}
    for yr, yc in zip(raw, c):
        for key, y in (("raw", yr), ("c", yc)):
            x, v = envelope(y, max_points)
            out[f"t_{key}"].append((x * scale).astype(np.float32))
            out[key].append(np.asarray(v, np.float32))
    return out


def _info_html(uid: int, status: str, pos: int, n: int, metrics: dict[str, str], duplicate_of: int = -1) -> str:
    color = STATUS_COLORS[status]
    vals = ", ".join(f"{k} {metrics[k]}" for k in METRIC_NAMES)
    why = f" as a duplicate of unit {duplicate_of}" if duplicate_of >= 0 else ""
    return (f'<b>unit {uid}</b> <span style="color:{color};font-weight:bold">{status}{why}</span> '
            f"({pos + 1} of {n}) &mdash; {vals}")


def _units_source(root: xr.Dataset, idx: np.ndarray, fraction: float, max_points: int,
                  fr: float | None) -> tuple[ColumnDataSource, int]:
    """One row per unit: footprint crop and its origin, contour, traces and a metrics text."""
    fps = [fp for _, fp in iter_footprints(root, idx)]
    size = _crop_size(fps, fraction, fps[0].shape)
    ids, status, table = unit_ids(root), unit_status(root), _metrics_table(root, idx)
    dup = np.asarray(root["duplicate_of"].values) if "duplicate_of" in root else np.full(len(ids), -1)
    data: dict[str, list] = {k: [] for k in ("unit", "crop", "x0", "y0", "cx", "cy", "text")}
    for pos, (k, fp) in enumerate(zip(idx, fps)):
        y0, x0 = _crop_origin(fp, size)
        cx, cy = _flat_contour(contour_paths(fp, fraction))
        metrics = {m: table[m][pos] for m in METRIC_NAMES}
        for key, value in (("unit", int(ids[k])), ("crop", fp[y0:y0 + size, x0:x0 + size].astype(np.float32)),
                           ("x0", x0), ("y0", y0), ("cx", cx.astype(np.float32)), ("cy", cy.astype(np.float32)),
                           ("text", _info_html(int(ids[k]), status[k], pos, len(idx), metrics, int(dup[k])))):
            data[key].append(value)
    data.update(_trace_columns(root, idx, max_points, fr))
    return ColumnDataSource(data, name="units"), size


def _current(units: ColumnDataSource, size: int) -> dict[str, ColumnDataSource]:
    """The sources the plots draw, holding unit 0 (the slider's callback refills them)."""
    u = units.data
    return {"img": ColumnDataSource({"image": [u["crop"][0]], "x": [u["x0"][0] - 0.5], "y": [u["y0"][0] - 0.5],
                                     "dw": [size], "dh": [size]}, name="current_footprint"),
            "con": ColumnDataSource({"x": u["cx"][0], "y": u["cy"][0]}, name="current_contour"),
            "raw": ColumnDataSource({"t": u["t_raw"][0], "v": u["raw"][0]}, name="current_raw"),
            "den": ColumnDataSource({"t": u["t_c"][0], "v": u["c"][0]}, name="current_denoised")}


_SWITCH_UNIT = """
const u = units.data;
const i = Math.max(0, Math.min(Math.round(slider.value), u.unit.length - 1));
const x0 = u.x0[i], y0 = u.y0[i];
img.data = {image: [u.crop[i]], x: [x0 - 0.5], y: [y0 - 0.5], dw: [size], dh: [size]};
con.data = {x: u.cx[i], y: u.cy[i]};
raw.data = {t: u.t_raw[i], v: u.raw[i]};
den.data = {t: u.t_c[i], v: u.c[i]};
xr.start = x0 - 0.5; xr.end = x0 + size - 0.5;
yr.start = y0 + size - 0.5; yr.end = y0 - 0.5;
info.text = u.text[i];
"""


def _footprint_figure(cur: dict[str, ColumnDataSource], u: dict, size: int, width: int) -> Any:
    x0, y0 = u["x0"][0], u["y0"][0]
    p = figure(title="footprint", tools=TOOLS, frame_width=width, frame_height=width,
               x_range=Range1d(x0 - 0.5, x0 + size - 0.5), y_range=Range1d(y0 + size - 0.5, y0 - 0.5))
    p.image(image="image", x="x", y="y", dw="dw", dh="dh", source=cur["img"],
            color_mapper=LinearColorMapper(palette=Viridis256))
    p.line("x", "y", source=cur["con"], color="white", line_width=2)
    p.grid.visible = False
    return p


def _traces_figure(cur: dict[str, ColumnDataSource], width: int, fr: float | None) -> Any:
    p = figure(title="raw (C + YrA, grey) and denoised (C, blue) trace", tools="xpan,xwheel_zoom,box_zoom,reset,save",
               frame_width=width, frame_height=180, x_axis_label="time (s)" if fr else "frame")
    p.line("t", "v", source=cur["raw"], color="#999999", line_width=1, legend_label="raw")
    p.line("t", "v", source=cur["den"], color="#1f77b4", line_width=1.5, legend_label="denoised")
    p.legend.location = "top_left"
    p.legend.label_text_font_size = "8pt"
    return p


def view_components(results: Any, *, idx: Which | None = None, image: str | np.ndarray = "correlation",
                    fraction: float = 0.2, max_points: int = 3000, width: int = 360) -> Any:
    """Step through units with a slider: footprint, contour on the field, traces and metrics.

    A bokeh counterpart of CaImAn's ``view_components`` that needs no server: every
    selected unit's footprint crop, contour and (decimated) traces are embedded, and a
    ``CustomJS`` callback on the slider shows the chosen one.

    Parameters
    ----------
    results : Results, ResultsStore, str or xarray.Dataset
    idx : None, {'all', 'accepted', 'rejected'} or sequence of int
        Units to step through (``None``: all).
    image : str or ndarray
        Summary image under the contours on the field-of-view panel.
    fraction : float
        Contour level as a fraction of each footprint's maximum.
    max_points : int
        Long traces keep each bin's min and max so that about this many points remain.
    width : int
        Width of each image panel in screen pixels.

    Returns
    -------
    bokeh.models.Column or bokeh.models.Div
        Slider, metrics text, field of view and footprint panels, traces; the per-unit data
        is the ``ColumnDataSource`` named ``'units'``. A ``Div`` note without units.
    """
    loaded = load(results)
    if not loaded.has_units or "traces" not in loaded.root:
        return _note(MISSING["cnmf"])
    root = loaded.root
    sel = select_units(root, "all" if idx is None else idx)
    if len(sel) == 0:
        return _note(MISSING["units"])
    units, size = _units_source(root, sel, fraction, max_points, loaded.fr)
    cur, u = _current(units, size), units.data
    img, name = summary_image(loaded, image)
    fov = _image_figure(img, title=f"{name} image", width=width)
    fov.line("x", "y", source=cur["con"], color=CURRENT_COLOR, line_width=2.5)
    foot = _footprint_figure(cur, u, size, width)
    info = Div(text=u["text"][0], name="info")
    slider = Slider(start=0, end=max(len(sel) - 1, 1), value=0, step=1, title="component",
                    disabled=len(sel) == 1, width=2 * width, name="component_slider")
    slider.js_on_change("value", CustomJS(args=dict(units=units, slider=slider, info=info, size=size,
                                                    xr=foot.x_range, yr=foot.y_range, **cur), code=_SWITCH_UNIT))
    return column(slider, info, row(fov, foot), _traces_figure(cur, 2 * width + 40, loaded.fr), name="components")
