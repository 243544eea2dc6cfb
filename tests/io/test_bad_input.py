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


def _rig_cases(d):
    """Rigs' recordings that are wrong: (CLI arguments, the file named, what the line says)."""
    from calcium_dask.datasets.scanimage import ScanImageHeader, write_scanimage_tiff

    from .rigfiles import write_bruker, write_nd2, write_sbx

    si = d / "si.tif"
    write_scanimage_tiff(si, np.zeros((2 * 3 * 4, 8, 8), np.int16), ScanImageHeader((8, 8), channels=(1, 2),
                                                                                     nslices=3))
    sbx = write_sbx(d / "lonely", np.zeros((4, 1, 8, 8), np.uint16), with_mat=False)
    xml = write_bruker(d / "ts", np.zeros((3, 1, 1, 8, 8), np.uint16))
    gone = next((d / "ts").glob("*_000002.ome.tif"))
    gone.unlink()
    stack = write_nd2(d / "stack.nd2", np.zeros((4, 1, 8, 8), np.uint16), loops=("z",))
    out = str(d / "out.zarr")
    return {
        "wrong nplanes": (["info", str(si), "--nplanes", "4"], si, "nplanes=4 does not match the file"),
        "channel out of range": (["run", str(si), "--out", out, "--functional-chan", "3"], si,
                                 "functional_chan=3 out of range"),
        "align channel out of range": (["run", str(si), "--out", out, "--align-by-chan", "5"], si,
                                       "align_by_chan=5 out of range"),
        "sbx without its mat": (["info", str(sbx)], sbx, "lonely.mat is missing"),
        "bruker xml naming missing files": (["info", str(xml)], xml, f"missing from {d / 'ts'} (first: {gone.name})"),
        "nd2 not a time series": (["info", str(stack)], stack, "not a time series"),
    }


RIG_CASES = ["wrong nplanes", "channel out of range", "align channel out of range", "sbx without its mat",
             "bruker xml naming missing files", "nd2 not a time series"]


@pytest.mark.parametrize("case", RIG_CASES)
def test_rig_recordings_wrong_one_line_exit_2(tmp_path, case, capsys):
    args, path, expected = _rig_cases(tmp_path)[case]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and expected in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out.zarr").exists()  # no partial result
