"""calcium-dask: calcium-imaging movies to neurons, as dask graphs.

Motion correction (NoRMCorre), CNMF on patches, merge and refit, component evaluation and
dF/F, on a chunked ``xarray``/``dask`` movie scheduled on any ``dask.distributed`` cluster.
"""

from __future__ import annotations

from ._version import __version__
from .errors import CalciumDaskError, MovieError, ParamsError, StoreError

# everything else loads on first use, so `import calcium_dask` and the CLI start fast (the
# movie readers import dask.array and xarray: ~1 s; `calcium-dask --version` needs none of it)
_LAZY = {"open_movie": ".io", "open_session": ".io", "Params": ".params", "connect": ".cluster",
         "motion_correct": ".motion", "apply_shifts": ".motion", "corrected_movie": ".motion",
         "summary_images": ".summary", "cnmf": ".cnmf", "evaluate": ".pipeline",
         "Results": ".results", "open_results": ".results", "run_pipeline": ".pipeline",
         "run_fields": ".fields", "fields_of_view": ".results", "viz": ".viz", "datasets": ".datasets",
         "register_sessions": ".tracking", "open_tracking": ".tracking", "Tracking": ".tracking"}
_MODULES = {"cnmf", "viz", "datasets"}  # names that are subpackages (cnmf is also callable)

__all__ = ["__version__", "CalciumDaskError", "MovieError", "ParamsError", "StoreError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name], __name__)
        # `calcium_dask.cnmf` is also a subpackage, which its import binds here; the
        # subpackage is callable as its `cnmf` function (see cnmf/__init__.py)
        return module if name in _MODULES else getattr(module, name)
    raise AttributeError(f"module 'calcium_dask' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
