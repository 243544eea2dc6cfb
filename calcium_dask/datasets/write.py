"""Make a simulated movie in memory (:func:`simulate`) or stream it to disk
(:func:`write_movie`), chunk by chunk, with its ground truth beside it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from .params import SimulationParams
from .render import render
from .scene import Scene, build_scene
from .truth import GroundTruth

MovieFormat = Literal["tiff", "zarr"]
BIGTIFF_BYTES = 2 * 2**30  # classic TIFF's 32-bit offsets: switch to BigTIFF above this
TRUTH_NAME, PARAMS_NAME = "truth.npz", "params.json"

CONVENTIONS = {
    "shifts": "(T,2) (y,x) displacement of content in frame t relative to the motion-free "
              "movie; a correction applies -shifts[t]",
    "observed": "observed(t,p) = V(p) clean(t, p - d(t,p)), d = shifts[t] + "
                "nr_By @ nr_field[t,c] @ nr_Bx.T (c=0: y, c=1: x); V = 1 - vignette*r^2, the "
                "sensor's vignetting (r = 1 at the corners; V = 1 when vignette = 0)",
    "clean_adu": "offset + gain*(baseline + sum_j bg_spatial_j*bg_temporal_j(t) + "
                 "sum_k footprints_k*(f0_k + C_k(t)))",
    "movie": "uint16 round(offset + gain*Poisson(clean photons displaced) + N(0, read_sd))",
    "footprints": "max-normalised (each patch has maximum 1)",
    "C": "lfilter([1],[1,-g1,-g2],S) in photons at the footprint maximum",
    "snr": "gain*max_t C_k(t) / noise_sd_k, noise_sd_k = sqrt(gain^2*photons_at_rest + "
           "read_sd^2) at the footprint maximum",
}


def _default_workers(workers: int | None) -> int:
    return max(1, min(4, os.cpu_count() or 1)) if workers is None else max(1, int(workers))


def _chunks(scene: Scene, chunk_frames: int, workers: int,
            movie: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Render the movie in time chunks and fill in the truth's movie statistics.

    Frames go into ``movie[t0:t1]`` when a whole-movie array is given, otherwise into
    one reused chunk buffer, so memory stays at one chunk.
    """
    p = scene.params
    buffer = None if movie is not None else np.empty((min(chunk_frames, p.T), p.H, p.W),
                                                      np.uint16)
    total = np.zeros((p.H, p.W), np.float64)  # sums of uint16 are exact in float64
    clipped = 0
    for t0 in range(0, p.T, chunk_frames):
        t1 = min(p.T, t0 + chunk_frames)
        out = movie[t0:t1] if movie is not None else buffer[: t1 - t0]
        frames, n = render(scene, t0, t1, out=out, workers=workers)
        clipped += n
        total += frames.sum(axis=0, dtype=np.float64)
        yield t0, frames
    scene.truth.observed_mean = (total / p.T).astype(np.float32)
    scene.truth.clipped_pixels = clipped


def simulate(params: SimulationParams, *, chunk_frames: int = 500,
             workers: int | None = None) -> tuple[np.ndarray, GroundTruth]:
    """Simulate a movie in memory.

    Parameters
    ----------
    params : SimulationParams
    chunk_frames : int
        Frames rendered at once (the result does not depend on it).
    workers : int, optional
        Rendering threads (default: up to 4); the result does not depend on it.

    Returns
    -------
    movie : ndarray (T, H, W) uint16
    truth : GroundTruth
        See :class:`GroundTruth`; ``observed_mean`` and ``clipped_pixels`` are filled.
    """
    return simulate_scene(build_scene(params), chunk_frames=chunk_frames, workers=workers)


def simulate_scene(scene: Scene, *, chunk_frames: int = 500,
                   workers: int | None = None) -> tuple[np.ndarray, GroundTruth]:
    """:func:`simulate` of a scene already drawn."""
    movie = np.empty(scene.params.shape, np.uint16)
    for _ in _chunks(scene, int(chunk_frames), _default_workers(workers), movie):
        pass
    return movie, scene.truth


def write_movie(path: str | os.PathLike, params: SimulationParams, *,
                format: MovieFormat | None = None, chunk_frames: int = 500,
                tile: int | None = None, workers: int | None = None) -> Path:
    """Stream a simulated movie to disk, one time chunk in memory at a time.

    The pixels equal those of :func:`simulate` with the same parameters. Beside the
    movie, in the same directory, go ``truth.npz`` (:meth:`GroundTruth.save`) and
    ``params.json`` (the parameters, flat, plus the conventions): the layout of the
    public benchmark, so its scorer reads it. Use one directory per movie.

    Parameters
    ----------
    path : str or path-like
        ``.../movie.tif`` (or ``.tiff``) or ``.../movie.zarr``.
    params : SimulationParams
    format : {"tiff", "zarr"}, optional
        Default: from the suffix (``.zarr`` gives zarr, anything else TIFF).
    chunk_frames : int
        Frames generated (and held) at once; also the zarr chunk length in time.
    tile : int, optional
        zarr only: chunk ``(chunk_frames, tile, tile)`` instead of whole frames.
    workers : int, optional
        Rendering threads (default: up to 4).

    Returns
    -------
    Path
        The movie's path.

    Notes
    -----
    TIFF: one page per frame, uncompressed, written contiguously so it can be
    memory-mapped; BigTIFF when the pixels exceed 2 GiB. zarr: format 3, uint16,
    dimension names ``("frame", "y", "x")``, attributes ``fr`` and ``dxy``.
    """
    _check_output(path, format, chunk_frames)
    return write_scene(path, build_scene(params), format=format, chunk_frames=chunk_frames, tile=tile,
                       workers=workers)


def _check_output(path: str | os.PathLike, format: MovieFormat | None, chunk_frames: int) -> str:
    fmt = format or ("zarr" if Path(path).suffix.lower() == ".zarr" else "tiff")
    if fmt not in ("tiff", "zarr"):
        raise ValueError(f"format must be 'tiff' or 'zarr', got {fmt!r}")
    if int(chunk_frames) < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    return fmt


def write_scene(path: str | os.PathLike, scene: Scene, *, format: MovieFormat | None = None,
                chunk_frames: int = 500, tile: int | None = None, workers: int | None = None) -> Path:
    """:func:`write_movie` of a scene already drawn (e.g. one day of
    :func:`calcium_dask.datasets.sessions.write_sessions`)."""
    path = Path(path)
    fmt = _check_output(path, format, chunk_frames)
    chunk_frames = int(chunk_frames)
    params = scene.params
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = _chunks(scene, chunk_frames, _default_workers(workers))
    if fmt == "tiff":
        _write_tiff(path, params, chunks)
    else:
        _write_zarr(path, params, chunks, chunk_frames, tile)
    scene.truth.save(path.parent / TRUTH_NAME)
    _write_params(path.parent / PARAMS_NAME, scene.truth, path.name, fmt)
    return path


def _write_tiff(path: Path, p: SimulationParams,
                chunks: Iterator[tuple[int, np.ndarray]]) -> None:
    import tifffile

    def pages() -> Iterator[np.ndarray]:
        for _, frames in chunks:
            yield from frames

    # one write call fed page by page: tifffile records the full (T, H, W) shape
    bigtiff = p.T * p.H * p.W * 2 > BIGTIFF_BYTES
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw:
        tw.write(pages(), shape=p.shape, dtype=np.uint16, photometric="minisblack",
                 metadata={"axes": "TYX", "fps": p.fr})


def _write_zarr(path: Path, p: SimulationParams, chunks: Iterator[tuple[int, np.ndarray]],
                chunk_frames: int, tile: int | None) -> None:
    import zarr

    ty, tx = (p.H, p.W) if tile is None else (min(tile, p.H), min(tile, p.W))
    arr = zarr.create_array(
        str(path), shape=p.shape, chunks=(min(chunk_frames, p.T), ty, tx), dtype="uint16",
        dimension_names=("frame", "y", "x"), overwrite=True,
        attributes={"fr": p.fr, "dxy": p.dxy, "generator": "calcium_dask.datasets"})
    for t0, frames in chunks:
        arr[t0 : t0 + len(frames)] = frames


def _write_params(path: Path, truth: GroundTruth, movie_name: str, fmt: str) -> None:
    doc = {**truth.params.to_dict(), "movie": movie_name, "format": fmt,
           "clipped_pixels": int(truth.clipped_pixels), "conventions": CONVENTIONS}
    path.write_text(json.dumps(doc, indent=1))
