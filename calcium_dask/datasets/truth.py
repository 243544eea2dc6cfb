"""Ground truth of a simulated movie and its ``.npz`` form."""

from __future__ import annotations

import dataclasses
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from .background import sensor_gain, support_box
from .footprints import add_patch, dense_footprints
from .motion import displacement
from .params import SimulationParams


@dataclass
class GroundTruth:
    """Everything that made a simulated movie (K neurons, T frames, H x W pixels).

    The noise-free, motion-free movie in photons is
    ``baseline + sum_j bg_spatial[j] * bg_temporal[j, t] + sum_k footprints[k] * (f0[k] + C[k, t])``
    and in ADU ``offset + gain * photons``. The observed movie is that, displaced by
    :meth:`displacement` (``observed(t, p) = clean(t, p - d(t, p))``), times the sensor's
    vignetting :attr:`sensor_gain` (1 without), with Poisson shot noise on the photons and
    Gaussian read noise, rounded to uint16.

    Attributes
    ----------
    params : SimulationParams
    footprint_patches : ndarray (K, P, P) float32
        Each footprint on a small square patch, maximum 1 (see :attr:`footprints`).
    footprint_origins : ndarray (K, 2) int64
        FOV coordinates ``(y, x)`` of each patch's top-left pixel.
    centers : ndarray (K, 2)
        Soma centres ``(y, x)``, pixels, in the motion-free frame.
    radii : ndarray (K,)
    ring : ndarray (K,) bool
        Dark nucleus.
    partner : ndarray (K,) int64
        Index of the overlapping partner, -1 for neurons that overlap no other.
    C : ndarray (K, T) float32
        Calcium, photons at the footprint maximum above ``f0`` (before vignetting).
    S : ndarray (K, T) float32
        Spikes as AR(2) innovations: ``C = lfilter([1], [1, -g1, -g2], S)``.
    f0 : ndarray (K,) float32
        Resting fluorescence at the footprint maximum, photons.
    g : ndarray (K, 2)
        AR(2) coefficients.
    tau_rise, tau_decay : ndarray (K,)
        Seconds.
    rates_hz : ndarray (K,)
    bursty : ndarray (K,) bool
    dff_amp : ndarray (K,)
        Peak dF/F of one spike of median amplitude.
    snr : ndarray (K,)
        Peak signal-to-noise ratio: ``gain * max_t C[k] / noise_sd[k]``, the largest
        calcium transient over the single-frame noise SD at the footprint maximum.
    noise_sd : ndarray (K,)
        Noise SD, ADU, at the footprint maximum at rest
        (``sqrt(gain**2 * photons + read_sd**2)``).
    baseline : ndarray (H, W) float32
        Static autofluorescence, photons.
    bg_spatial : ndarray (nb, H, W) float32
    bg_temporal : ndarray (nb, T) float32
        Background, photons: the neuropil (``len(params.neuropil_levels)`` components),
        then the ``params.n_blurred`` out-of-focus neurons.
    shifts : ndarray (T, 2) float32
        Rigid ``(y, x)`` displacement of the content; a correction applies ``-shifts``.
    nr_field : ndarray (T, 2, gy, gx) float32
        Non-rigid displacement at the grid nodes (component 0 = y, 1 = x).
    nr_By, nr_Bx : ndarray (H, gy), (W, gx) float32
        Natural cubic-spline bases: the field at full resolution is
        ``nr_By @ nr_field[t, c] @ nr_Bx.T``.
    clean_mean : ndarray (H, W) float32
        Temporal mean of the motion-free, noise-free movie, ADU (vignetting included).
    observed_mean : ndarray (H, W) float32 or None
        Temporal mean of the movie, ADU (set once the movie has been generated).
    clipped_pixels : int
        Number of pixels clipped to the uint16 range.
    """

    params: SimulationParams
    footprint_patches: np.ndarray
    footprint_origins: np.ndarray
    centers: np.ndarray
    radii: np.ndarray
    ring: np.ndarray
    partner: np.ndarray
    C: np.ndarray
    S: np.ndarray
    f0: np.ndarray
    g: np.ndarray
    tau_rise: np.ndarray
    tau_decay: np.ndarray
    rates_hz: np.ndarray
    bursty: np.ndarray
    dff_amp: np.ndarray
    snr: np.ndarray
    noise_sd: np.ndarray
    baseline: np.ndarray
    bg_spatial: np.ndarray
    bg_temporal: np.ndarray
    shifts: np.ndarray
    nr_field: np.ndarray
    nr_By: np.ndarray
    nr_Bx: np.ndarray
    clean_mean: np.ndarray
    observed_mean: np.ndarray | None = None
    clipped_pixels: int = 0

    @property
    def K(self) -> int:
        """Number of neurons."""
        return int(self.C.shape[0])

    @property
    def T(self) -> int:
        """Number of frames."""
        return int(self.C.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        """Field of view ``(H, W)``."""
        return tuple(self.baseline.shape)  # type: ignore[return-value]

    @property
    def footprints(self) -> np.ndarray:
        """Dense footprints ``(K, H, W)`` float32, each with maximum 1 (before cropping).

        Neuron ``k`` adds ``footprints[k] * (f0[k] + C[k, t])`` photons to frame ``t``.
        Built on each access from the patches; K * H * W * 4 bytes.
        """
        return dense_footprints(self.footprint_patches, self.footprint_origins, self.shape)

    @property
    def sensor_gain(self) -> np.ndarray:
        """The optics' vignetting, ``(H, W)`` float32: what the sensor sees of each
        pixel's light (fixed to the sensor, so the brain moves under it); ones without."""
        return sensor_gain(self.shape, self.params.vignette)

    def displacement(self, t: int) -> np.ndarray:
        """Displacement ``d(t, p)`` of frame ``t``, ``(2, H, W)`` float32 (y, x)."""
        return displacement(self.shifts[t], self.nr_field[t], self.nr_By, self.nr_Bx)

    def clean_frames(self, t0: int, t1: int) -> np.ndarray:
        """Motion-free, noise-free frames ``t0:t1`` in photons, ``(t1 - t0, H, W)`` float32,
        as the sensor sees them (vignetting included)."""
        out = np.empty((t1 - t0, *self.shape), np.float32)
        out[:] = self.baseline
        for j in range(len(self.bg_spatial)):
            ys, xs = support_box(self.bg_spatial[j])  # out-of-focus neurons are local
            piece = self.bg_spatial[j, ys, xs]
            if piece.size < out[0].size // 16:
                out[:, ys, xs] += self.bg_temporal[j, t0:t1, None, None] * piece
                continue
            for i, f in enumerate(self.bg_temporal[j, t0:t1]):
                out[i, ys, xs] += f * piece
        for k in range(self.K):
            add_patch(out, self.footprint_patches[k], self.footprint_origins[k],
                      self.f0[k] + self.C[k, t0:t1])
        if self.params.vignette:
            out *= self.sensor_gain
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write a compressed ``.npz`` readable with ``numpy.load(allow_pickle=False)``.

        Besides the fields it holds ``footprints`` (dense, streamed one neuron at a
        time so memory stays small), ``params`` (JSON string) and the scalars ``gain``,
        ``offset``, ``read_sd``, ``seed`` and ``fps``, the layout of the public
        benchmark's ``truth.npz``.
        """
        path = Path(path)
        arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in ("params", "observed_mean")}
        if self.observed_mean is not None:
            arrays["observed_mean"] = self.observed_mean
        p = self.params
        arrays.update(params=np.array(p.to_json()), gain=np.float64(p.gain),
                      offset=np.float64(p.offset), read_sd=np.float64(p.read_sd),
                      seed=np.int64(p.seed), fps=np.float64(p.fr))
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for name, value in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.asarray(value), allow_pickle=False)
            with zf.open("footprints.npy", "w", force_zip64=True) as fh:
                self._write_dense_footprints(fh)
        return path

    def _write_dense_footprints(self, fh: IO[bytes]) -> None:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
                  "fortran_order": False, "shape": (self.K, *self.shape)}
        np.lib.format.write_array_header_1_0(fh, header)
        for k in range(self.K):
            img = np.zeros(self.shape, "<f4")
            add_patch(img, self.footprint_patches[k], self.footprint_origins[k], 1.0)
            fh.write(img.tobytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> GroundTruth:
        """Read a file written by :meth:`save` (never unpickles)."""
        kw = {}
        names = {f.name for f in dataclasses.fields(cls)}
        with np.load(path, allow_pickle=False) as z:
            if "footprint_patches" not in z.files or "params" not in z.files:
                raise ValueError(f"{path} was not written by GroundTruth.save "
                                 "(no 'footprint_patches' or 'params')")
            for name in names - {"params"}:
                if name in z.files:
                    kw[name] = z[name]
            kw["params"] = SimulationParams.from_json(str(z["params"][()]))
        kw["clipped_pixels"] = int(kw.get("clipped_pixels", 0))
        return cls(**kw)
