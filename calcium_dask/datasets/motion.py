"""Brain motion: rigid trajectory, smooth non-rigid deformation, remap coordinates.

Convention: ``d(t, p)`` is the displacement of the content, so the observed frame is
``observed(t, p) = clean(t, p - d(t, p))`` and a correction applies ``-d``.
``d(t, p) = shifts[t] + By @ nr_field[t, c] @ Bx.T`` for component ``c`` (0 = y, 1 = x).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline
from scipy.ndimage import gaussian_filter1d

from .background import smooth_noise_1d


def rigid_shifts(rng: np.random.Generator, *, T: int, fr: float, rigid_max: float,
                 drift_amp_range: tuple[float, float], jitter_sd: float, breath_amp: float,
                 event_rate_hz: float, event_amp_range: tuple[float, float]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Rigid displacement: slow drift + jitter + breathing + brief motion events.

    The sum is soft-limited by ``rigid_max * tanh(s / rigid_max)`` per axis, so no
    component ever reaches ``rigid_max``; ``rigid_max=0`` gives no rigid motion.

    Returns
    -------
    shifts : ndarray (T, 2) float32
        ``(y, x)`` displacement of the content, pixels.
    breath : ndarray (T,)
        Breathing phase signal in [-1, 1] (drives part of the non-rigid field).
    """
    drift = np.stack([_drift(rng, T, fr) * rng.uniform(*drift_amp_range) for _ in range(2)], 1)
    jitter = rng.normal(0.0, jitter_sd, (T, 2))
    freq = rng.uniform(0.8, 2.5)  # Hz; stays below Nyquist at >= 5 Hz frame rates
    phase = 2 * np.pi * freq * np.arange(T) / fr + rng.uniform(0, 2 * np.pi)
    phase += np.cumsum(0.05 * rng.standard_normal(T))  # breathing is not a metronome
    breath = np.sin(phase)
    heading = rng.normal(0.0, 0.3)  # mostly along y (anterior-posterior)
    breathing = breath_amp * breath[:, None] * np.array([np.cos(heading), np.sin(heading)])
    events = _motion_events(rng, T, fr, event_rate_hz, event_amp_range)
    total = drift + jitter + breathing + events
    if rigid_max <= 0:  # a motion-free movie (the draws above keep the streams aligned)
        return np.zeros((T, 2), np.float32), breath
    return (rigid_max * np.tanh(total / rigid_max)).astype(np.float32), breath


def _drift(rng: np.random.Generator, T: int, fr: float) -> np.ndarray:
    """Smooth random walk scaled to a maximum |value| of 1."""
    walk = gaussian_filter1d(np.cumsum(rng.standard_normal(T)), 2.0 * fr, mode="nearest")
    walk -= walk.mean()
    return walk / max(np.abs(walk).max(), 1e-12)


def _motion_events(rng: np.random.Generator, T: int, fr: float, rate_hz: float,
                   amp_range: tuple[float, float]) -> np.ndarray:
    """Sudden displacements (fast onset, exponential return) at Poisson times."""
    out = np.zeros((T, 2))
    n = rng.poisson(rate_hz * T / fr)
    t = np.arange(T)
    for onset in rng.integers(0, T, n):
        amp = rng.uniform(*amp_range)
        phi = rng.uniform(0, 2 * np.pi)
        decay = rng.uniform(0.3, 1.0) * fr
        dt = np.maximum(t - onset, 0)
        shape = np.where(t >= onset, (1 - np.exp(-(dt + 1) / 1.5)) * np.exp(-dt / decay), 0.0)
        out += amp * shape[:, None] / shape.max() * np.array([np.sin(phi), np.cos(phi)])
    return out


def nonrigid_field(rng: np.random.Generator, *, T: int, fr: float, grid: tuple[int, int],
                   nonrigid_max: float, breath: np.ndarray, shape: tuple[int, int] | None = None,
                   timescale_s: float = 1.5, mean_free: bool = True) -> np.ndarray:
    """Non-rigid displacement at the nodes of a coarse grid.

    Each node moves slowly (``timescale_s``) and partly in step with breathing; values are
    soft-limited by ``nonrigid_max * tanh``. With ``mean_free`` each node's slow motion
    averages to zero over the movie; without, it keeps the mean of its finite sample.
    Nodes are smoothed together (tissue deforms smoothly). With ``shape`` (H, W), the
    field's mean over the frame's pixels (through :func:`spline_basis`) is zero in every
    frame, so the rigid part of the motion is exactly ``shifts``: the frame-average
    displacement; without it, the mean over the nodes is zero.

    Returns
    -------
    ndarray (T, 2, gy, gx) float32
        Component 0 is the y displacement, 1 the x displacement, pixels.
    """
    gy, gx = grid
    slow = np.stack([smooth_noise_1d(rng, T, timescale_s * fr, mean_free=mean_free)
                     for _ in range(2 * gy * gx)], 1)
    pattern = rng.standard_normal(2 * gy * gx)
    z = (0.6 * slow + 0.8 * breath[:, None] * pattern).reshape(T, 2, gy, gx)
    # tissue deforms smoothly: neighbouring nodes move together (a node-to-node
    # correlation length of ~2 nodes), as in real two-photon data
    z = ndimage.gaussian_filter(z, sigma=(0, 0, 1.5, 1.5), mode="nearest")
    z -= z.mean(axis=(2, 3), keepdims=True)
    z /= max(float(z.std()), 1e-12)
    if nonrigid_max <= 0:
        return np.zeros(z.shape, np.float32)
    field = nonrigid_max * np.tanh(0.2 * z)
    if shape is not None:
        # spline rows sum to 1: a constant taken off every node comes off every pixel
        wy, wx = spline_basis(shape[0], gy).mean(0), spline_basis(shape[1], gx).mean(0)
        field -= np.einsum("i,tcij,j->tc", wy, field, wx)[:, :, None, None]
    return field.astype(np.float32)


def spline_basis(n: int, n_nodes: int) -> np.ndarray:
    """Natural cubic-spline interpolation matrix from evenly spaced nodes to ``n`` pixels.

    ``basis @ values`` interpolates node values (nodes at ``linspace(0, n - 1)``).

    Returns
    -------
    ndarray (n, n_nodes) float32
    """
    nodes = np.linspace(0.0, n - 1.0, n_nodes)
    spline = CubicSpline(nodes, np.eye(n_nodes), bc_type="natural")
    return spline(np.arange(n, dtype=float)).astype(np.float32)


def displacement(shift: np.ndarray, field: np.ndarray, By: np.ndarray,
                 Bx: np.ndarray) -> np.ndarray:
    """Full-resolution displacement of one frame.

    Parameters
    ----------
    shift : ndarray (2,)
        Rigid ``(y, x)`` displacement.
    field : ndarray (2, gy, gx)
        Non-rigid node values.
    By, Bx : ndarray (H, gy), (W, gx)
        Spline bases.

    Returns
    -------
    ndarray (2, H, W) float32
    """
    By, Bx = np.asarray(By, np.float32), np.asarray(Bx, np.float32)
    d = np.empty((2, By.shape[0], Bx.shape[0]), np.float32)
    for c in range(2):
        # OpenCV's gemm: same product as numpy's, without BLAS threading overhead on
        # these thin (H x g) @ (g x W) shapes, and it releases the GIL
        left = cv2.gemm(By, np.asarray(field[c], np.float32), 1.0, None, 0.0)
        d[c] = cv2.gemm(left, Bx, 1.0, None, 0.0, flags=cv2.GEMM_2_T)
        d[c] += np.float32(shift[c])
    return d
