"""Movies side by side (raw, corrected, denoised...) written to a GIF or an MP4 file."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.animation as animation
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from ._data import robust_limits

__all__ = ["play"]

BLOCK_FRAMES = 32  # frames of each movie read (and held) at once


class _FrameReader:
    """Frames of a lazy (frame, y, x) movie, read a block at a time as the animation asks."""

    def __init__(self, movie: Any, frames: np.ndarray, block: int = BLOCK_FRAMES) -> None:
        self.movie, self.frames, self.block = movie, frames, block
        self._start, self._data = -1, np.zeros((0,))

    def _read(self, positions: np.ndarray) -> np.ndarray:
        if isinstance(self.movie, xr.DataArray):
            return np.asarray(self.movie.isel(frame=positions).values, np.float32)
        return np.asarray(self.movie[positions], np.float32)  # numpy, dask or zarr arrays

    def __getitem__(self, i: int) -> np.ndarray:
        start = (i // self.block) * self.block
        if start != self._start:
            self._data, self._start = self._read(self.frames[start:start + self.block]), start
        return self._data[i - start]


def _frame_positions(n_frames: int, frames: slice | range | np.ndarray) -> np.ndarray:
    if isinstance(frames, slice):
        return np.arange(n_frames)[frames]
    pos = np.asarray(frames, dtype=int)
    if pos.size and (pos.min() < 0 or pos.max() >= n_frames):
        raise IndexError(f"frames {pos.min()}..{pos.max()} outside a movie of {n_frames} frames")
    return pos


def _writer(out: Path, fps: float) -> animation.AbstractMovieWriter:
    suffix = out.suffix.lower()
    if suffix == ".gif":
        return animation.PillowWriter(fps=fps)
    if suffix == ".mp4":
        if shutil.which(plt.rcParams["animation.ffmpeg_path"]) is None:
            raise RuntimeError(f"writing {out.name} needs the ffmpeg program, which is not on PATH "
                               "(install it, e.g. `apt-get install ffmpeg` or `conda install ffmpeg`), "
                               "or write a .gif instead")
        return animation.FFMpegWriter(fps=fps)
    raise ValueError(f"out must end in .gif or .mp4, got {out.name!r}")


def _check_movies(movies: Mapping[str, Any]) -> int:
    if not movies:
        raise ValueError("movies is empty: pass e.g. {'raw': raw, 'corrected': corrected}")
    lengths = {name: int(m.shape[0]) for name, m in movies.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"the movies have different numbers of frames: {lengths}")
    return next(iter(lengths.values()))


def play(movies: Mapping[str, Any], *, frames: slice | range | np.ndarray = slice(0, 300),
         out: str | Path = "movie.gif", fps: float = 30, fr: float | None = None, cmap: str = "gray",
         width: float = 3.0, dpi: int = 80) -> Path:
    """Write movies side by side, one panel per movie, to a GIF (Pillow) or an MP4 (ffmpeg).

    Only the requested frames are read, a block at a time, so lazy movies (the corrected
    movie of a store, ``Results.denoised_movie()``) are never loaded whole.

    Parameters
    ----------
    movies : dict of str to DataArray or array
        Panel title -> (frame, y, x) movie; all with the same number of frames.
    frames : slice, range or array of int
        Frames to show.
    out : str or Path
        ``.gif`` or ``.mp4`` (needs the ``ffmpeg`` program).
    fps : float
        Frames per second of the output.
    fr : float, optional
        Imaging rate, to print the time of each frame (default: a movie's ``fr`` attribute).
    cmap : str
    width : float
        Width of each panel in inches.
    dpi : int

    Returns
    -------
    pathlib.Path
        The file written.
    """
    out = Path(out)
    writer = _writer(out, fps)
    positions = _frame_positions(_check_movies(movies), frames)
    if positions.size == 0:
        raise ValueError(f"frames {frames} selects no frame")
    fr = fr or next((m.attrs.get("fr") for m in movies.values() if isinstance(m, xr.DataArray) and m.attrs.get("fr")),
                    None)
    readers = {name: _FrameReader(m, positions) for name, m in movies.items()}
    fig, axes = plt.subplots(1, len(readers), figsize=(width * len(readers), width + 0.5), squeeze=False)
    images = []
    for ax, (name, reader) in zip(axes[0], readers.items()):
        first = reader[0]
        vmin, vmax = robust_limits(reader._data)  # limits from the first block of frames
        images.append(ax.imshow(first, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest"))
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    label = fig.suptitle("", fontsize=9)

    def draw(i: int) -> list[Any]:
        for im, reader in zip(images, readers.values()):
            im.set_data(reader[i])
        t = f" ({positions[i] / fr:.2f} s)" if fr else ""
        label.set_text(f"frame {positions[i]}{t}")
        return [*images, label]

    anim = animation.FuncAnimation(fig, draw, frames=len(positions), blit=False, repeat=False)
    try:
        anim.save(str(out), writer=writer, dpi=dpi)
    finally:
        plt.close(fig)
    return out
