"""One self-contained HTML report of a results store.

Figures are inline base64 PNG images; the interactive views are bokeh models with
bokeh's JavaScript inlined (``bokeh.resources.INLINE``), so the file opens offline, from
an e-mail or an object store, with nothing fetched at view time. Each section whose data
is not in the store (a run stopped after motion correction, evaluation not run yet...)
is replaced by a one-line note; the report never writes into the store.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .._version import __version__
from ..errors import StoreError
from ..store import ResultsStore
from . import static
from ._data import MISSING, Loaded, load, select_units, unit_status

__all__ = ["write_report", "SECTIONS"]


@dataclass(frozen=True)
class Section:
    """A report section: anchor id, heading, and the function that renders its body."""

    id: str
    title: str
    render: Callable[[Loaded, int], str]


# -- HTML pieces ---------------------------------------------------------------------------
def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _png(fig: Figure, alt: str, dpi: int = 90) -> str:
    """A figure as an inline base64 PNG ``<img>`` (the figure is closed)."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _bokeh(model: Any) -> str:
    """A bokeh model as an inline ``<script>`` and its ``<div>`` (resources come with the page)."""
    from bokeh.embed import components

    script, div = components(model)
    return f'<div class="bokeh">{div}</div>\n{script}'


def _bokeh_resources() -> str:
    try:
        from bokeh.resources import INLINE
    except ImportError:
        return ""
    return INLINE.clone(components=["bokeh", "bokeh-widgets"]).render_js()


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header or ())
    head = f"<thead><tr>{head}</tr></thead>" if head else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _value(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (list, tuple, dict, bool)) or v is None else str(v)


# -- sections --------------------------------------------------------------------------------
def _report_units(loaded: Loaded, max_traces: int) -> tuple[np.ndarray, str]:
    """The units whose traces the report shows, and a sentence saying which they are."""
    root = loaded.root
    evaluated = "accepted" in root
    sel = select_units(root, "accepted")[:max_traces]
    kind = "accepted" if evaluated else "(evaluation not run yet)"
    return sel, f"The first {len(sel)} {kind} units" + ("" if evaluated else ", in store order") + "."


def _summary(loaded: Loaded, max_traces: int) -> str:
    if loaded.summary is None and loaded.summary_raw is None:
        return _note(MISSING["summary"])
    return _png(static.plot_summary(loaded.summary_raw, loaded.summary), "summary images")


def _shifts(loaded: Loaded, max_traces: int) -> str:
    if loaded.motion is None or "shifts" not in loaded.motion:
        return _note(MISSING["motion"])
    return _png(static.plot_shifts(loaded.motion), "motion shifts")


def _patch_grid(loaded: Loaded, max_traces: int) -> str:
    if loaded.motion is None or "template" not in loaded.motion:
        return _note(MISSING["motion"])
    if "patch_shifts" not in loaded.motion:
        return _note(MISSING["patch_shifts"])
    ax = static.plot_patch_grid(loaded)
    return _png(ax.figure, "motion patch grid")


def _quilt(loaded: Loaded, max_traces: int) -> str:
    if "patch" not in loaded.params:
        return _note(MISSING["params"])
    if loaded.summary is None and not loaded.has_units:
        return _note(MISSING["summary"])
    return _png(static.view_quilt(loaded).figure, "CNMF patches")


def _seeding(loaded: Loaded, max_traces: int) -> str:
    if loaded.corr_pnr is None:
        method = loaded.param("init", "method_init")
        if method == "greedy_roi":  # nothing missing: a two-photon run seeds otherwise
            return "<p>" + html.escape("Two-photon run (method_init='greedy_roi'): seeds come from greedy_roi, "
                                       "not from correlation and PNR images.") + "</p>"
        return _note("no correlation and PNR images (/corr_pnr) in this store")
    ds = loaded.corr_pnr
    text = (f"CNMF-E seeds neurons where the local correlation of the filtered movie reaches min_corr = "
            f"{ds.attrs.get('min_corr')} and its peak-to-noise ratio min_pnr = {ds.attrs.get('min_pnr')} "
            f"(images of the patches, per frame of the movie). Move the thresholds towards the pixels of "
            f"the neurons you see, and away from the background's.")
    return f"<p>{html.escape(text)}</p>" + _png(static.plot_corr_pnr(ds), "correlation and PNR images")


def _contour_figure(loaded: Loaded) -> Figure:
    """Accepted and rejected units side by side (all units in one panel before evaluation)."""
    panels = ("accepted", "rejected") if "accepted" in loaded.root else ("all",)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5.8), layout="constrained", squeeze=False)
    for ax, which in zip(axes[0], panels):
        static.plot_contours(loaded, which=which, ax=ax)
        ax.set_title(f"{which} units" if which != "all" else "all units (not evaluated yet)", fontsize=10)
    return fig


def _components(loaded: Loaded, max_traces: int) -> str:
    if not loaded.has_units:
        return _note(MISSING["cnmf"])
    status = unit_status(loaded.root)
    counts = ", ".join(f"{int(np.sum(status == s))} {s}" for s in ("accepted", "rejected", "unevaluated")
                       if np.any(status == s))
    fig = _contour_figure(loaded)
    parts = [f"<p>{len(status)} units: {counts}.</p>", _png(fig, "contours of accepted and rejected units")]
    if _has_bokeh():
        from .interactive import plot_contours_interactive

        parts += ["<p>Interactive: zoom with the wheel, hover a contour for its metrics.</p>",
                  _bokeh(plot_contours_interactive(loaded))]
    return "\n".join(parts)


def _viewer(loaded: Loaded, max_traces: int) -> str:
    if not loaded.has_units:
        return _note(MISSING["cnmf"])
    if not _has_bokeh():
        return _note("the component viewer needs bokeh: pip install 'calcium-dask[viz]'")
    from .interactive import view_components

    sel, which = _report_units(loaded, max_traces)
    if len(sel) == 0:
        return _note("no accepted units")
    return f"<p>{which} Move the slider to step through them.</p>\n" + _bokeh(view_components(loaded, idx=sel))


def _traces(loaded: Loaded, max_traces: int) -> str:
    if not loaded.has_units:
        return _note(MISSING["cnmf"])
    sel, which = _report_units(loaded, max_traces)
    if len(sel) == 0:
        return _note("no accepted units")
    return f"<p>{which}</p>" + _png(static.plot_traces(loaded, sel).figure, "traces")


def _dff(loaded: Loaded, max_traces: int) -> str:
    if not loaded.has_units:
        return _note(MISSING["cnmf"])
    if "dff" not in loaded.root:
        return _note(MISSING["dff"])
    sel, which = _report_units(loaded, max_traces)
    if len(sel) == 0:
        return _note("no accepted units")
    return f"<p>{which}</p>" + _png(static.plot_traces(loaded, sel, dff=True).figure, "dF/F")


def _metrics(loaded: Loaded, max_traces: int) -> str:
    if not loaded.has_units:
        return _note(MISSING["cnmf"])
    if not any(m in loaded.root for m in ("snr", "r_value", "cnn_pred")):
        return _note(MISSING["evaluation"])
    q = loaded.params.get("quality", {})
    rule = ("A unit is accepted when it passes any of min_SNR, rval_thr, min_cnn_thr (solid lines) "
            "and all of the lowest bounds (dashed).") if q else "No thresholds recorded in the store."
    return f"<p>{rule}</p>" + _png(static.plot_metrics(loaded), "evaluation metrics")


def _params(loaded: Loaded, max_traces: int) -> str:
    if not loaded.params:
        return _note(MISSING["params"])
    tables = [f'<div class="group"><h3>{html.escape(g)}</h3>'
              + _table([(k, _value(v)) for k, v in values.items()], ("name", "value")) + "</div>"
              for g, values in loaded.params.items() if isinstance(values, dict)]
    return f'<div class="groups">{"".join(tables)}</div>'


def _stages(loaded: Loaded, max_traces: int) -> str:
    stages = loaded.attrs.get("stages") or {}
    if not stages:
        return _note(MISSING["stages"])
    rows = []
    for name, rec in stages.items():
        rec = rec if isinstance(rec, dict) else {"seconds": rec}
        details = ", ".join(f"{k}={_value(v)}" for k, v in rec.items() if k not in ("seconds", "finished"))
        rows.append((name, f"{float(rec.get('seconds', np.nan)):.2f}", rec.get("finished", ""), details))
    total = sum(float(r.get("seconds", 0) if isinstance(r, dict) else r) for r in stages.values())
    rows.append(("total", f"{total:.2f}", "", ""))
    return _table(rows, ("stage", "seconds", "finished", "details"))


SECTIONS: tuple[Section, ...] = (
    Section("summary", "Summary images", _summary),
    Section("shifts", "Motion shifts", _shifts),
    Section("patch-grid", "Motion patch grid", _patch_grid),
    Section("quilt", "CNMF patches", _quilt),
    Section("seeding", "One-photon seeding (correlation and PNR)", _seeding),
    Section("components", "Components", _components),
    Section("viewer", "Component viewer", _viewer),
    Section("traces", "Traces", _traces),
    Section("dff", "dF/F", _dff),
    Section("metrics", "Evaluation metrics", _metrics),
    Section("params", "Parameters", _params),
    Section("stages", "Stage timings", _stages),
)


def _render(section: Section, loaded: Loaded, max_traces: int, prefix: str = "", level: int = 2) -> str:
    try:
        body = section.render(loaded, max_traces)
    except Exception as e:  # one broken view must not cost the whole report
        warnings.warn(f"report section '{section.title}' failed: {type(e).__name__}: {e}", stacklevel=2)
        plt.close("all")
        body = _note(f"could not draw this section ({type(e).__name__}: {e})")
    return (f'<section id="{prefix}{section.id}">\n<h{level}>{html.escape(section.title)}</h{level}>\n{body}\n'
            "</section>")


# -- page --------------------------------------------------------------------------------------
def _shape(loaded: Loaded) -> str:
    shape = loaded.attrs.get("shape")
    if not shape:
        dims = {}
        for ds in (loaded.motion, loaded.summary, loaded.root):
            if ds is not None:
                dims.update({d: int(n) for d, n in ds.sizes.items() if d in ("frame", "y", "x")})
        shape = [dims.get(d, "?") for d in ("frame", "y", "x")] if dims else None
    return " x ".join(map(str, shape)) + " (frames x height x width)" if shape else "unknown"


def _overview(loaded: Loaded, url: str) -> str:
    fr = loaded.fr
    stage_versions = {r.get("version") for r in (loaded.attrs.get("stages") or {}).values() if isinstance(r, dict)}
    version = loaded.attrs.get("version") or ", ".join(sorted(v for v in stage_versions if v)) or "unknown"
    rows = [("input", _value(loaded.attrs.get("input") or "unknown")), ("results store", url),
            ("shape", _shape(loaded)), ("frame rate", f"{fr:g} Hz" if fr else "unknown"),
            ("calcium-dask version (run)", version), ("calcium-dask version (report)", __version__),
            ("report written", time.strftime("%Y-%m-%d %H:%M:%S"))]
    return _table(rows)


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1150px;
padding:0 1.5em 3em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
h3{margin:.4em 0;font-size:1em}
nav a{margin-right:1em;font-size:.9em}
img{max-width:100%;height:auto;display:block}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}
.note{color:#777;font-style:italic}
.groups{display:flex;flex-wrap:wrap;gap:1em}
.group table{margin:0}
"""


def _page(loaded: Loaded, url: str, max_traces: int) -> str:
    nav = " ".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in SECTIONS)
    body = "\n".join(_render(s, loaded, max_traces) for s in SECTIONS)
    title = f"calcium-dask report: {Path(str(loaded.attrs.get('input') or url)).name}"
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n{_bokeh_resources()}\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{_overview(loaded, url)}\n<nav>{nav}</nav>\n{body}\n</body>\n</html>\n")


# -- a session of several fields of view ----------------------------------------------------
def _load_field(store: ResultsStore, name: str) -> Loaded | None:
    try:
        return load(store.field(name))
    except StoreError:
        return None  # this field of view has not run yet


def _session_overview(store: ResultsStore, attrs: dict, fields: list[tuple[dict, Loaded | None]]) -> str:
    from .session import plot_session, units_per_field

    canvas = attrs.get("canvas_shape")
    fig = plot_session(fields, canvas_shape=tuple(canvas) if canvas else None)
    rows = []
    for record, loaded in fields:
        n, acc = units_per_field(loaded)
        stages = ", ".join((loaded.attrs.get("stages") or {}) if loaded else {}) or "none"
        rows.append((record["name"], "" if record.get("plane") is None else record["plane"],
                     "" if record.get("roi") is None else record["roi"], " x ".join(map(str, record["shape"])),
                     "" if n is None else n, "" if acc is None else acc, stages))
    links = " ".join(f'<a href="#{html.escape(r["name"])}">{html.escape(r["name"])}</a>' for r, _ in fields)
    table = _table(rows, ("field of view", "plane", "roi", "frames x height x width", "units", "accepted",
                          "stages done"))
    return (f'<section id="session">\n<h2>Session overview</h2>\n<p>Each field of view\'s mean image with its '
            f"accepted units. Fields of view: {links}</p>\n{_png(fig, 'session overview')}\n{table}\n</section>")


def _field_block(record: dict, loaded: Loaded | None, max_traces: int) -> str:
    name = html.escape(record["name"])
    if loaded is None:
        return f'<section id="{name}">\n<h2>{name}</h2>\n{_note("this field of view has not run yet")}\n</section>'
    nav = " ".join(f'<a href="#{name}-{s.id}">{html.escape(s.title)}</a>' for s in SECTIONS)
    body = "\n".join(_render(s, loaded, max_traces, prefix=f"{name}-", level=3) for s in SECTIONS)
    parts = [f"{k} {record[k]}" for k in ("plane", "roi", "channel") if record.get(k) is not None]
    if record.get("align_channel") not in (None, record.get("channel")):
        parts.append(f"motion from channel {record['align_channel']}")
    if record.get("position") is not None:
        parts.append(f"at (y, x) = ({record['position'][0]:g}, {record['position'][1]:g}) on the canvas")
    return (f'<section id="{name}">\n<h2>{name}</h2>\n<p>{html.escape(", ".join(parts))}; '
            f"<a href=\"#session\">back to the overview</a></p>"
            f"\n<nav>{nav}</nav>\n{body}\n</section>")


def _session_page(store: ResultsStore, attrs: dict, max_traces: int) -> str:
    fields = [(r, _load_field(store, r["name"])) for r in attrs["fields_of_view"]]
    rows = [("input", _value(attrs.get("input") or "unknown")), ("results store", store.url),
            ("format", str(attrs.get("format", "unknown"))),
            ("layout", f"{attrs.get('nplanes')} plane(s), {attrs.get('nchannels')} channel(s), "
                       f"{attrs.get('nrois') or 0} ROI(s)"),
            ("frame rate", f"{float(attrs['fr']):g} Hz per field of view" if attrs.get("fr") else "unknown"),
            ("calcium-dask version (run)", str(attrs.get("version", "unknown"))),
            ("calcium-dask version (report)", __version__), ("report written", time.strftime("%Y-%m-%d %H:%M:%S"))]
    blocks = "\n".join(_field_block(r, lo, max_traces) for r, lo in fields)
    title = f"calcium-dask report: {Path(str(attrs.get('input') or store.url)).name}"
    nav = '<a href="#session">Session overview</a> ' + " ".join(
        f'<a href="#{html.escape(r["name"])}">{html.escape(r["name"])}</a>' for r, _ in fields)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n{_bokeh_resources()}\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{_table(rows)}\n<nav>{nav}</nav>\n"
            f"{_session_overview(store, attrs, fields)}\n{blocks}\n</body>\n</html>\n")


def write_report(store_url: str | ResultsStore | Any, out_html: str | Path, *, storage_options: dict | None = None,
                 max_traces: int = 20) -> Path:
    """Write a single self-contained HTML report of a results store.

    Sections: summary images before and after motion correction, shifts over time, the
    motion patch grid, the CNMF patch quilt, the correlation and PNR images CNMF-E seeded
    on (one-photon runs), contours of accepted and rejected units
    (static and interactive), a component viewer, traces and dF/F of up to
    ``max_traces`` accepted units, histograms of the evaluation metrics with their
    thresholds, the parameters by group and the stage timings. A section whose data is
    missing is replaced by a one-line note. A session of several fields of view (planes,
    mesoscope ROIs) gets an overview (each one's mean image with its accepted units, on the
    mesoscope canvas when there are ROIs, and its units) linking to one block of these
    sections per field of view.

    Parameters
    ----------
    store_url : str, ResultsStore or Results
        The results store (local path or fsspec URL), or results that live in one.
    out_html : str or Path
        File to write (its folder is created).
    storage_options : dict, optional
        fsspec options for a remote store.
    max_traces : int
        Largest number of units whose traces are drawn (of a tracking store: tracked units
        drawn across sessions, at most 4).

    Returns
    -------
    pathlib.Path
        ``out_html``.
    """
    if getattr(store_url, "store", None) is not None:  # Results (or a MotionResult) kept in a store
        store_url = store_url.store
    store = store_url if isinstance(store_url, ResultsStore) else ResultsStore(str(store_url),
                                                                                 dict(storage_options or {}))
    from ..tracking import is_tracking_store  # a tracking store has a report of its own

    if store.group is None and is_tracking_store(store.url, store.storage_options):
        from .tracking import write_tracking_report

        return write_tracking_report(store.url, out_html, storage_options=store.storage_options,
                                     max_units=min(max_traces, 4))
    attrs = dict(store.root(mode="r").attrs) if store.exists() and store.group is None else {}
    if attrs.get("fields_of_view"):
        page = _session_page(store, attrs, max_traces)
    else:
        page = _page(load(store), store.location, max_traces)
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
