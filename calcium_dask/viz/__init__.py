"""Views of a results store: static (matplotlib), interactive (bokeh), movies and the HTML report.

Static views and the report need only matplotlib; the interactive views need bokeh
(``pip install 'calcium-dask[viz]'``) and are imported on first use. No view computes on
the movie beyond reading the frames it shows, and none writes into the results store.
"""

from __future__ import annotations

from typing import Any

from .movie import play
from .report import write_report
from .static import (plot_contours, plot_corr_pnr, plot_metrics, plot_patch_grid, plot_shifts, plot_summary,
                     plot_traces, view_quilt)

__all__ = ["plot_contours", "plot_shifts", "plot_patch_grid", "view_quilt", "plot_summary", "plot_traces",
           "plot_metrics", "plot_corr_pnr", "plot_contours_interactive", "view_components", "play", "write_report",
           "plot_tracked_contours", "plot_tracked_unit", "write_tracking_report"]

_LAZY = {"plot_contours_interactive": ".interactive", "view_components": ".interactive",
         "plot_tracked_contours": ".tracking", "plot_tracked_unit": ".tracking", "write_tracking_report": ".tracking"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'calcium_dask.viz' has no attribute '{name}'")
