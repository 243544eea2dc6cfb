"""``calcium-dask serve``: an analysis service over HTTP, and its client.

The server needs the ``service`` extra (``pip install 'calcium-dask[service]'``). Submodules:
``app`` (the ASGI app), ``api``/``pages``/``metrics`` (its routes), ``status`` (status
reads answered from memory), ``models``/``db``/
``migrations`` (the database), ``queue`` and ``runner`` (runs), ``auth`` (tokens),
``paths`` (allowed roots), ``manifests`` (batches), ``schemas`` (the API's JSON),
``server`` (start-up), ``commands`` (the CLI), ``client`` (for notebooks and scripts).
"""

from __future__ import annotations

__all__ = ["Client", "RunFailed", "ServiceRequestError"]


def __getattr__(name: str):
    if name in __all__:  # loaded on first use: the CLI imports this package and must start fast
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'calcium_dask.service' has no attribute '{name}'")
