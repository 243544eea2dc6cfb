"""CNMF kernels: pure functions of numpy/scipy arrays (no dask, xarray, zarr or parameters).

Noise (PSD), initialisation (``greedy_roi``), HALS, spatial and temporal updates, OASIS
deconvolution, merging, the patch grid and the products of frames with sparse footprints.
The dask orchestration that maps them over patches and time chunks is
:mod:`calcium_dask.cnmf.patches` and :mod:`calcium_dask.cnmf.refit`.
"""
