"""calcium-dask: calcium-imaging movies to neurons, as dask graphs.

Motion correction (NoRMCorre), CNMF on patches, merge and refit, component evaluation and
dF/F, on a chunked ``xarray``/``dask`` movie scheduled on any ``dask.distributed`` cluster.
"""

from __future__ import annotations

from ._version import __version__
from .errors import CalciumDaskError, MovieError, ParamsError, StoreError
from .io import open_movie
from .params import Params

__all__ = ["__version__", "open_movie", "Params", "connect", "CalciumDaskError", "MovieError",
           "ParamsError", "StoreError"]

# heavier entry points load on first use, so `import calcium_dask` and the CLI start fast
_LAZY = {"connect": ".cluster"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'calcium_dask' has no attribute '{name}'")
