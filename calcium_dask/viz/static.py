"""Static views (matplotlib): contours, motion shifts, patch grids, summary images, traces.

Each function takes the results in any form :func:`calcium_dask.viz._data.load` accepts
(a ``Results``, a ``ResultsStore``, a store URL or a Dataset), draws on the given Axes
or on a new pyplot figure, and returns the Axes (one panel) or the Figure (several panels).
When the data a view needs is not in the store, the panel shows a one-line note instead.
The views read the small groups of the store (footprints in batches, traces of the chosen
units, shifts, summary images) and never the movie.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from ._data import (MISSING, STATUS_COLORS, Loaded, Which, contour_paths, envelope, iter_footprints, load, metric,
                    robust_limits, select_units, summary_image, unit_ids, unit_status)

__all__ = ["plot_contours", "plot_shifts", "plot_patch_grid", "view_quilt", "plot_summary", "plot_traces",
           "plot_metrics", "plot_corr_pnr"]

#: edge colours cycled over neighbouring patches so that overlaps stay readable
PATCH_COLORS = ("#00bfff", "#ff851b", "#f012be", "#7fdbff")


# -- small helpers -----------------------------------------------------------------------
def _axes(ax: Axes | None, figsize: tuple[float, float] = (6, 6)) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _note(ax: Axes, text: str) -> Axes:
    """Replace a panel's content by a one-line note (the data it needs is missing)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, fontsize=9,
            color="0.35", gid="note")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def _show_image(ax: Axes, image: np.ndarray, *, cmap: str = "gray", title: str | None = None,
                limits: tuple[float, float] | None = None) -> None:
    vmin, vmax = limits or robust_limits(image)
    ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", origin="upper")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)


def _motion_source(source: Any) -> tuple[Loaded, xr.Dataset | None]:
    """The store's record and its ``/motion`` group (``source`` may be that group itself)."""
    if isinstance(source, xr.Dataset) and ("shifts" in source or "template" in source):
        return Loaded(motion=source), source
    loaded = load(source)
    return loaded, loaded.motion


# -- contours ----------------------------------------------------------------------------
def _status_legend(ax: Axes, status: np.ndarray, idx: np.ndarray) -> None:
    counts = {s: int(np.sum(status[idx] == s)) for s in STATUS_COLORS}
    handles = [Line2D([], [], color=STATUS_COLORS[s], label=f"{s} ({n})") for s, n in counts.items() if n]
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.7)


def plot_contours(results: Any, *, image: str | np.ndarray = "correlation", which: Which = "all",
                  ax: Axes | None = None, fraction: float = 0.2, label_units: bool = False,
                  linewidth: float = 1.0) -> Axes:
    """Contours of the footprints on a summary image (CaImAn's ``plot_contours``).

    Parameters
    ----------
    results : Results, ResultsStore, str or xarray.Dataset
    image : str or ndarray
        Name of a summary image (``'correlation'``, ``'mean'``, ``'max'``, ``'std'``) or an
        (y, x) array. Without a ``/summary`` group the footprints' maximum is shown.
    which : {'all', 'accepted', 'rejected'} or sequence of int
        Units to draw (positions along ``unit``); before evaluation every unit is accepted.
    ax : matplotlib Axes, optional
    fraction : float
        Contour level as a fraction of each footprint's maximum.
    label_units : bool
        Write each unit's id at its contour.
    linewidth : float

    Returns
    -------
    matplotlib.axes.Axes
        One ``LineCollection`` per unit (``gid='unit-<id>'``), green when accepted, red
        when rejected, yellow before evaluation.
    """
    loaded = load(results)
    ax = _axes(ax)
    if not loaded.has_units:
        return _note(ax, MISSING["cnmf"])
    root = loaded.root
    img, name = summary_image(loaded, image)
    _show_image(ax, img)
    idx, status, ids = select_units(root, which), unit_status(root), unit_ids(root)
    for k, fp in iter_footprints(root, idx):
        paths = contour_paths(fp, fraction)
        ax.add_collection(LineCollection(paths, colors=STATUS_COLORS[status[k]], linewidths=linewidth,
                                         gid=f"unit-{ids[k]}", label=f"unit {ids[k]}"))
        if label_units and paths:
            x, y = max(paths, key=len).mean(0)
            ax.text(x, y, str(ids[k]), color="white", fontsize=6, ha="center", va="center")
    _status_legend(ax, status, idx)
    ax.set_title(f"{len(idx)} units on the {name} image", fontsize=10)
    return ax


# -- motion ------------------------------------------------------------------------------
def _frame_step(n: int, max_points: int) -> int:
    return max(1, int(np.ceil(n / max_points)))


def _shift_panel(ax: Axes, frames: np.ndarray, rigid: np.ndarray, patches: np.ndarray | None, axis: str,
                 color: str) -> None:
    if patches is not None:
        segs = [np.column_stack([frames, p]) for p in patches.reshape(len(frames), -1).T]
        ax.add_collection(LineCollection(segs, colors=color, linewidths=0.5, alpha=0.35, gid=f"patch-shifts-{axis}"))
    ax.plot(frames, rigid, color=color, linewidth=1.5, label=f"{axis} (rigid)", gid=f"rigid-{axis}")
    ax.set_ylabel(f"{axis} shift (pixels)")
    ax.autoscale_view()


def plot_shifts(motion: Any, *, ax: Axes | Sequence[Axes] | None = None, max_points: int = 4000) -> Figure:
    """Rigid shifts over time (thick) and each patch's piecewise-rigid shifts (thin).

    Parameters
    ----------
    motion : xarray.Dataset, Results, ResultsStore or str
        The ``/motion`` group, or anything holding it.
    ax : Axes or (Axes, Axes), optional
        Where to draw the y and x shifts (one Axes holds both).
    max_points : int
        Long sessions are drawn from every n-th frame so that about this many remain.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if ax is None:
        fig, axes = plt.subplots(2, 1, figsize=(8, 4.5), sharex=True, layout="constrained")
    else:
        axes = [ax, ax] if isinstance(ax, Axes) else list(ax)
        fig = axes[0].figure
    _, mot = _motion_source(motion)
    if mot is None or "shifts" not in mot:
        _note(axes[0], MISSING["motion"])
        return fig
    step = _frame_step(mot.sizes["frame"], max_points)
    part = mot.isel(frame=slice(None, None, step))
    frames = np.arange(0, mot.sizes["frame"], step)
    rigid = np.asarray(part["shifts"].values)
    patches = np.asarray(part["patch_shifts"].values) if "patch_shifts" in part else None
    for i, (a, name, color) in enumerate(zip(axes, ("y", "x"), ("tab:blue", "tab:orange"))):
        _shift_panel(a, frames, rigid[:, i], None if patches is None else patches[..., i], name, color)
    if axes[0] is axes[1]:
        axes[0].set_ylabel("shift (pixels)")
        axes[0].legend(fontsize=8)
    axes[-1].set_xlabel("frame")
    kind = "rigid and per-patch shifts" if patches is not None else "rigid shifts"
    axes[0].set_title(f"Motion correction: {kind}", fontsize=10)
    return fig


def _boxes_from_centres(cy: np.ndarray, cx: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    # NoRMCorre's grid starts at 0 and every patch has the same size: the first centre gives it
    ph, pw = int(round(2 * float(cy[0]) + 1)), int(round(2 * float(cx[0]) + 1))
    return np.round(cy - (ph - 1) / 2).astype(int), np.round(cx - (pw - 1) / 2).astype(int), ph, pw


def _motion_boxes(mot: xr.Dataset | None, shape: tuple[int, int], strides: Sequence[int] | None,
                  overlaps: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray, int, int] | None:
    if strides is not None and overlaps is not None:
        from ..motion.kernels.grid import patch_grid, patch_size  # on use: the motion package is heavy to import

        ys, xs = patch_grid(shape, strides=strides, overlaps=overlaps)
        return (ys, xs, *patch_size(shape, strides=strides, overlaps=overlaps))
    if mot is not None and "patch_y" in mot.coords and "patch_x" in mot.coords:
        return _boxes_from_centres(np.asarray(mot["patch_y"].values), np.asarray(mot["patch_x"].values))
    return None


def _draw_boxes(ax: Axes, boxes: Sequence[tuple[int, int, int, int]], gid: str) -> None:
    """Outline ``(y0, y1, x0, x1)`` boxes, cycling colours, with their centres as dots."""
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        color = PATCH_COLORS[i % len(PATCH_COLORS)]
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color,
                               linewidth=1.2, alpha=0.9, gid=gid))
        ax.plot((x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2, "o", color=color, markersize=3)


def plot_patch_grid(source: Any, *, strides: Sequence[int] | None = None, overlaps: Sequence[int] | None = None,
                    ax: Axes | None = None) -> Axes:
    """The piecewise-rigid motion-correction patches over the template.

    Parameters
    ----------
    source : xarray.Dataset, Results, ResultsStore, str or ndarray
        The ``/motion`` group (or anything holding it), or a template image (y, x).
    strides, overlaps : (int, int), optional
        The grid's parameters; by default the store's ``params['motion']``, else the
        patch centres recorded in ``/motion``.
    ax : Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        One ``Rectangle`` (``gid='motion-patch'``) per patch.
    """
    ax = _axes(ax)
    if isinstance(source, (np.ndarray, xr.DataArray)):
        loaded, mot, template = Loaded(), None, np.asarray(source)
    else:
        loaded, mot = _motion_source(source)
        template = np.asarray(mot["template"].values) if mot is not None and "template" in mot else None
    if template is None:
        return _note(ax, MISSING["motion"])
    if strides is None and loaded.param("motion", "pw_rigid"):
        strides, overlaps = loaded.param("motion", "strides"), loaded.param("motion", "overlaps")
    _show_image(ax, template)
    grid = _motion_boxes(mot, template.shape, strides, overlaps)
    if grid is None:
        ax.set_title("Template (rigid correction: no patches)", fontsize=10)
        return ax
    ys, xs, ph, pw = grid
    _draw_boxes(ax, [(y, y + ph, x, x + pw) for y in ys for x in xs], "motion-patch")
    ax.set_xlim(-0.5, template.shape[1] - 0.5)
    ax.set_ylim(template.shape[0] - 0.5, -0.5)
    ax.set_title(f"Motion patches: {len(ys)} x {len(xs)} of {ph} x {pw} pixels", fontsize=10)
    return ax


def view_quilt(source: Any, *, rf: int | None = None, stride: int | None = None,
               image: str | np.ndarray = "correlation", ax: Axes | None = None) -> Axes:
    """The CNMF patch grid (``rf``, ``stride``) over a summary image (CaImAn's ``view_quilt``).

    Parameters
    ----------
    source : Results, ResultsStore, str or xarray.Dataset
    rf, stride : int, optional
        Half-size of a patch and overlap of neighbours; by default the store's
        ``params['patch']`` (``rf=None`` there means one patch over the whole field).
    image : str or ndarray
        Summary image name or (y, x) array to draw the patches on.
    ax : Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        One ``Rectangle`` (``gid='cnmf-patch'``) per patch.
    """
    loaded = load(source)
    ax = _axes(ax)
    img, name = summary_image(loaded, image)
    if img is None:
        return _note(ax, MISSING["summary"])
    if rf is None:
        if "patch" not in loaded.params:
            return _note(ax, MISSING["params"] + " (pass rf and stride)")
        rf, stride = loaded.param("patch", "rf"), loaded.param("patch", "stride")
    from ..cnmf.kernels.grid import patch_boxes  # on use: the cnmf package is heavy to import

    boxes = patch_boxes(img.shape, rf, stride)
    _show_image(ax, img)
    _draw_boxes(ax, boxes, "cnmf-patch")
    ax.set_xlim(-0.5, img.shape[1] - 0.5)
    ax.set_ylim(img.shape[0] - 0.5, -0.5)
    ax.set_title(f"CNMF patches on the {name} image: rf={rf}, stride={stride} ({len(boxes)} patches)",
                 fontsize=10)
    return ax


# -- summary images ----------------------------------------------------------------------
def _crispness(image: np.ndarray) -> float:
    """Norm of the mean image's gradient: larger when motion correction sharpened it."""
    gy, gx = np.gradient(np.nan_to_num(np.asarray(image, np.float64)))
    return float(np.sqrt(np.sum(gy**2 + gx**2)))


def _image(ds: xr.Dataset | None, name: str) -> np.ndarray | None:
    return None if ds is None or name not in ds else np.asarray(ds[name].values, dtype=np.float32)


def plot_summary(before: Any, after: xr.Dataset | None = None, *, images: Sequence[str] = ("mean", "correlation"),
                 fig: Figure | None = None) -> Figure:
    """Summary images before (``/summary_raw``) and after (``/summary``) motion correction.

    Parameters
    ----------
    before : xarray.Dataset or None, or a Results / ResultsStore / URL
        Summary images of the raw movie. Anything else than a Dataset or None is opened
        as a store and gives both ``before`` and ``after``.
    after : xarray.Dataset, optional
        Summary images of the corrected movie.
    images : sequence of str
        Rows to draw; the mean image is annotated with its crispness.
    fig : Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
        ``len(images)`` rows by 2 columns; each row shares one colour scale.
    """
    if before is not None and not isinstance(before, xr.Dataset) and after is None:
        loaded = load(before)
        before, after = loaded.summary_raw, loaded.summary
    fig = fig or plt.figure(figsize=(8, 4 * len(images)), layout="constrained")
    axes = fig.subplots(len(images), 2, squeeze=False)
    for row, name in zip(axes, images):
        pair = [_image(before, name), _image(after, name)]
        both = [p for p in pair if p is not None]
        limits = robust_limits(np.concatenate([p.ravel() for p in both])) if both else None
        for a, img, when, key in zip(row, pair, ("before", "after"), ("summary_raw", "summary")):
            if img is None:
                _note(a, MISSING[key])
                continue
            extra = f" (crispness {_crispness(img):.4g})" if name == "mean" else ""
            _show_image(a, img, title=f"{name} {when} motion correction{extra}", limits=limits)
    return fig


# -- traces ------------------------------------------------------------------------------
def _time_axis(frames: np.ndarray, fr: float | None) -> tuple[np.ndarray, str]:
    return (frames / fr, "time (s)") if fr else (frames, "frame")


def _row_scale(lines: list[tuple[str, np.ndarray, str, float]]) -> tuple[float, float]:
    """Offset and scale that fit a row's lines (together) between 0 and 1."""
    lo = min(float(np.nanmin(y)) for _, y, _, _ in lines)
    hi = max(float(np.nanmax(y)) for _, y, _, _ in lines)
    return lo, (hi - lo if hi > lo else 1.0)


Line = tuple[str, np.ndarray, str, float]  # kind, values, colour, linewidth


def _trace_rows(root: xr.Dataset, idx: np.ndarray, dff: bool) -> list[list[Line]]:
    """For each unit: (kind, values, colour, linewidth) of the lines drawn in its row."""
    if dff:
        return [[("dff", v, "tab:green", 0.8)] for v in np.asarray(root["dff"].isel(unit=idx).values)]
    c = np.asarray(root["traces"].isel(unit=idx).values)
    rows = []
    raw = c + np.asarray(root["residuals"].isel(unit=idx).values) if "residuals" in root else None
    for i in range(len(idx)):
        lines = [("raw", raw[i], "0.6", 0.6)] if raw is not None else []
        rows.append(lines + [("denoised", c[i], "tab:blue", 1.0)])
    return rows


def plot_traces(results: Any, idx: Which | int = "accepted", *, dff: bool = False, ax: Axes | None = None,
                max_points: int = 4000) -> Axes:
    """Traces of the given units stacked one above the other.

    Parameters
    ----------
    results : Results, ResultsStore, str or xarray.Dataset
    idx : int, sequence of int or {'all', 'accepted', 'rejected'}
        Units (positions along ``unit``) to draw.
    dff : bool
        Draw dF/F (``dff``) instead of the raw (``traces + residuals``, grey) and denoised
        (``traces``, blue) traces.
    ax : Axes, optional
    max_points : int
        Long traces keep each bin's min and max so that about this many points remain.

    Returns
    -------
    matplotlib.axes.Axes
        Lines with ``gid`` ``'<kind>-<unit id>'``, kind in raw, denoised, dff; each unit's
        row is scaled to its own range, raw and denoised together (dF/F rows share one
        scale).
    """
    loaded = load(results)
    units = np.atleast_1d(idx) if isinstance(idx, (int, np.integer)) else idx
    if not loaded.has_units:
        return _note(_axes(ax), MISSING["cnmf"])
    root = loaded.root
    if dff and "dff" not in root:
        return _note(_axes(ax), MISSING["dff"])
    sel = select_units(root, units)
    if len(sel) == 0:
        return _note(_axes(ax), MISSING["units"])
    ax = _axes(ax, (9, min(1.0 + 0.6 * len(sel), 14)))
    ids = unit_ids(root)
    rows = _trace_rows(root, sel, dff)
    shared = max(_row_scale(lines)[1] for lines in rows) if dff else None  # dF/F: one scale for all
    xlabel = "frame"
    for i, (k, lines) in enumerate(zip(sel, rows)):
        row = len(sel) - 1 - i  # the first unit on top
        lo, scale = _row_scale(lines)
        scale = shared or scale
        for kind, y, color, lw in lines:
            x, yd = envelope(y, max_points)
            t, xlabel = _time_axis(x, loaded.fr)
            ax.plot(t, 0.9 * (yd - lo) / scale + row, color=color, linewidth=lw, gid=f"{kind}-{ids[k]}")
    ax.set_yticks(np.arange(len(sel))[::-1] + 0.45, [str(ids[k]) for k in sel], fontsize=7)
    ax.set_ylabel("unit")
    ax.set_xlabel(xlabel)
    ax.set_title("dF/F" if dff else "raw (grey) and denoised (blue) traces", fontsize=10)
    ax.margins(x=0)
    return ax


# -- evaluation --------------------------------------------------------------------------
METRICS = (("snr", "trace SNR", ("min_SNR", "SNR_lowest")),
           ("r_value", "spatial correlation (r_value)", ("rval_thr", "rval_lowest")),
           ("cnn_pred", "shape classifier (cnn_pred)", ("min_cnn_thr", "cnn_lowest")))


def _metric_panel(ax: Axes, values: np.ndarray, status: np.ndarray, label: str,
                  thresholds: dict[str, float], bins: int) -> None:
    finite = values[np.isfinite(values)]
    edges = np.histogram_bin_edges(finite if finite.size else [0, 1], bins=bins)
    groups = [(values[status == s], STATUS_COLORS[s], s) for s in STATUS_COLORS if np.any(status == s)]
    ax.hist([g[0][np.isfinite(g[0])] for g in groups], bins=edges, stacked=True, color=[g[1] for g in groups],
            label=[g[2] for g in groups], edgecolor="0.3", linewidth=0.4)
    for (name, value), style in zip(thresholds.items(), ("-", "--")):
        ax.axvline(value, color="k", linestyle=style, linewidth=1.2, gid="threshold", label=f"{name} = {value:g}")
    ax.set_xlabel(label)
    ax.set_ylabel("units")
    ax.legend(fontsize=7)


def plot_metrics(results: Any, *, bins: int = 30, fig: Figure | None = None) -> Figure:
    """Histograms of ``snr``, ``r_value`` and ``cnn_pred`` with the acceptance thresholds.

    Parameters
    ----------
    results : Results, ResultsStore, str or xarray.Dataset
    bins : int
    fig : Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
        Three panels; accepted (green) and rejected (red) units stacked; vertical lines
        (``gid='threshold'``) at ``params['quality']``'s accept (solid) and lowest (dashed)
        thresholds when the store records them.
    """
    loaded = load(results)
    fig = fig or plt.figure(figsize=(11, 3.2), layout="constrained")
    axes = fig.subplots(1, 3)
    quality = loaded.params.get("quality", {})
    for ax, (name, label, keys) in zip(axes, METRICS):
        values = metric(loaded.root, name)
        if values is None:
            _note(ax, f"no {name} in the results")
            continue
        if name == "cnn_pred" and quality.get("use_cnn") is False:
            keys = ()
        thresholds = {k: float(quality[k]) for k in keys if quality.get(k) is not None}
        _metric_panel(ax, values.astype(float), unit_status(loaded.root), label, thresholds, bins)
    return fig


# -- one-photon seeding (CNMF-E) ------------------------------------------------------------
def _corr_pnr_images(source: Any) -> xr.Dataset | None:
    if isinstance(source, xr.Dataset) and "pnr" in source:
        return source
    return load(source).corr_pnr


def plot_corr_pnr(source: Any, *, min_corr: float | None = None, min_pnr: float | None = None,
                  fig: Figure | None = None) -> Figure:
    """The correlation and peak-to-noise ratio images CNMF-E seeds on, and where both pass
    their thresholds (the view of CaImAn's CNMF-E demo that helps choose ``min_corr`` and
    ``min_pnr``).

    Parameters
    ----------
    source : xarray.Dataset, Results, ResultsStore or str
        :func:`calcium_dask.cnmf.correlation_pnr` of a movie, or a results store of a
        ``corr_pnr`` run (its ``/corr_pnr`` group, the patches' images).
    min_corr, min_pnr : float, optional
        Thresholds to show (default: those the images were computed with).
    fig : Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
        Four panels: the correlation image with its ``min_corr`` contour, the PNR image with
        its ``min_pnr`` contour, the pixels passing both (candidate seeds) on ``corr * pnr``,
        and the joint histogram of the two values with the thresholds (``gid='threshold'``).
    """
    fig = fig or plt.figure(figsize=(13, 3.6), layout="constrained")
    axes = fig.subplots(1, 4)
    ds = _corr_pnr_images(source)
    if ds is None:
        for ax in axes:
            _note(ax, "no correlation and PNR images: not a corr_pnr (CNMF-E) run")
        return fig
    corr, pnr = np.asarray(ds["correlation"].values, float), np.asarray(ds["pnr"].values, float)
    min_corr = float(ds.attrs.get("min_corr", 0.8) if min_corr is None else min_corr)
    min_pnr = float(ds.attrs.get("min_pnr", 10.0) if min_pnr is None else min_pnr)
    _show_image(axes[0], corr, cmap="viridis", title=f"correlation (contour: {min_corr:g})", limits=(0.0, 1.0))
    axes[0].contour(corr, [min_corr], colors="w", linewidths=0.6)
    _show_image(axes[1], pnr, cmap="viridis", title=f"peak-to-noise ratio (contour: {min_pnr:g})")
    axes[1].contour(pnr, [min_pnr], colors="w", linewidths=0.6)
    both = (corr >= min_corr) & (pnr >= min_pnr)
    _show_image(axes[2], corr * pnr, cmap="gray", title=f"corr x pnr; {int(both.sum())} pixels pass both")
    axes[2].imshow(np.ma.masked_where(~both, both), cmap="autumn", alpha=0.6, interpolation="nearest")
    ax = axes[3]
    ax.hist2d(corr.ravel(), np.clip(pnr.ravel(), 0, np.percentile(pnr, 99.9)), bins=60, cmap="Greys",
              norm="log")
    ax.axvline(min_corr, color="tab:red", lw=1, gid="threshold")
    ax.axhline(min_pnr, color="tab:red", lw=1, gid="threshold")
    ax.set_xlabel("correlation")
    ax.set_ylabel("PNR")
    ax.set_title("pixels; seeds come from the upper right", fontsize=10)
    return fig
