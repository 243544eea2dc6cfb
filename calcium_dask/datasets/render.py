"""Render frames of a scene: clean canvas -> motion (one remap) -> vignetting -> noise -> uint16.

Every frame depends only on the scene and its own index (its noise generator is seeded
with ``[seed, NOISE_STREAM, t]``), so any chunking, order or thread count gives
bit-identical pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from .background import sensor_gain
from .footprints import add_patch
from .motion import displacement
from .scene import NOISE_STREAM, Scene

CANVAS_BLOCK_BYTES = 8 * 2**20  # float32 canvas frames drawn at once (all workers)
UINT16_MAX = 65535


def clean_canvas(scene: Scene, t0: int, t1: int) -> np.ndarray:
    """Motion-free, noise-free frames ``t0:t1`` on the padded canvas, photons float32."""
    tr = scene.truth
    out = np.empty((t1 - t0, *scene.base.shape), np.float32)
    out[:] = scene.base
    full = scene.base.size
    for j, (ys, xs) in enumerate(scene.bg_boxes):  # only where the component has light
        piece = scene.bg[j, ys, xs]
        if piece.size < full // 16:  # a small box (out-of-focus neuron): the whole block at once
            out[:, ys, xs] += tr.bg_temporal[j, t0:t1, None, None] * piece
            continue
        for i, f in enumerate(tr.bg_temporal[j, t0:t1]):  # frame by frame: no block temp
            out[i, ys, xs] += f * piece
    for k in range(tr.K):
        add_patch(out, tr.footprint_patches[k], scene.origins[k], tr.f0[k] + tr.C[k, t0:t1])
    return out


class FrameRenderer:
    """Turns canvas frames into observed uint16 frames (motion, then noise).

    Parameters
    ----------
    scene : Scene
    """

    def __init__(self, scene: Scene) -> None:
        p = scene.params
        self.scene = scene
        yy, xx = np.mgrid[0 : p.H, 0 : p.W].astype(np.float32)
        # remap looks up the canvas, whose origin is pad pixels before the FOV's
        self.grid_y, self.grid_x = yy + p.pad, xx + p.pad
        self.gain, self.offset = np.float32(p.gain), np.float32(p.offset)
        self.read_sd = np.float32(p.read_sd)
        self.vignette = sensor_gain((p.H, p.W), p.vignette) if p.vignette else None

    def photons(self, canvas: np.ndarray, t: int) -> np.ndarray:
        """Displaced clean frame: ``clean(t, p - d(t, p))``, photons float32 (H, W), times
        the sensor's vignetting (fixed to the sensor, so applied after the motion).

        Bicubic interpolation by ``cv2.remap``, which resolves positions to 1/32 pixel.
        """
        tr = self.scene.truth
        d = displacement(tr.shifts[t], tr.nr_field[t], tr.nr_By, tr.nr_Bx)
        map_y = self.grid_y - d[0]
        map_x = self.grid_x - d[1]
        out = cv2.remap(canvas, map_x, map_y, cv2.INTER_CUBIC,
                        borderMode=cv2.BORDER_REPLICATE)
        if self.vignette is not None:
            out *= self.vignette
        return np.maximum(out, 0, out=out)  # cubic overshoot must not go negative

    def observe(self, photons: np.ndarray, t: int, out: np.ndarray) -> int:
        """Shot and read noise, rounding and clipping into ``out`` (uint16).

        Returns
        -------
        int
            Number of pixels clipped to [0, 65535].
        """
        rng = np.random.default_rng([int(self.scene.params.seed), NOISE_STREAM, int(t)])
        adu = rng.poisson(photons).astype(np.float32)
        adu *= self.gain
        adu += self.read_sd * rng.standard_normal(adu.shape, dtype=np.float32)
        adu += self.offset
        np.rint(adu, out=adu)
        clipped = int(np.count_nonzero(adu < 0) + np.count_nonzero(adu > UINT16_MAX))
        np.clip(adu, 0, UINT16_MAX, out=adu)
        out[...] = adu
        return clipped

    def frame(self, canvas: np.ndarray, t: int, out: np.ndarray) -> int:
        """Render frame ``t`` from its canvas into ``out``; returns clipped pixels."""
        return self.observe(self.photons(canvas, t), t, out)


def render(scene: Scene, t0: int, t1: int, *, out: np.ndarray | None = None,
           workers: int = 1) -> tuple[np.ndarray, int]:
    """Frames ``t0:t1`` of the observed movie.

    Parameters
    ----------
    scene : Scene
    t0, t1 : int
        Frame range.
    out : ndarray (t1 - t0, H, W) uint16, optional
        Destination.
    workers : int
        Threads rendering blocks of frames concurrently (numpy's generators and OpenCV
        release the GIL); the result does not depend on it.

    Returns
    -------
    frames : ndarray (t1 - t0, H, W) uint16
    clipped : int
        Pixels clipped to the uint16 range.
    """
    p = scene.params
    if out is None:
        out = np.empty((t1 - t0, p.H, p.W), np.uint16)
    renderer = FrameRenderer(scene)

    def block(b: tuple[int, int]) -> int:
        canvas = clean_canvas(scene, *b)
        return sum(renderer.frame(canvas[t - b[0]], t, out[t - t0]) for t in range(*b))

    # the canvases of all workers together stay within CANVAS_BLOCK_BYTES
    blocks = list(_blocks(t0, t1, scene.base.size * 4 * max(1, workers)))
    if workers <= 1 or len(blocks) == 1:
        return out, sum(map(block, blocks))
    with ThreadPoolExecutor(workers) as pool:
        return out, sum(pool.map(block, blocks))


def _blocks(t0: int, t1: int, frame_bytes: int) -> Iterator[tuple[int, int]]:
    step = max(1, min(32, CANVAS_BLOCK_BYTES // max(frame_bytes, 1)))
    for b in range(t0, t1, step):
        yield b, min(t1, b + step)
