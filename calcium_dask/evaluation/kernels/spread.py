"""How far each footprint spreads: one-photon components made of out-of-focus light.

In a one-photon movie the light of neurons far from the focal plane reaches the sensor as
blobs several times wider than a neuron, flashing with those neurons' transients. The ring
background absorbs the widest; blobs about twice a neuron's size pass CNMF-E's filter and
seed components whose traces and r_values are as good as a neuron's, and which only their
size gives away. ``gSig`` states a neuron's size (the SD of a Gaussian of its shape), so a
footprint that spreads well beyond it is not one of the neurons sought.

On the simulated miniscope movies this package tunes on (two seeds), true neurons' footprints
spread 2.9-5.5 pixels (5th-95th percentiles) for ``gSig = 3`` and the components made of
out-of-focus light 4.6-8.9; a limit of 1.8 ``gSig`` rejected 80 % of the latter and 3 % of
the neurons.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["footprint_spread"]


def footprint_spread(A: sp.spmatrix | np.ndarray, dims: tuple[int, int]) -> np.ndarray:
    """Spatial SD of each footprint, pixels: ``sqrt((var_y + var_x) / 2)`` of the footprint
    taken as a distribution over its pixels (a Gaussian blob of SD ``s`` gives ``s``).

    Parameters
    ----------
    A : (N, K) sparse or dense
        Footprints, pixel index ``y * W + x``, non-negative.
    dims : (H, W)

    Returns
    -------
    ndarray (K,) float64
        NaN for an empty footprint.
    """
    A = sp.csc_matrix(A, dtype=np.float64)
    yy, xx = np.divmod(np.arange(dims[0] * dims[1], dtype=np.float64), dims[1])
    mass = np.asarray(A.sum(0)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        my, mx = (A.T @ yy) / mass, (A.T @ xx) / mass
        var = (A.T @ (yy**2) + A.T @ (xx**2)) / mass - my**2 - mx**2
    return np.sqrt(np.maximum(var, 0.0) / 2.0)
