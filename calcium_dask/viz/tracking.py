"""Views of a tracking store: contours of the tracked units over each session's image
coloured by identity, one tracked unit's footprints and traces across sessions, and the
HTML report of a tracking store.

The views read the tracking store and, for a unit's own footprint or trace in a session,
that session's results store (only the units drawn); none computes on a movie.
"""

from __future__ import annotations

import html
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from .._version import __version__
from ..tracking import Tracking, open_tracking
from ._data import contour_paths, envelope, robust_limits
from .report import CSS, _note, _png, _table, _value

__all__ = ["plot_tracked_contours", "plot_tracked_unit", "write_tracking_report", "identity_colors"]

UNMATCHED = "0.55"
GOLDEN = 0.618033988749895


def identity_colors(tracked_units: np.ndarray) -> list[tuple[float, ...]]:
    """A bright colour per tracked unit, the same in every panel: hues a golden ratio of a
    turn apart, so units with nearby numbers differ (none is grey: grey is "unmatched")."""
    from matplotlib.colors import hsv_to_rgb

    return [tuple(hsv_to_rgb(((int(t) * GOLDEN) % 1.0, 0.9, 1.0))) for t in np.atleast_1d(tracked_units)]


def _tracking(source: Any) -> Tracking:
    return source if isinstance(source, Tracking) else open_tracking(str(source))


def _image(tr: Tracking, s: int, image: str) -> np.ndarray:
    return np.asarray(tr.ds[image].values[s], np.float32)


def _show(ax: Axes, img: np.ndarray, title: str) -> None:
    finite = np.isfinite(img)
    vmin, vmax = robust_limits(img[finite]) if finite.any() else (0.0, 1.0)
    ax.imshow(np.where(finite, img, np.nan), cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def plot_tracked_contours(tracking: Any, *, sessions: Sequence[int | str] | None = None, image: str = "mean",
                          min_sessions: int = 2, fraction: float = 0.3, max_sessions: int = 6,
                          fig: Figure | None = None) -> Figure:
    """Each session's units over its image in the reference frame, coloured by identity.

    Parameters
    ----------
    tracking : Tracking or str
        A tracking result or store.
    sessions : sequence of int or str, optional
        Sessions to draw (default: the first ``max_sessions``).
    image : {'mean', 'correlation'}
    min_sessions : int
        Units tracked in fewer sessions are drawn thin and grey.
    fraction : float
        Contour level, fraction of each footprint's maximum.
    fig : Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
        One panel per session; each contour a ``LineCollection`` with ``gid='tracked-<t>'``
        (``t`` the tracked unit), the same colour in every panel.
    """
    tr = _tracking(tracking)
    idx = [tr._session(s) for s in (sessions if sessions is not None else range(min(max_sessions, len(tr.sessions))))]
    cols = min(3, len(idx))
    rows = int(np.ceil(len(idx) / cols))
    fig = fig or plt.figure(figsize=(4.2 * cols, 4.4 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    seen = (tr.assignments >= 0).sum(1)
    for ax, s in zip(axes, idx):
        units = np.flatnonzero(tr.assignments[:, s] >= 0)
        name = tr.sessions[s]
        if not bool(tr.ds["registered"].values[s]):
            ax.set_title(name, fontsize=9)
            _note_axes(ax, f"not registered: {tr.errors.get(name, '')}")
            continue
        _show(ax, _image(tr, s, image), f"{name}: {len(units)} units"
              + (" (reference)" if s == tr.reference else ""))
        for lo in range(0, len(units), 64):
            part = units[lo:lo + 64]
            for t, fp, color in zip(part, tr.session_footprints(s, part), identity_colors(part)):
                matched = seen[t] >= min_sessions
                ax.add_collection(LineCollection(contour_paths(fp, fraction), colors=[color if matched else UNMATCHED],
                                                 linewidths=1.2 if matched else 0.6, gid=f"tracked-{t}"))
    for ax in axes[len(idx):]:
        ax.set_visible(False)
    fig.suptitle(f"Tracked units over the sessions' {image} images (colour: identity; grey: seen in fewer than "
                 f"{min_sessions} sessions)", fontsize=10)
    return fig


def _note_axes(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, fontsize=8, color="0.35",
            gid="note")
    ax.set_xticks([])
    ax.set_yticks([])


def _crop(centre: np.ndarray, shape: tuple[int, int], half: int) -> tuple[slice, slice]:
    cy, cx = (int(round(v)) if np.isfinite(v) else n // 2 for v, n in zip(centre, shape))
    ys = slice(max(0, cy - half), min(shape[0], cy + half + 1))
    xs = slice(max(0, cx - half), min(shape[1], cx + half + 1))
    return ys, xs


def plot_tracked_unit(tracking: Any, tracked_unit: int, *, variable: str = "dff", half: int = 16,
                      max_points: int = 2000, fig: Figure | None = None) -> Figure:
    """One tracked unit in every session it is seen in: its footprint over the session's
    mean image (top) and its trace (bottom), side by side.

    Parameters
    ----------
    tracking : Tracking or str
    tracked_unit : int
    variable : str
        Trace to draw from the sessions' stores (``dff``, ``traces``...).
    half : int
        Half-size of the image crop around the unit, pixels.
    fig : Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
        Two rows, one column per session; traces are lines with ``gid='trace-<session>'``.
    """
    tr = _tracking(tracking)
    t = int(tracked_unit)
    row = tr.assignments[t]
    sessions = list(np.flatnonzero(row >= 0))
    n = max(1, len(sessions))
    fig = fig or plt.figure(figsize=(2.6 * n + 0.5, 5.0), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    ys, xs = _crop(np.asarray(tr.ds["centroid"].values[t]), tuple(tr.ds.sizes[d] for d in ("y", "x")), half)
    color = identity_colors([t])[0]
    union = np.asarray(tr.ds["footprints"].values[t])
    for k, s in enumerate(sessions):
        name = tr.sessions[s]
        ax = axes[0, k]
        _show(ax, _image(tr, s, "mean")[ys, xs], f"{name}: unit {int(row[s])}")
        fp = tr.session_footprints(s, [t])[0]
        ax.add_collection(LineCollection(contour_paths(fp[ys, xs], 0.3), colors=[color], linewidths=1.5,
                                         gid=f"footprint-{name}"))
        ax.add_collection(LineCollection(contour_paths(union[ys, xs], 0.3), colors=["white"], linewidths=0.8,
                                         linestyles="dashed", gid=f"union-{name}"))
        _trace_panel(axes[1, k], tr, s, t, variable, max_points, color)
    conf = float(tr.ds["confidence"].values[t])
    fig.suptitle(f"tracked unit {t}: seen in {len(sessions)} of {len(tr.sessions)} sessions"
                 + (f", confidence {conf:.2f}" if np.isfinite(conf) else "")
                 + " (white dashed: union footprint)", fontsize=10)
    return fig


def _trace_panel(ax: Axes, tr: Tracking, s: int, t: int, variable: str, max_points: int, color: Any) -> None:
    name = tr.sessions[s]
    try:
        with dask.config.set(scheduler="sync"):  # one unit's trace, read here
            y = np.asarray(tr.dff(s, [t], variable=variable).values[0], np.float64)
    except Exception as e:  # noqa: BLE001 - a store moved or without that variable: say so in the panel
        _note_axes(ax, f"no {variable}: {e}")
        return
    x, yd = envelope(y, max_points)
    ax.plot(x, yd, color=color, linewidth=0.7, gid=f"trace-{name}")
    ax.set_xlabel("frame", fontsize=8)
    ax.set_ylabel(variable, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.margins(x=0)


# -- report ---------------------------------------------------------------------------------
def _fmt(value: float, spec: str, ok: bool) -> str:
    return format(value, spec) if ok and np.isfinite(value) else ""


def _sessions_table(tr: Tracking) -> str:
    ds = tr.ds
    rows = []
    for s, name in enumerate(tr.sessions):
        ok = bool(ds["registered"].values[s])
        rows.append((name + (" (reference)" if s == tr.reference else ""), str(ds["session_url"].values[s]) or "-",
                     str(int(ds["session_units"].values[s])), str(int((tr.assignments[:, s] >= 0).sum())),
                     "yes" if ok else "no", _fmt(float(ds["rotation_deg"].values[s]), "+.2f", ok),
                     ", ".join(_fmt(float(v), "+.1f", ok) for v in ds["translation"].values[s]) if ok else "",
                     _fmt(float(ds["scale"].values[s, 0]), ".3f", ok), _fmt(float(ds["align_corr"].values[s]), ".2f", ok),
                     str(ds["session_error"].values[s])))
    return _table(rows, ("session", "results store", "units in store", "units tracked", "registered",
                         "rotation (deg)", "shift (y, x px)", "scale", "image corr", "problem"))


def _summary_figure(tr: Tracking) -> Figure:
    seen = (tr.assignments >= 0).sum(1)
    conf = np.asarray(tr.ds["confidence"].values, np.float64)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3), layout="constrained")
    a.hist(seen, bins=np.arange(0.5, len(tr.sessions) + 1.5), color="tab:blue", edgecolor="0.3")
    a.set_xlabel("sessions a tracked unit is seen in")
    a.set_ylabel("tracked units")
    finite = conf[np.isfinite(conf)]
    b.hist(finite, bins=20, range=(0, 1), color="tab:green", edgecolor="0.3")
    b.set_xlabel("confidence (1 - mean cost over its pairs)")
    b.set_ylabel("tracked units")
    return fig


def _units_to_show(tr: Tracking, n: int) -> np.ndarray:
    seen = (tr.assignments >= 0).sum(1)
    conf = np.nan_to_num(np.asarray(tr.ds["confidence"].values, np.float64), nan=-1)
    order = np.lexsort((-conf, -seen))
    return order[seen[order] > 1][:n]


def _sections(tr: Tracking, max_units: int) -> list[tuple[str, str, Any]]:
    def overview() -> str:
        seen = (tr.assignments >= 0).sum(1)
        text = (f"<p>{len(seen)} tracked units over {len(tr.sessions)} sessions; {int((seen > 1).sum())} seen in two "
                f"or more, {len(tr.found_in_all())} in every registered session.</p>")
        return text + _png(_summary_figure(tr), "tracked units by sessions seen and confidence")

    def units() -> str:
        shown = _units_to_show(tr, max_units)
        if len(shown) == 0:
            return _note("no unit is tracked in two or more sessions")
        n = max(1, max(int((tr.assignments[t] >= 0).sum()) for t in shown))
        fig = plt.figure(figsize=(2.6 * n + 0.5, 4.6 * len(shown)), layout="constrained")
        for sub, t in zip(np.atleast_1d(fig.subfigures(len(shown), 1)), shown):
            plot_tracked_unit(tr, int(t), fig=sub)
        return (f"<p>The {len(shown)} units seen in the most sessions, most confident first: each session's "
                "footprint over its mean image (common frame) and its dF/F.</p>" + _png(fig, "tracked units"))

    params = tr.ds.attrs.get("params") or {}
    return [("sessions", "Sessions and their alignment", lambda: _sessions_table(tr)),
            ("tracked", "Tracked units", overview),
            ("contours", "Contours across sessions",
             lambda: _png(plot_tracked_contours(tr), "contours of tracked units coloured by identity")),
            ("units", "Tracked units across sessions", units),
            ("params", "Tracking parameters",
             lambda: _table([(k, _value(v)) for k, v in params.items()], ("name", "value")) if params
             else _note("no parameters recorded"))]


def _render(sid: str, title: str, body: Any) -> str:
    try:
        content = body()
    except Exception as e:  # one broken view must not cost the whole report
        warnings.warn(f"report section '{title}' failed: {type(e).__name__}: {e}", stacklevel=2)
        plt.close("all")
        content = _note(f"could not draw this section ({type(e).__name__}: {e})")
    return f'<section id="{sid}">\n<h2>{html.escape(title)}</h2>\n{content}\n</section>'


def write_tracking_report(source: Any, out_html: str | Path, *, storage_options: dict | None = None,
                          max_units: int = 4) -> Path:
    """A self-contained HTML report of a tracking store (sessions and their alignment,
    tracked units, contours across sessions, a few units across sessions, parameters).

    Parameters
    ----------
    source : Tracking or str
        A tracking result or the URL of a tracking store.
    out_html : str or Path
    storage_options : dict, optional
    max_units : int
        Tracked units drawn one by one.
    """
    tr = source if isinstance(source, Tracking) else open_tracking(str(source), storage_options=storage_options)
    sections = _sections(tr, max_units)
    nav = " ".join(f'<a href="#{sid}">{html.escape(title)}</a>' for sid, title, _ in sections)
    body = "\n".join(_render(*s) for s in sections)
    title = f"calcium-dask tracking report: {Path(str(tr.url or 'tracking')).name}"
    overview = _table([("tracking store", str(tr.url or "(not written)")), ("sessions", ", ".join(tr.sessions)),
                       ("reference", tr.sessions[tr.reference]),
                       ("calcium-dask version (run)", str(tr.ds.attrs.get("version", "unknown"))),
                       ("calcium-dask version (report)", __version__),
                       ("report written", time.strftime("%Y-%m-%d %H:%M:%S"))])
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{overview}\n<nav>{nav}</nav>\n{body}\n</body>\n</html>\n")
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
