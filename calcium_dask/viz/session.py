"""A session of several fields of view at a glance: each plane's mean image with its units'
contours, and mesoscope ROIs placed at their positions on one canvas per plane."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from ._data import STATUS_COLORS, Loaded, contour_paths, iter_footprints, robust_limits, select_units, unit_status
from .static import plot_contours

__all__ = ["plot_session", "units_per_field"]


def units_per_field(loaded: Loaded | None) -> tuple[int | None, int | None]:
    """(units, accepted units) of one field of view; None where not computed yet."""
    if loaded is None or loaded.root is None or "footprints" not in loaded.root:
        return None, None
    n = int(loaded.root.sizes.get("unit", 0))
    return n, (int(loaded.root["accepted"].values.sum()) if "accepted" in loaded.root else None)


def _mean(loaded: Loaded | None) -> np.ndarray | None:
    if loaded is None or loaded.summary is None or "mean" not in loaded.summary:
        return None
    return np.asarray(loaded.summary["mean"].values, float)


def _title(record: dict[str, Any], loaded: Loaded | None) -> str:
    n, acc = units_per_field(loaded)
    units = "not run yet" if n is None else f"{acc if acc is not None else n} of {n} units accepted"
    return f"{record['name']}: {units}"


def _grid(fields: list[tuple[dict[str, Any], Loaded | None]]) -> Figure:
    cols = min(4, len(fields))
    rows = -(-len(fields) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.5 * rows), layout="constrained", squeeze=False)
    for ax in axes.ravel()[len(fields):]:
        ax.set_axis_off()
    for ax, (record, loaded) in zip(axes.ravel(), fields):
        if loaded is not None and loaded.has_units:
            plot_contours(loaded, image="mean", which="accepted", ax=ax, linewidth=0.8)
        elif _mean(loaded) is not None:
            img = _mean(loaded)
            ax.imshow(img, cmap="gray", clim=robust_limits(img))
        ax.set_title(_title(record, loaded), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def _canvas(fields: list[tuple[dict[str, Any], Loaded | None]], canvas: tuple[int, int]) -> Figure:
    planes = sorted({r.get("plane") or 0 for r, _ in fields})
    fig, axes = plt.subplots(1, len(planes), figsize=(6 * len(planes), 6 * canvas[0] / max(canvas[1], 1) + 0.6),
                             layout="constrained", squeeze=False)
    for ax, plane in zip(axes[0], planes):
        ax.set_facecolor("black")
        ax.set_xlim(0, canvas[1])
        ax.set_ylim(canvas[0], 0)
        total = [0, 0]
        for record, loaded in ((r, lo) for r, lo in fields if (r.get("plane") or 0) == plane):
            y0, x0 = record.get("position") or (0.0, 0.0)
            h, w = record["shape"][1:]
            img = _mean(loaded)
            if img is not None:
                ax.imshow(img, cmap="gray", clim=robust_limits(img), extent=(x0, x0 + w, y0 + h, y0))
            n, acc = units_per_field(loaded)
            total[0] += n or 0
            total[1] += (acc if acc is not None else n) or 0
            if loaded is not None and loaded.has_units:
                status = unit_status(loaded.root)
                for k, fp in iter_footprints(loaded.root, select_units(loaded.root, "accepted")):
                    paths = [p + np.array([x0, y0]) for p in contour_paths(fp)]
                    ax.add_collection(LineCollection(paths, colors=STATUS_COLORS[status[k]], linewidths=0.6))
            ax.text(x0 + 2, y0 + 2, record["name"], color="yellow", fontsize=7, va="top")
        ax.set_title(f"plane {plane}: {total[1]} of {total[0]} units accepted", fontsize=10)
    return fig


def plot_session(fields: list[tuple[dict[str, Any], Loaded | None]], *,
                 canvas_shape: tuple[int, int] | None = None) -> Figure:
    """Each field of view's mean image with its accepted units' contours.

    Parameters
    ----------
    fields : list of (record, Loaded or None)
        A session store's ``fields_of_view`` records (``name``, ``plane``, ``shape``,
        ``position``...) with each one's loaded results (None: not run yet).
    canvas_shape : (int, int), optional
        With mesoscope ROIs, their canvas: one panel per plane, each ROI at its position.
    """
    placed = canvas_shape is not None and any(r.get("position") is not None for r, _ in fields)
    return _canvas(fields, tuple(canvas_shape)) if placed else _grid(fields)  # type: ignore[arg-type]
