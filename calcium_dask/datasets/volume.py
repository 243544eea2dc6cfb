"""Simulated multi-plane, two-channel sessions written as ScanImage writes them.

Each plane is a simulated movie of its own (:func:`~calcium_dask.datasets.simulate`'s
scene with seed ``seed + plane``), all moving together (the tissue's motion is plane 0's),
rendered frame by frame exactly as a one-plane movie is. A second, structural channel
(a static label such as tdTomato: the same cells and background at rest, no activity,
its own shot noise) moves with it. Pages go as ScanImage stores them: for each volume,
each plane, each channel, then the volume's flyback frames. One plane can also be written
alone (``only_plane``), with the very same pixels, to compare a session with its planes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .params import SimulationParams
from .render import render
from .scanimage import ScanImageHeader, write_scanimage_tiff
from .scene import Scene, build_scene
from .truth import GroundTruth

__all__ = ["plane_scenes", "write_scanimage_session", "STRUCTURAL_SEED"]

STRUCTURAL_SEED = 10_000  # the structural channel's noise stream: seed + this


def plane_scenes(params: SimulationParams, nplanes: int) -> list[Scene]:
    """One scene per plane (seed + plane), each moving as plane 0 moves."""
    scenes = [build_scene(params.replace(seed=params.seed + z)) for z in range(nplanes)]
    for s in scenes[1:]:
        s.truth.shifts[:] = scenes[0].truth.shifts
        s.truth.nr_field[:] = scenes[0].truth.nr_field
    return scenes


def _structural(scene: Scene) -> Scene:
    """The scene of a static label: cells and background at rest, its own noise."""
    tr = scene.truth
    bg_t = np.repeat(tr.bg_temporal.mean(axis=1, keepdims=True), tr.bg_temporal.shape[1], axis=1)
    params = tr.params.replace(seed=tr.params.seed + STRUCTURAL_SEED, pad=tr.params.pad)
    truth = dataclasses.replace(tr, params=params, C=np.zeros_like(tr.C), bg_temporal=bg_t.astype(tr.bg_temporal.dtype))
    return dataclasses.replace(scene, truth=truth)


def _pages(scenes: Sequence[Scene], channels: int, nflyback: int, chunk_frames: int) -> Iterator[np.ndarray]:
    """ScanImage's page order: volume, then plane (flyback last), then channel."""
    p = scenes[0].params
    static = [_structural(s) for s in scenes] if channels > 1 else []
    flyback = np.full((p.H, p.W), int(p.offset), np.uint16)
    for t0 in range(0, p.T, chunk_frames):
        t1 = min(p.T, t0 + chunk_frames)
        func = [render(s, t0, t1)[0] for s in scenes]
        struct = [render(s, t0, t1)[0] for s in static]
        for t in range(t1 - t0):
            for z in range(len(scenes)):
                yield func[z][t]
                if channels > 1:
                    yield struct[z][t]
            for _ in range(nflyback * channels):
                yield flyback


def write_scanimage_session(path: str | os.PathLike, params: SimulationParams, *, nplanes: int = 4,
                            nchannels: int = 2, nflyback: int = 0, only_plane: int | None = None,
                            modern: bool = True, chunk_frames: int = 200) -> list[GroundTruth]:
    """Write a simulated session as one ScanImage BigTIFF; each plane's truth beside it.

    Parameters
    ----------
    path : str or path-like
        The TIFF to write (``truth_plane<z>.npz`` go in its folder).
    params : SimulationParams
        Every plane's movie (``fr`` is the volume rate; ScanImage's frame rate is
        ``fr * (nplanes + nflyback)``).
    nplanes, nchannels, nflyback : int
        Planes, channels (1: functional only; 2: functional then structural) and flyback
        frames per volume.
    only_plane : int, optional
        Write this plane alone, as a one-plane recording with the same pixels.

    Returns
    -------
    list of GroundTruth
        One per plane written (its ``shifts`` are the session's).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scenes = plane_scenes(params, nplanes)
    if only_plane is not None:
        scenes, nflyback = [scenes[only_plane]], 0
    planes = len(scenes)
    header = ScanImageHeader((params.H, params.W), channels=tuple(range(1, nchannels + 1)), nslices=planes,
                             nflyback=nflyback, frame_rate=params.fr * (planes + nflyback), modern=modern)
    write_scanimage_tiff(path, _pages(scenes, nchannels, nflyback, chunk_frames), header, dtype=np.int16)
    truths = [s.truth for s in scenes]
    for z, tr in enumerate(truths):
        tr.save(path.parent / f"truth_plane{only_plane if only_plane is not None else z}.npz")
    return truths
