"""What every local worker needs loaded, imported once by the process that forks them.

:func:`calcium_dask.cluster.connect` starts local workers with Python's ``forkserver``
method and has the fork server import this module first: each worker is then a fork of
a process that already holds OpenCV, zarr, the first stage's task modules (xarray,
dask.array) and a started numba runtime, instead of a new interpreter importing them
(~1 s of CPU per worker, and the first task waited for it). The fork server runs no
thread and no task: nothing here starts one.
"""

from __future__ import annotations

import cv2  # noqa: F401
import zarr  # noqa: F401

from .cluster import warm_up

warm_up()  # the task modules and numba's compiler, as a spawned worker's warm-up thread does
