"""``python -m calcium_dask`` runs the command line."""

from .cli import main

main()
