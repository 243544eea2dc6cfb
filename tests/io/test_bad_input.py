"""Bad input: one line naming the file and the problem, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from calcium_dask import MovieError, open_movie
from calcium_dask.cli import main


def run_cli(*args: str) -> tuple[int, str, str]:
    p = subprocess.run([sys.executable, "-m", "calcium_dask", *args], capture_output=True,
                       text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def _truncated_tiff(d):
    p = d / "trunc.tif"
    tifffile.imwrite(p, np.ones((50, 32, 32), np.uint16))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def _bad_cases(d):
    text = d / "notes.tif"
    text.write_text("this is not an image\n" * 20)
    empty = d / "empty.tif"
    empty.write_bytes(b"")
    img2d = d / "image.tif"
    tifffile.imwrite(img2d, np.ones((32, 32), np.uint16))
    four = d / "four.npy"
    np.save(four, np.ones((4, 2, 8, 8), np.uint16))
    folder = d / "folder"
    folder.mkdir()
    return {
        "missing": (d / "missing.tif", "no such file"),
        "directory": (folder, "is a directory"),
        "text named .tif": (text, "not a TIFF file"),
        "truncated": (_truncated_tiff(d), "truncated"),
        "2-D image": (img2d, "2-D image"),
        "4-D without plane": (four, "plane="),
        "empty": (empty, "empty file"),
        "unknown scheme": ("nosuchscheme://bucket/movie.tif", "unknown URL scheme"),
    }


CASES = ["missing", "directory", "text named .tif", "truncated", "2-D image", "4-D without plane",
         "empty", "unknown scheme"]


@pytest.mark.parametrize("case", CASES)
def test_open_movie_errors(tmp_path, case):
    path, expected = _bad_cases(tmp_path)[case]
    with pytest.raises(MovieError, match=expected) as info:
        open_movie(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("case", CASES)
def test_cli_one_line_exit_2(tmp_path, case, capsys):
    path, expected = _bad_cases(tmp_path)[case]
    with pytest.raises(SystemExit) as info:
        main(["info", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and expected in err
    assert "Traceback" not in err


def test_cli_bad_parameter_file(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text("motion:\n  max_shift: [6, 6]\n")
    broken = tmp_path / "q.yaml"
    broken.write_text("motion: [unclosed\n")
    for path, expected in ((bad, "did you mean 'motion.max_shifts'"), (broken, "not valid YAML")):
        with pytest.raises(SystemExit) as info:
            main(["params", "--params", str(path)])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and expected in err


def test_truncated_tiff_input_is_not_modified(tmp_path):
    p = _truncated_tiff(tmp_path)
    before = p.read_bytes()
    with pytest.raises(MovieError):
        open_movie(p)
    assert p.read_bytes() == before


def test_debug_shows_traceback(tmp_path):
    code, _, err = run_cli("--debug", "info", str(tmp_path / "missing.tif"))
    assert code != 0 and "Traceback" in err and "MovieError" in err
    code, _, err = run_cli("info", str(tmp_path / "missing.tif"))
    assert code == 2 and "Traceback" not in err
