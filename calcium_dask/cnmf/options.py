"""Keyword arguments of the CNMF kernels unpacked from the parameter groups."""

from __future__ import annotations

from typing import Any

from ..params import Params

__all__ = ["spatial_options", "patch_update_options"]


def spatial_options(params: Params) -> dict[str, Any]:
    """:func:`~calcium_dask.cnmf.kernels.spatial.update_spatial`'s options from ``params.spatial``."""
    sp = params.spatial
    return dict(thr_method=sp.thr_method, maxthr=sp.maxthr, nrgthr=sp.nrgthr, extract_cc=sp.extract_cc,
                update_background=sp.update_background_components)


def patch_update_options(params: Params) -> dict[str, Any]:
    """:func:`~calcium_dask.cnmf.kernels.fit.fit_patch`'s options of its spatial and temporal
    updates (run when the patches do not only initialise, ``patch.only_init=False``) and of
    its pixel noise."""
    tp = params.temporal
    return dict(temporal_iterations=tp.ITER, spatial_options=spatial_options(params),
                temporal_options=dict(s_min=tp.s_min, optimize_g=tp.optimize_g),
                max_num_samples_fft=params.preprocess.max_num_samples_fft)
