"""Simulated two-photon and one-photon (miniscope) calcium-imaging movies with exact ground truth.

GCaMP somata (soft ellipses, some with a dark nucleus, some in overlapping pairs) fire
spikes (some in bursts) through AR(2) calcium dynamics on top of static
autofluorescence crossed by blood vessels and a low-rank neuropil; the brain drifts,
jitters, breathes and deforms smoothly; photons get Poisson shot noise and the camera
adds Gaussian read noise around an offset. The ``miniscope`` preset adds what one-photon
imaging brings: scattering blurs the tissue, out-of-focus neurons flash under the cells
(a bright background that fluctuates in space and time), the optics vignette the frame
(fixed to the sensor, so the brain moves under it), and the brain moves more.

>>> from calcium_dask.datasets import SimulationParams, simulate, write_movie
>>> movie, truth = simulate(SimulationParams.preset("small", T=100))  # doctest: +SKIP
>>> write_movie("sim/movie.zarr", SimulationParams.preset("medium"))  # doctest: +SKIP
>>> write_movie("mini/movie.tif", SimulationParams.preset("miniscope"))  # doctest: +SKIP

:mod:`~calcium_dask.datasets.scoring` scores results against the ground truth.

Conventions (shared with the public benchmark movie):

- ``truth.shifts[t]`` is the ``(y, x)`` displacement of the content of frame ``t``; a
  motion correction applies ``-shifts[t]``.
- ``observed(t, p) = clean(t, p - d(t, p))`` with
  ``d = shifts[t] + nr_By @ nr_field[t, c] @ nr_Bx.T``.
- ``truth.C`` is calcium in photons at the footprint maximum; footprints are
  max-normalised; ``truth.snr`` is the peak calcium over the single-frame noise SD at
  the footprint maximum (log-uniform over ``params.snr_range``).
"""

from __future__ import annotations

from . import scoring
from .params import SimulationParams
from .scoring import frame_offset, match_footprints, score_shifts, score_sources, shift_images
from .truth import GroundTruth
from .write import simulate, write_movie

__all__ = ["GroundTruth", "SimulationParams", "simulate", "write_movie", "scoring", "score_sources",
           "score_shifts", "match_footprints", "shift_images", "frame_offset"]
