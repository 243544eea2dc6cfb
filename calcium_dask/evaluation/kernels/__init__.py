"""Evaluation kernels: pure functions of numpy/scipy arrays (no dask, xarray, zarr or parameters).

Trace SNR, spatial correlation (r_value), the shape classifier and its shipped weights,
acceptance, duplicates, residues of motion correction and of the background, dF/F. The
dask orchestration over a movie is :mod:`calcium_dask.evaluation.orchestrate`.
"""
