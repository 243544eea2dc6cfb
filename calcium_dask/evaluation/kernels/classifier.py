"""Neuron-shape classifier: ``cnn_pred`` in [0, 1] for each footprint, numpy only.

CaImAn scores footprints with a small convolutional network trained on annotated
footprints (Giovannucci et al. 2019, doi:10.7554/eLife.38173). This is a lighter
stand-in trained only on simulated data (:mod:`calcium_dask.train_classifier`):
each footprint is cropped to +-3 gSig around its centre of mass, resized to 24 x 24
and scaled to maximum 1; the crop's pixels and 24 rotation-invariant shape measures
(``_shape_features.shape_features``) feed a one-hidden-layer perceptron. The raw pixels let it
learn shapes (discs, rings, corners), the measures give it size, elongation,
fragmentation and roughness directly, so a few thousand simulated examples suffice
and inference is two small matrix products.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ._shape_features import N_FEATURES, crop_footprints, shape_features

__all__ = ["ShapeModel", "classify", "default_model_path", "load_model", "model_inputs"]

_ARRAYS = ("W1", "b1", "W2", "b2", "x_mean", "x_std")


@dataclass(frozen=True)
class ShapeModel:
    """Weights of the perceptron ``sigmoid(relu(z W1 + b1) W2 + b2)``, with
    ``z = (x - x_mean) / x_std`` and ``x`` = crop pixels then shape features.

    Attributes
    ----------
    W1 : ndarray (D, H) float32
    b1 : ndarray (H,) float32
    W2 : ndarray (H,) float32
    b2 : ndarray (1,) float32
    x_mean, x_std : ndarray (D,) float32
    size : int
        Side of the crops, pixels.
    """

    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    x_mean: np.ndarray
    x_std: np.ndarray
    size: int

    def __post_init__(self) -> None:
        D = self.size * self.size + N_FEATURES
        if self.W1.shape[0] != D or self.x_mean.shape != (D,) or self.x_std.shape != (D,):
            raise ValueError(f"model expects {self.W1.shape[0]} inputs, but crops of "
                             f"{self.size}^2 pixels and {N_FEATURES} features make {D}")

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Pre-sigmoid scores of inputs ``x`` (n, D)."""
        z = (np.asarray(x, np.float32) - self.x_mean) / self.x_std
        # a stack of one-row products: a batched float32 product rounds a row differently by
        # where it sits in the batch (BLAS tiles), and a unit's score must not depend on the others
        h = np.maximum((z[:, None, :] @ self.W1)[:, 0] + self.b1, 0.0)
        return (h[:, None, :] @ self.W2)[:, 0] + self.b2[0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probability of being a neuron, (n,) float64."""
        s = self.logits(x).astype(np.float64)
        return 0.5 * (1.0 + np.tanh(0.5 * s))  # the logistic function, overflow-free

    def save(self, path: str | os.PathLike) -> None:
        """Write a compressed ``.npz`` of plain arrays (no pickle)."""
        np.savez_compressed(path, **{k: getattr(self, k).astype(np.float32) for k in _ARRAYS},
                            size=np.int64(self.size))


def default_model_path() -> Path:
    """The weights shipped with the package."""
    return Path(__file__).with_name("shape_classifier.npz")


def load_model(path: str | os.PathLike | None = None) -> ShapeModel:
    """Read weights written by :meth:`ShapeModel.save` (``allow_pickle=False``)."""
    path = default_model_path() if path is None else Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"shape-classifier weights not found at {path}; create them with "
            "`python -m calcium_dask.train_classifier --out " f"{path}`")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in (*_ARRAYS, "size") if k not in z.files]
        if missing:
            raise ValueError(f"{path} is not a shape-classifier file (missing {missing})")
        arrays = {k: np.asarray(z[k], np.float32) for k in _ARRAYS}
        size = int(z["size"])
    arrays["b2"] = arrays["b2"].reshape(1)
    return ShapeModel(**arrays, size=size)


@lru_cache(maxsize=1)
def _default_model() -> ShapeModel:
    return load_model()


def model_inputs(crops: np.ndarray) -> np.ndarray:
    """Classifier inputs of ``(K, S, S)`` crops: pixels then shape features, (K, D)."""
    crops = np.asarray(crops, np.float32)
    return np.hstack([crops.reshape(len(crops), -1), shape_features(crops)])


def classify(A: sp.spmatrix, dims: tuple[int, int], *, gSig: float | tuple[float, float],
             model: ShapeModel | str | os.PathLike | None = None) -> np.ndarray:
    """Probability that each footprint has the shape of a neuron (CaImAn's ``cnn_pred``).

    Parameters
    ----------
    A : sparse (N, K)
        Footprints, pixel index ``y * W + x``, nonnegative.
    dims : (int, int)
        ``(H, W)``.
    gSig : float or (float, float)
        Half-size of a neuron, pixels (the CNMF parameter): the crops are scaled to it.
    model : ShapeModel or path, optional
        Default: the weights shipped with the package.

    Returns
    -------
    cnn_pred : ndarray (K,) float64
        In [0, 1]; empty footprints get 0. Deterministic.
    """
    if model is None:
        model = _default_model()
    elif not isinstance(model, ShapeModel):
        model = load_model(model)
    A = sp.csc_matrix(A)
    if A.shape[1] == 0:
        return np.zeros(0)
    crops = crop_footprints(A, tuple(dims), gSig=gSig, size=model.size)
    pred = model.predict(model_inputs(crops))
    pred[crops.reshape(len(crops), -1).max(axis=1) <= 0] = 0.0
    return pred
