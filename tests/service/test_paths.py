"""Allowed roots: a path is judged by where it points, and spellings that hide it are refused."""

from __future__ import annotations

import os

import pytest

from calcium_dask.service.paths import AllowedRoots, PathInvalid, PathRefused


@pytest.fixture
def tree(tmp_path):
    """root/ (allowed) with raw/movie.tif, and outside/ with secret.tif; links from root to outside."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "raw").mkdir(parents=True)
    outside.mkdir()
    (root / "raw" / "movie.tif").write_bytes(b"II*\x00")
    (outside / "secret.tif").write_bytes(b"II*\x00")
    os.symlink(outside, root / "escape")  # a folder link leading out
    os.symlink(outside / "secret.tif", root / "raw" / "link.tif")  # a file link leading out
    return root, outside, AllowedRoots.from_options([str(root), "s3://lab-raw/imaging"])


def test_paths_under_a_root_are_accepted_in_canonical_form(tree):
    root, _, roots = tree
    assert roots.check_input(str(root / "raw" / "movie.tif")) == str(root.resolve() / "raw" / "movie.tif")
    assert roots.check_input(f"file://{root}/raw/../raw/movie.tif") == str(root.resolve() / "raw" / "movie.tif")
    assert roots.check_output(str(root / "new" / "out.zarr")) == str(root.resolve() / "new" / "out.zarr")
    assert roots.check_output("S3://lab-raw/imaging/m1/./run.zarr") == "s3://lab-raw/imaging/m1/run.zarr"
    assert roots.check_input([str(root / "raw" / "movie.tif")] * 2) == [str(root.resolve() / "raw/movie.tif")] * 2


@pytest.mark.parametrize("spelling", [
    "{outside}/secret.tif",                      # plainly outside
    "{root}/../outside/secret.tif",              # .. out of the root
    "{root}/escape/secret.tif",                  # through a folder link
    "{root}/raw/link.tif",                       # a file link
    "file://{root}/../outside/secret.tif",       # file:// with ..
    "file://{outside}/secret.tif",
    "file://otherhost{outside}/secret.tif",      # file:// with a host
    "file://{root}/%2e%2e/outside/secret.tif",   # percent-encoded dots
    "simplecache::file://{root}/raw/movie.tif",  # a chained URL (the cache lives elsewhere)
    "s3://lab-raw/imaging/../private/x.tif",     # .. in a URL
    "s3://lab-raw/imaging%2f..%2fprivate/x.tif",
    "s3://lab-raw/imagingX/x.tif",               # a prefix of the root's name is not under it
    "gs://lab-raw/imaging/x.tif",                # a scheme no root uses
    "memory://lab-raw/imaging/x.tif",
    "http://169.254.169.254/latest/meta-data",
])
def test_tricks_and_outside_paths_are_refused(tree, spelling):
    root, outside, roots = tree
    path = spelling.format(root=root, outside=outside)
    with pytest.raises(PathRefused):
        roots.check_input(path, must_exist=False)
    with pytest.raises(PathRefused):
        roots.check_output(path)


def test_a_glob_is_refused_when_a_match_leads_outside(tree):
    root, _, roots = tree
    with pytest.raises(PathRefused, match="link.tif"):
        roots.check_input(str(root / "raw" / "*.tif"))
    os.remove(root / "raw" / "link.tif")
    assert roots.check_input(str(root / "raw" / "*.tif")) == str(root.resolve() / "raw" / "*.tif")


@pytest.mark.parametrize("value, match", [
    ("", "empty"),
    (42, "got int"),
    ("relative/movie.tif", "absolute"),
    ("~/movie.tif", "absolute"),
    ("/root/raw/\x00movie.tif", "control"),
    ("/x" * 3000, "too long"),
])
def test_unusable_paths_are_invalid_not_refused(tree, value, match):
    with pytest.raises(PathInvalid, match=match):
        tree[2].check_input(value, must_exist=False)


def test_missing_inputs_and_bad_outputs_are_named(tree):
    root, _, roots = tree
    with pytest.raises(PathInvalid, match="does not exist"):
        roots.check_input(str(root / "raw" / "missing.tif"))
    with pytest.raises(PathInvalid, match="no file matches"):
        roots.check_input(str(root / "raw" / "*.h5"))
    with pytest.raises(PathInvalid, match="no wildcards"):
        roots.check_output(str(root / "out*.zarr"))
    with pytest.raises(PathInvalid, match="overlap"):
        roots.check_nested(str(root / "raw" / "movie.tif"), str(root / "raw"))
    with pytest.raises(PathInvalid, match="overlap"):
        roots.check_nested(str(root / "out.zarr" / "*.tif"), str(root / "out.zarr"))
    roots.check_nested(str(root / "raw" / "movie.tif"), str(root / "results" / "out.zarr"))


def test_roots_must_be_existing_folders(tmp_path):
    with pytest.raises(PathInvalid, match="not an existing folder"):
        AllowedRoots.from_options([str(tmp_path / "nope")])
    (tmp_path / "f").write_text("x")
    with pytest.raises(PathInvalid, match="not an existing folder"):
        AllowedRoots.from_options([str(tmp_path / "f")])
    assert not AllowedRoots.from_options([])
