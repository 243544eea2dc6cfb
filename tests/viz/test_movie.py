"""play: side-by-side movies to GIF, reading only the requested frames."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from calcium_dask.results import open_results
from calcium_dask.viz import play


class Recorder:
    """A (frame, y, x) array-like that records which frames were read."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.read = data, data.shape, []

    def __getitem__(self, index):
        self.read.extend(np.atleast_1d(index).tolist())
        return self.data[index]


def test_play_gif_side_by_side(store, tmp_path):
    res = open_results(store.url)
    corrected = store.movie()
    raw = Recorder(np.asarray(corrected.values)[:, ::-1])
    out = play({"raw": raw, "corrected": corrected, "denoised": res.denoised_movie()}, frames=slice(10, 22),
               out=tmp_path / "m.gif", fps=10)
    assert out == tmp_path / "m.gif"
    with Image.open(out) as gif:
        assert gif.n_frames == 12
        assert gif.width > 2 * gif.height  # three panels in a row
    assert sorted(set(raw.read)) == list(range(10, 22))


def test_play_errors(store, tmp_path):
    movie = store.movie()
    with pytest.raises(ValueError, match=".gif or .mp4"):
        play({"m": movie}, out=tmp_path / "m.avi")
    with pytest.raises(ValueError, match="different numbers of frames"):
        play({"a": movie, "b": movie[:10]}, out=tmp_path / "m.gif")
    if shutil.which("ffmpeg") is None:
        with pytest.raises(RuntimeError, match="ffmpeg"):
            play({"m": movie}, frames=slice(0, 3), out=tmp_path / "m.mp4")
    else:
        assert play({"m": movie}, frames=slice(0, 3), out=tmp_path / "m.mp4").stat().st_size > 0
